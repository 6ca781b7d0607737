"""Send an imaging result's DICOM SR to the study's PACS by STOW-RS (setting
`imaging_write_back_dicom`), idempotently, and link it from the FHIR DiagnosticReport.

Per report group of the result:
1. the study must have come from a DICOMweb Endpoint whose address lies under one of
   `imaging_dicom_write_endpoints` (a separate allow-list from the read lists: reading a PACS
   does not mean we may write to it); the FHIR token goes along only when the address is also
   under `imaging_trusted_endpoints`, as for reads;
2. the FHIR DiagnosticReport with the group's identifier is looked up: when a clinician signed it
   nothing is sent; an SR it already links with another UID (an older model version) becomes the
   new SR's predecessor;
3. the SR's UIDs are derived from the report identifier and the model version under
   `dicom_uid_root` (plugin.pipelines.imaging.dicom_sr); when the PACS already holds that
   instance (QIDO-RS), nothing is sent — a re-run creates no second SR and replaces none;
4. the cited instances' headers are read (WADO-RS series metadata), the SR built and stored.
The group then carries the SR's SOP Instance UID, which the DiagnosticReport names as an
identifier. Anything that stops the SR is a problem of the result saying why; the FHIR write goes
ahead without the link.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests
from pydicom import Dataset

from fhir_mappers.identifiers import device_identifier, report_identifier
from plugin.dicom_uids import check_uid_root, derive_uid
from plugin.errors import FhirError, InputError
from plugin.fhir import FhirClient
from plugin.results import Finding, ImageEvidence, InputProblem, PipelineResult, ReportGroup

from .dicom_sr import Predecessor, build_sr, sr_identity
from .dicomweb import DICOM_JSON, DicomWebClient, store_instances
from .prepared import PreparedStudy
from .sources import client_token, is_trusted

if TYPE_CHECKING:
    from plugin.config import Settings
    from plugin.pipelines.pathology.slide import PreparedSlide

    Prepared = PreparedStudy | PreparedSlide

log = logging.getLogger(__name__)
DICOM_UID_SYSTEM = "urn:dicom:uid"
_SIGNED = {"final", "amended", "corrected", "appended", "cancelled", "entered-in-error"}


@dataclass(frozen=True)
class DicomWriteOptions:
    """Settings `imaging_write_back_dicom`, `imaging_dicom_write_endpoints`, `dicom_uid_root`."""

    enabled: bool = False
    write_endpoints: tuple[str, ...] = ()
    trusted_endpoints: tuple[str, ...] = ()  # the token goes only to these (imaging_trusted_endpoints)
    uid_root: str = ""
    timeout_s: float = 30.0
    max_metadata_bytes: int = 64 * 1024 * 1024
    session: requests.Session | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_uid_root(self.uid_root)


def dicom_write_options(settings: Settings) -> DicomWriteOptions:
    return DicomWriteOptions(enabled=settings.imaging_write_back_dicom,
                             write_endpoints=settings.imaging_dicom_write_endpoints,
                             trusted_endpoints=settings.imaging_trusted_endpoints,
                             uid_root=settings.dicom_uid_root, timeout_s=settings.fhir_timeout_s,
                             max_metadata_bytes=settings.imaging_max_instance_bytes)


def write_back_sr(client: FhirClient, result: PipelineResult, study: Prepared,
                  options: DicomWriteOptions, *, prior_study_uid: str = "") -> PipelineResult:
    """`result` with each report group linked to its SR (sent now or already stored), and a
    problem for each group whose SR was not sent, saying why. `study` is an imaging study or a
    whole slide as prepared; either records the DICOMweb endpoint it was read from in
    `choices["endpoint"]` (absent: read from DICOM attachments, nothing is sent)."""
    if not options.enabled or not result.reports:
        return result
    where = f"ImagingStudy/{study.source.id}"
    endpoint = str(study.choices.get("endpoint") or "")
    refusal = ""
    if not endpoint:
        refusal = "the study was read from DICOM attachments, not from a PACS"
    elif not is_trusted(endpoint, options.write_endpoints):
        refusal = f"{endpoint} is not a DICOMweb endpoint trusted for writes (imaging_dicom_write_endpoints)"
    if refusal:
        return replace(result, problems=(*result.problems,
                                         InputProblem(where, f"DICOM SR not sent: {refusal}")))
    token = client_token(client) if is_trusted(endpoint, options.trusted_endpoints) else None
    groups: list[ReportGroup] = []
    problems = list(result.problems)
    for group in result.reports:
        try:
            uid, note = _one_group(client, result, study, group, endpoint, token, options,
                                   prior_study_uid)
        except (InputError, FhirError, ValueError) as exc:
            uid, note = "", f"DICOM SR not sent: {exc}"
        if note:
            problems.append(InputProblem(where, note))
        groups.append(replace(group, dicom_sr_uid=uid) if uid else group)
    return replace(result, reports=tuple(groups), problems=tuple(problems))


def _one_group(client: FhirClient, result: PipelineResult, study: Prepared, group: ReportGroup,
               endpoint: str, token: str | None, options: DicomWriteOptions,
               prior_study_uid: str) -> tuple[str, str]:
    """(the SR's SOP Instance UID to link, "" and the reason when none)."""
    ident = report_identifier(result, group)
    key = f"{ident['system']}|{ident['value']}"
    identity = sr_identity(options.uid_root, key, result, server=client.base_url)
    existing = list(client.search("DiagnosticReport", {"identifier": key}))
    previous = ""
    for report in existing:
        linked = [i["value"].removeprefix("urn:oid:") for i in report.get("identifier", [])
                  if i.get("system") == DICOM_UID_SYSTEM and i.get("value")]
        if report.get("status") in _SIGNED:
            return "", (f"DICOM SR not sent: DiagnosticReport/{report['id']} is {report['status']} "
                        "(signed); its SR is kept as it is")
        previous = next((u for u in linked if u != identity.instance_uid), previous)
    session = options.session or requests.Session()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if _stored(session, endpoint, study.study_uid, identity.series_uid, identity.instance_uid,
               headers, options.timeout_s):
        log.info("SR %s already in the PACS; not sent again", identity.instance_uid)
        return identity.instance_uid, ""
    evidence = _evidence(study, group, result, endpoint, token, options)
    device = device_identifier(result.model)
    predecessor = Predecessor(study.study_uid, identity.series_uid, previous) if previous else None
    sr = build_sr(result, group, identity=identity, evidence=evidence,
                  device_uid=derive_uid(options.uid_root, ["device", device["value"]]),
                  device_serial=device["value"], prior_study_uid=prior_study_uid,
                  predecessor=predecessor)
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    sender = session
    if token:  # a session of its own: the token never stays on a shared one
        sender = requests.Session()
        sender.headers.update(headers)
    store_instances(endpoint, [buffer.getvalue()], session=sender, timeout_s=options.timeout_s)
    log.info("SR %s stored in the PACS (%d bytes)", identity.instance_uid, len(buffer.getvalue()))
    return identity.instance_uid, ""


def _stored(session: requests.Session, endpoint: str, study_uid: str, series_uid: str,
            instance_uid: str, headers: dict[str, str], timeout_s: float) -> bool:
    """Whether the PACS holds the instance (QIDO-RS instance search)."""
    url = (f"{endpoint}/studies/{quote(study_uid, safe='')}/series/{quote(series_uid, safe='')}"
           f"/instances")
    try:
        response = session.get(url, params={"SOPInstanceUID": instance_uid},
                               headers={"Accept": DICOM_JSON, **headers}, timeout=timeout_s)
    except requests.RequestException as exc:
        raise InputError(url, f"the PACS did not answer ({type(exc).__name__})") from None
    if response.status_code in (204, 404):
        return False
    if response.status_code != 200:
        raise InputError(url, f"QIDO-RS -> HTTP {response.status_code}")
    found = response.json() if response.content.strip() else []
    return any(_value(item, "00080018") == instance_uid for item in found)


def _evidence(study: Prepared, group: ReportGroup, result: PipelineResult, endpoint: str,
              token: str | None, options: DicomWriteOptions) -> list[Dataset]:
    """Headers of the instances the group's findings cite (else the first image shown), from
    WADO-RS series metadata, without bulk data."""
    findings = {i.key: i for i in result.items if isinstance(i, Finding)}
    cited = [e for key in group.item_keys if key in findings for e in findings[key].evidence
             if isinstance(e, ImageEvidence) and e.instance_uid]
    wanted = {(e.series_uid, e.instance_uid) for e in cited}
    if not wanted:
        wanted = set(_first_shown(study))
    dicomweb = DicomWebClient(endpoint, token=token, session=options.session, timeout_s=options.timeout_s,
                              max_metadata_bytes=options.max_metadata_bytes)
    try:
        found: dict[str, Dataset] = {}
        for series in sorted({s for s, _ in wanted}):
            for item in dicomweb.series_metadata(study.study_uid, series):
                uid = _value(item, "00080018")
                if (series, uid) in wanted:
                    found[uid] = Dataset.from_json({k: v for k, v in item.items()
                                                    if "BulkDataURI" not in v and "InlineBinary" not in v})
    finally:
        dicomweb.close()
    missing = sorted(u for _, u in wanted if u not in found)
    if missing:
        raise InputError(f"{endpoint} studies/{study.study_uid}",
                         f"the PACS has no header for cited instance(s) {', '.join(missing)}")
    return [found[u] for _, u in sorted(wanted)]


def _first_shown(study: Prepared) -> list[tuple[str, str]]:
    """(series, instance) of the first image the model was shown: a study's first image, a
    slide's first patch's level."""
    if isinstance(study, PreparedStudy):
        return [(study.images[0].series_uid, study.images[0].instance_uid)] if study.images else []
    return [(study.patches[0].level.series_uid, study.patches[0].level.instance_uid)
            ] if study.patches else []


def _value(item: dict[str, Any], tag: str) -> str:
    values = (item.get(tag) or {}).get("Value") or [""]
    return str(values[0])
