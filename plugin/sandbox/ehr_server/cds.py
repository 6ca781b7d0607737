"""The sandbox EHR as a CDS Hooks client: on opening a patient it calls the `patient-view`
services of one CDS service base (CDS Hooks 2.0.1 / 3.0, "Calling a CDS Service"), and renders the
cards it gets beside the app.

What it sends is what a real EHR sends: discovery at `<cds base>/cds-services`, then a POST per
patient-view service with `hook`, `hookInstance`, `context` (userId, patientId), `fhirServer` (the
EHR's FHIR proxy base), `fhirAuthorization` (an access token of this EHR, patient-bound, read-only
SMART v2 scopes) and `prefetch` filled from the service's templates with the EHR's own data. Every
call carries a JWT signed with this EHR's own key (ES384, a `kid`), whose public half is in its
JWK Set at `{base}/ehr/cds-jwks.json` ("Trusting CDS Clients"): `iss` is the EHR's base URL, `aud`
the exact URL called, a fresh `jti`, five minutes of life.

Rendering escapes every value the service sent; a card's detail (GitHub-flavoured markdown) is
shown as escaped text with its line breaks, folded under "Details" (the specification lets an EHR
hide details until the user asks); only http(s) link URLs become links; a `smart` link
opens the registered app in the EHR's app frame through a fresh launch (`/ehr/smart-link`).
"""

from __future__ import annotations

import html
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt as pyjwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from plugin.sandbox.ehr_server.oauth import EhrState, LaunchContext, Token

CDS_KID = "sandbox-ehr-cds-1"
CDS_ALG = "ES384"
CDS_CLIENT_ID = "cds-services"  # whose access tokens fhirAuthorization carries
CDS_TOKEN_LIFETIME_S = 300
# Read-only, patient-bound (SMART App Launch 2 syntax, as CDS Hooks 3.0 asks), plus the
# non-compartment reads a results service needs (the Devices its results name).
CDS_SCOPE = "patient/*.rs user/Device.rs"
CALL_TIMEOUT_S = 20.0
MAX_CARDS = 50
_TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")


@dataclass(frozen=True)
class RenderedCall:
    """What one service (or discovery) answered: its cards, or why there are none."""

    service: str
    cards: tuple[dict[str, Any], ...] = ()
    problem: str | None = None


@dataclass
class CdsClient:
    """Calls one CDS service base for the EHR whose state is `state`."""

    cds_base: str
    issuer: str
    fhir_base: str
    fhir_upstream: str
    state: EhrState
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    http: Callable[..., requests.Response] = requests.request

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": CDS_KID, "alg": CDS_ALG, "use": "sig"}]}

    def signed_jwt(self, audience: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": audience, "iat": now, "exp": now + 300,
                  "jti": secrets.token_urlsafe(16)}
        return pyjwt.encode(claims, self.key, algorithm=CDS_ALG, headers={"kid": CDS_KID, "typ": "JWT"})

    def patient_view(self, patient: str, user: str) -> list[RenderedCall]:
        """Discovery, then every patient-view service called for `patient` (opened by `user`)."""
        discovery_url = f"{self.cds_base.rstrip('/')}/cds-services"
        try:
            answer = self.http("GET", discovery_url, timeout=CALL_TIMEOUT_S,
                               headers={"Accept": "application/json",
                                        "Authorization": f"Bearer {self.signed_jwt(discovery_url)}"})
            services = _discovered(answer)
        except (requests.RequestException, ValueError) as exc:
            return [RenderedCall("discovery", problem=_why(exc))]
        calls = []
        for service in services:
            if service.get("hook") != "patient-view" or not isinstance(service.get("id"), str):
                continue
            calls.append(self._call(service, patient, user))
        return calls

    def _call(self, service: Mapping[str, Any], patient: str, user: str) -> RenderedCall:
        url = f"{self.cds_base.rstrip('/')}/cds-services/{service['id']}"
        context = {"userId": user, "patientId": patient}
        body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": context,
                "fhirServer": self.fhir_base, "fhirAuthorization": self._access(patient),
                "prefetch": self._prefetch(service.get("prefetch") or {}, context)}
        try:
            answer = self.http("POST", url, json=body, timeout=CALL_TIMEOUT_S,
                               headers={"Accept": "application/json",
                                        "Authorization": f"Bearer {self.signed_jwt(url)}"})
            if answer.status_code != 200:
                raise ValueError(f"answered HTTP {answer.status_code}")
            cards = answer.json().get("cards")
            if not isinstance(cards, list):
                raise ValueError("the answer has no cards list")
        except (requests.RequestException, ValueError) as exc:
            return RenderedCall(str(service["id"]), problem=_why(exc))
        return RenderedCall(str(service["id"]), tuple(c for c in cards[:MAX_CARDS] if isinstance(c, dict)))

    def _access(self, patient: str) -> dict[str, Any]:
        """A fresh access token of this EHR for the service: read-only, bound to the patient."""
        access_token = secrets.token_urlsafe(32)
        now = time.time()
        context = LaunchContext(patient, None, self.state.user, aud=self.fhir_base)
        with self.state.lock:
            # One token per page view: drop this client's expired ones so they do not pile up.
            expired = [t for t, v in self.state.tokens.items()
                       if v.client_id == CDS_CLIENT_ID and v.is_expired()]
            for old in expired:
                del self.state.tokens[old]
            self.state.tokens[access_token] = Token(
                access_token=access_token, refresh_token=None, client_id=CDS_CLIENT_ID, scope=CDS_SCOPE,
                context=context, expires_at=now + CDS_TOKEN_LIFETIME_S, refresh_expires_at=now)
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": CDS_TOKEN_LIFETIME_S,
                "scope": CDS_SCOPE, "subject": CDS_CLIENT_ID, "patient": patient}

    def _prefetch(self, templates: Mapping[str, Any], context: Mapping[str, str]) -> dict[str, Any]:
        """Each template the EHR can fill, read from its own FHIR server; one it cannot fill (an
        unknown token, an answer that is not FHIR) is left out, as the specification allows: the
        service then reads it itself through fhirServer."""
        filled: dict[str, Any] = {}
        for key, template in templates.items():
            query = fill_template(str(template), context) if isinstance(template, str) else None
            if query is None:
                continue
            try:
                answer = self.http("GET", f"{self.fhir_upstream.rstrip('/')}/{query.lstrip('/')}",
                                   headers={"Accept": "application/fhir+json"}, timeout=CALL_TIMEOUT_S)
                if answer.status_code == 200:
                    filled[key] = answer.json()
            except (requests.RequestException, ValueError):
                continue
        return filled


def fill_template(template: str, context: Mapping[str, str]) -> str | None:
    """`Observation?patient={{context.patientId}}` with the hook's context; None when a token is
    not one this EHR knows ({{context.*}} of the context, {{userPractitionerId}})."""
    values = {f"context.{name}": value for name, value in context.items()}
    user = context.get("userId", "")
    if user.startswith("Practitioner/"):
        values["userPractitionerId"] = user.split("/", 1)[1]
    missing = [m.group(1) for m in _TOKEN.finditer(template) if m.group(1) not in values]
    if missing:
        return None
    return _TOKEN.sub(lambda m: values[m.group(1)], template)


def _discovered(answer: requests.Response) -> list[dict[str, Any]]:
    if answer.status_code != 200:
        raise ValueError(f"answered HTTP {answer.status_code}")
    services = answer.json().get("services")
    if not isinstance(services, list):
        raise ValueError("discovery has no services list")
    return [s for s in services if isinstance(s, dict)]


def _why(exc: Exception) -> str:
    if isinstance(exc, requests.RequestException):
        return f"not reachable ({type(exc).__name__})"
    return str(exc)[:200]


# ---- rendering -------------------------------------------------------------------------------------

_NEW_TAB = 'target="_blank" rel="noopener noreferrer"'
INDICATORS = {"critical": "critical", "warning": "warning", "info": "info", "hard-stop": "critical",
              "success": "info"}
CARDS_CSS = """
#cds{width:340px;flex:none;overflow:auto;background:#f3f1ec;padding:8px;box-sizing:border-box;
 border-right:1px solid #ccc}
#cds h2{font-size:14px;margin:4px 0 8px}
.cds-card{background:#fff;border:1px solid #ccc;border-left:6px solid #69b5ce;border-radius:4px;
 margin:0 0 8px;padding:8px;font-size:13px}
.cds-card.warning{border-left-color:#d9a400}.cds-card.critical{border-left-color:#b00020}
.cds-summary{font-weight:bold}.cds-indicator{font-size:11px;text-transform:uppercase;color:#555}
.cds-detail{white-space:pre-wrap;margin:6px 0;font-family:inherit}
.cds-card details summary{cursor:pointer;font-size:12px;color:#234;margin-top:4px}
.cds-source{font-size:11px;color:#555;margin-top:4px}.cds-links a{display:inline-block;margin:4px 8px 0 0}
.cds-problem{font-size:12px;color:#9e2d2d}
"""


def render_cards(calls: list[RenderedCall], patient: str) -> str:
    """The card panel's HTML: every value escaped; only http(s) URLs linked."""
    parts = ['<aside id="cds" aria-label="CDS cards"><h2>CDS Hooks cards (patient-view)</h2>']
    shown = 0
    for call in calls:
        if call.problem:
            parts.append(f'<p class="cds-problem" data-testid="cds-problem">{html.escape(call.service)}: '
                         f'{html.escape(call.problem)}</p>')
        for card in call.cards:
            parts.append(_card_html(card, call.service, patient))
            shown += 1
    if not shown and not any(c.problem for c in calls):
        parts.append('<p class="cds-problem">No cards.</p>')
    parts.append("</aside>")
    return "".join(parts)


def _card_html(card: Mapping[str, Any], service: str, patient: str) -> str:
    indicator = INDICATORS.get(str(card.get("indicator")), "info")
    source_value = card.get("source")
    source: Mapping[str, Any] = source_value if isinstance(source_value, dict) else {}
    label = html.escape(str(source.get("label", "")))
    source_url = _web_url(source.get("url"))
    source_html = (f'<a href="{html.escape(source_url)}" {_NEW_TAB}>{label}</a>' if source_url else label)
    detail = card.get("detail")
    links = []
    for link in card.get("links") or []:
        if not isinstance(link, dict):
            continue
        text = html.escape(str(link.get("label", "")))
        if link.get("type") == "smart":
            query = {"patient": patient, "url": str(link.get("url", ""))}
            if isinstance(link.get("appContext"), str):
                query["appContext"] = link["appContext"]
            href = f"/ehr/smart-link?{urlencode(query)}"
            links.append(f'<a data-testid="cds-smart-link" href="{html.escape(href)}" '
                         f'target="app">{text}</a>')
        elif url := _web_url(link.get("url")):
            links.append(f'<a href="{html.escape(url)}" {_NEW_TAB}>{text}</a>')
    return (f'<section class="cds-card {indicator}" data-testid="cds-card" '
            f'data-service="{html.escape(service)}">'
            f'<div class="cds-indicator">{html.escape(str(card.get("indicator", "")))}</div>'
            f'<div class="cds-summary">{html.escape(str(card.get("summary", "")))}</div>'
            + (f'<details><summary>Details</summary><pre class="cds-detail">{html.escape(detail)}</pre>'
               '</details>' if isinstance(detail, str) else "")
            + f'<div class="cds-source">Source: {source_html}</div>'
            + (f'<div class="cds-links">{"".join(links)}</div>' if links else "")
            + "</section>")


def _web_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    parts = urlsplit(value)
    return value if parts.scheme in {"http", "https"} and parts.netloc else None
