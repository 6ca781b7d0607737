"""CDS Hooks JSON as typed models: what EHRs send (hook requests, feedback) is validated here, at
the edge; what the service answers (discovery, cards) is built from these models so an invalid
card cannot leave the service. Section names in the docstrings are the specification's
(https://cds-hooks.hl7.org/2.0/, and 3.0 where it differs: discovery's `version` and
`hookVersion`, SMART App Launch 2 scopes in `fhirAuthorization.scope`). A 2.0.1 request is a
valid 3.0 request and the answers are the same for both."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from plugin.scopes import GrantedScopes, parse_scopes

# The CDS Hooks version this service implements, for discovery's `version` (3.0: a semantic
# version of the specification). Everything it answers is valid 2.0.1 as well.
SPEC_VERSION = "3.0.0"

# "JSON string attributes that have an optionality of REQUIRED MAY NOT have empty values (those
# without any characters or just whitespace characters)" (Use of JSON).
NonEmpty = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]
# FHIR R4 id: what context ids are substituted into FHIR URLs as, so nothing else may pass.
FhirId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9\-.]{1,64}$")]


def _http_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return value


HttpUrlText = Annotated[str, AfterValidator(_http_url)]


class _Edge(BaseModel):
    """Inbound JSON: unknown fields are allowed (the specification lets clients add extensions)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class _Out(BaseModel):
    """Outbound JSON: only fields the specification defines."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- calling a service (Calling a CDS Service; FHIR Resource Access) --------------------------


class FhirAuthorization(_Edge):
    """`fhirAuthorization`: an OAuth 2.0 bearer token for `fhirServer` only. SecretStr keeps the
    token out of reprs and logs. `scope` is SMART App Launch 2 syntax in CDS Hooks 3.0
    (`user/Observation.rs`) and 1.0 syntax in 2.0.1 (`user/Observation.read`); both are read."""

    access_token: SecretStr
    token_type: NonEmpty
    expires_in: int
    scope: NonEmpty
    subject: NonEmpty
    patient: str | None = None

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError("token_type must be Bearer")
        return value

    @property
    def granted(self) -> GrantedScopes:
        return parse_scopes(self.scope)


class HookRequest(_Edge):
    """The POST body of a hook call. `context` is checked per hook by the models below."""

    hook: NonEmpty
    hookInstance: NonEmpty
    fhirServer: HttpUrlText | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _server_with_token(self) -> HookRequest:
        # "If fhirAuthorization is provided, this field is REQUIRED."
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirServer is required when fhirAuthorization is given")
        return self


class PatientViewContext(_Edge):
    """patient-view 1.0 context: the user and the patient whose record was opened."""

    userId: NonEmpty
    patientId: FhirId
    encounterId: FhirId | None = None


class DraftOrders(_Edge):
    """`draftOrders`: a Bundle of FHIR request resources with a draft status."""

    resourceType: Literal["Bundle"]
    entry: list[dict[str, Any]] = Field(default_factory=list)

    def resources(self) -> list[dict[str, Any]]:
        return [e["resource"] for e in self.entry if isinstance(e.get("resource"), dict)]


class OrderSignContext(_Edge):
    """order-sign 1.0 context: every unsigned order of the ordering session."""

    userId: NonEmpty
    patientId: FhirId
    encounterId: FhirId | None = None
    draftOrders: DraftOrders


class OrderSelectContext(OrderSignContext):
    """order-select 1.0 context: as order-sign, plus the ids ("ServiceRequest/1") of the orders
    just selected, which are in draftOrders."""

    selections: list[NonEmpty] = Field(min_length=1)


# ---- the answer (CDS Service Response) ---------------------------------------------------------


class Coding(_Out):
    """Data Types: Coding. `display` is required wherever the service sends one as an override
    reason."""

    code: NonEmpty
    system: str | None = None
    display: str | None = None


class Source(_Out):
    label: NonEmpty
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Out):
    type: Literal["create", "update", "delete"]
    description: NonEmpty
    resource: dict[str, Any] | None = None
    resourceId: str | None = None

    @model_validator(mode="after")
    def _target(self) -> Action:
        if self.type in ("create", "update") and self.resource is None:
            raise ValueError(f"a {self.type} action carries the resource")
        if self.type == "delete" and not self.resourceId:
            raise ValueError("a delete action names resourceId")
        return self


class Suggestion(_Out):
    label: NonEmpty
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] = Field(default_factory=list)


class Link(_Out):
    label: NonEmpty
    url: NonEmpty
    type: Literal["absolute", "smart"]
    appContext: str | None = None
    autolaunchable: bool | None = None


class Card(_Out):
    uuid: str
    summary: Annotated[str, StringConstraints(min_length=1, max_length=139)]  # "<140-character"
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _rules(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("selectionBehavior is required with suggestions")
        if any(not reason.display for reason in self.overrideReasons or ()):
            raise ValueError("every override reason needs a display")
        return self


class CdsResponse(_Out):
    cards: list[Card]
    systemActions: list[Action] | None = None


# ---- discovery -----------------------------------------------------------------------------------


class ServiceDescription(_Out):
    hook: NonEmpty
    title: str | None = None
    description: NonEmpty
    id: NonEmpty
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None
    version: str | None = None  # 3.0: the CDS Hooks version implemented
    hookVersion: str | None = None  # 3.0: the version of the hook's definition served


class Discovery(_Out):
    services: list[ServiceDescription]


# ---- feedback ------------------------------------------------------------------------------------


class AcceptedSuggestion(_Edge):
    id: NonEmpty


class FeedbackCoding(_Edge):
    code: str | None = None
    system: str | None = None
    display: str | None = None


class OverrideReason(_Edge):
    reason: FeedbackCoding | None = None
    userComment: str | None = None

    @model_validator(mode="after")
    def _says_something(self) -> OverrideReason:
        # CDS Hooks 3.0 (HL7/cds-hooks, invariant cds-fb-3): "An overrideReason must contain a
        # reason, a userComment, or both".
        if self.reason is None and not self.userComment:
            raise ValueError("overrideReason needs a reason, a userComment, or both")
        return self


class FeedbackItem(_Edge):
    card: NonEmpty
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime

    @model_validator(mode="after")
    def _rules(self) -> FeedbackItem:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is required for accepted outcomes")
        if self.outcomeTimestamp.tzinfo is None:
            raise ValueError("outcomeTimestamp needs a time zone (UTC, RFC 3339)")
        return self


class FeedbackRequest(_Edge):
    feedback: list[FeedbackItem]


def response_json(model: BaseModel) -> dict[str, Any]:
    """The model as the JSON the specification describes: optional fields left out, not null."""
    dumped: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    return dumped
