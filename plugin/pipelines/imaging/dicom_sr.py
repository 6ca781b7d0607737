"""One imaging result as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report), built with
highdicom, plus the deterministic UIDs that make sending it idempotent. Pure: no I/O.

What the SR holds (docs/pacs.md "Results back into the PACS"):
- the observer: the model as a Device (name, version, the FHIR Device identifier as its serial
  number and a UID derived from it) and the AI algorithm identification (name, version);
- one measurement group per finding: its text (TEXT "Finding"), its code when the model gave one
  (CODE "Finding"), its change from the prior study (TEXT), and its place: a box becomes a closed
  SCOORD POLYLINE (pixel coordinates, corner convention, like the FHIR box) on the exact source
  instance and frame; a finding cited on slices references those instances and frames; a
  whole-slide finding has one planar ROI per patch it cites, on that patch's level instance,
  naming the patch's frames, its polyline in the level's total pixel matrix (pixel origin
  interpretation VOLUME);
- the prior study's Study Instance UID when the result is a comparison;
- preliminary status: CompletionFlag PARTIAL, VerificationFlag UNVERIFIED;
- a random-weight test model's output says "TEST OUTPUT, not clinical" in every text it carries.

UIDs: `derive_uid(root, parts)`; with no root, the UUID-derived `2.25.<decimal>` form (ISO/IEC
9834-8 / DICOM PS3.5 B.2), which needs no registered root and is still deterministic.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID

from plugin.dicom_uids import derive_uid
from plugin.results import Finding, ImageEvidence, PipelineResult, ReportGroup

TEST_MARKER = "TEST OUTPUT, not clinical (random-weight test model)"
_FINDING = hd.sr.CodedConcept("121071", "DCM", "Finding")
_CHANGE = hd.sr.CodedConcept("121073", "DCM", "Impression")  # the change is the read's impression
_PRIOR = hd.sr.CodedConcept("121060", "DCM", "History")
_COMMENT = hd.sr.CodedConcept("121106", "DCM", "Comment")
# FHIR code systems -> DICOM coding scheme designators (PS3.16 Table 8-1).
_SCHEMES = {"http://snomed.info/sct": "SCT", "http://loinc.org": "LN", "http://radlex.org": "RADLEX"}
# The procedure reported when the report's own code has no DICOM scheme (the pipeline's default).
_IMAGING_STUDY = hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging study")
_PATHOLOGY_REPORT = hd.sr.CodedConcept("60567-5", "LN", "Comprehensive pathology report panel")
SERIES_NUMBER = 9901  # chartlight's SR series, far from the scanners' own numbers


_Group = hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations


@dataclass(frozen=True)
class SrIdentity:
    """The UIDs of one result's SR: the series is the same for every model version of a report
    (so its versions sit together in a viewer); the instance changes with the model version."""

    series_uid: str
    instance_uid: str


def sr_identity(root: str, report_identifier: str, result: PipelineResult, *, server: str) -> SrIdentity:
    """`report_identifier` is the FHIR DiagnosticReport's `system|value`; `server` the base URL of
    the FHIR server it is written to (one PACS may serve several EHRs)."""
    version = [result.model.name, result.model.version, result.pipeline_version,
               "test" if result.model.test_weights else ""]
    return SrIdentity(series_uid=derive_uid(root, ["sr-series", server, report_identifier]),
                      instance_uid=derive_uid(root, ["sr-instance", server, report_identifier, *version]))


@dataclass(frozen=True)
class Predecessor:
    """An earlier SR of the same report (an older model version), for PredecessorDocumentsSequence."""

    study_uid: str
    series_uid: str
    instance_uid: str


def build_sr(result: PipelineResult, group: ReportGroup, *, identity: SrIdentity,
             evidence: Sequence[Dataset], device_uid: str, device_serial: str,
             prior_study_uid: str = "", predecessor: Predecessor | None = None) -> hd.sr.Comprehensive3DSR:
    """The SR of `group`'s findings. `evidence` are the source instances' headers (as from
    WADO-RS metadata, without pixel data): the SR copies the patient and study from them and
    references each by SOP class and instance; every instance a finding cites must be among them."""
    if not evidence:
        raise ValueError("an SR needs the header of at least one source instance")
    by_uid = {str(ds.SOPInstanceUID): ds for ds in evidence}
    model = result.model

    def marked(text: str) -> str:
        return f"[{TEST_MARKER}] {text}" if model.test_weights else text

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid, name=marked(model.display or model.name), manufacturer_name="chartlight",
            model_name=model.name[:64], serial_number=device_serial[:64]))
    algorithm = hd.sr.AlgorithmIdentification(name=model.name[:64], version=model.version[:64])
    findings = {item.key: item for item in result.items if isinstance(item, Finding)}
    groups = [g for number, key in enumerate(group.item_keys, 1) if key in findings
              for g in _groups(findings[key], number, algorithm, by_uid, marked)]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=_procedure(group),
        imaging_measurements=groups or None)
    root_items = report[0].ContentSequence
    if group.conclusion:
        root_items.append(_text(_CHANGE, marked(group.conclusion)))
    if prior_study_uid:
        root_items.append(_text(_PRIOR, f"Compared with the prior study {prior_study_uid}"))
    if model.test_weights:
        root_items.append(_text(_COMMENT, TEST_MARKER))
    description = ("TEST OUTPUT, not clinical: chartlight AI read" if model.test_weights
                   else "chartlight AI read (preliminary)")
    with warnings.catch_warnings():
        # The patient's name is copied as the PACS stores it (often one component, "DOE"):
        # not ours to correct, and not worth a warning per report.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name",
                                category=UserWarning)
        return hd.sr.Comprehensive3DSR(
            evidence=list(evidence), content=report, series_instance_uid=identity.series_uid,
            series_number=SERIES_NUMBER, sop_instance_uid=identity.instance_uid, instance_number=1,
            manufacturer="chartlight", is_complete=False, is_final=False, is_verified=False,
            previous_versions=[_predecessor_dataset(predecessor)] if predecessor else None,
            series_description=description)


def _groups(finding: Finding, number: int, algorithm: hd.sr.AlgorithmIdentification,
            by_uid: dict[str, Dataset], marked: Callable[[str], str]) -> list[_Group]:
    """The measurement groups of one finding: one per box it carries (a slide's finding cites
    several patches: one planar ROI each), else one citing its source images."""
    images = [e for e in finding.evidence if isinstance(e, ImageEvidence) and e.instance_uid]
    boxed = [e for e in images if e.box is not None]
    if len(boxed) <= 1:
        return [_group(finding, f"finding {number}", images, boxed[:1], algorithm, by_uid, marked)]
    return [_group(finding, f"finding {number}.{k}", images, [e], algorithm, by_uid, marked)
            for k, e in enumerate(boxed, 1)]


def _group(finding: Finding, name: str, images: list[ImageEvidence], boxed: list[ImageEvidence],
           algorithm: hd.sr.AlgorithmIdentification, by_uid: dict[str, Dataset],
           marked: Callable[[str], str]) -> _Group:
    tracking = hd.sr.TrackingIdentifier(uid=None, identifier=f"{name}: {finding.text}"[:64])
    # The coded finding is TID 1501's "Finding" (finding type); without a code, the text alone.
    finding_type = None
    if finding.code is not None and finding.code.system in _SCHEMES:
        finding_type = hd.sr.CodedConcept(finding.code.code, _SCHEMES[finding.code.system],
                                          finding.code.display or finding.code.code)
    group: _Group
    if boxed:
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_region=_region(boxed[0], by_uid),
            algorithm_id=algorithm, finding_type=finding_type)
    else:
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, algorithm_id=algorithm,
            source_images=[_source_image(e, by_uid) for e in images] or None,
            finding_type=finding_type)
    items = group[0].ContentSequence
    items.append(_text(_FINDING, marked(finding.text)))
    if finding.change:
        items.append(_text(_CHANGE, f"change from the prior study: {finding.change}"))
    return group


def _region(evidence: ImageEvidence, by_uid: dict[str, Dataset]) -> hd.sr.ImageRegion:
    box = evidence.box
    assert box is not None
    corners = np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1],
                        [box.x0, box.y0]], dtype=float)
    ds = _header(evidence, by_uid)
    frames = _referenced_frames(evidence, ds)
    # A tiled image's box is in its total pixel matrix (a slide patch's region), not in a frame.
    origin = (hd.sr.PixelOriginInterpretationValues.VOLUME
              if evidence.frames and "TotalPixelMatrixRows" in ds else None)
    return hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=corners,
                             source_image=hd.sr.SourceImageForRegion(
                                 referenced_sop_class_uid=str(ds.SOPClassUID),
                                 referenced_sop_instance_uid=str(ds.SOPInstanceUID),
                                 referenced_frame_numbers=frames),
                             pixel_origin_interpretation=origin)


def _source_image(evidence: ImageEvidence, by_uid: dict[str, Dataset]
                  ) -> hd.sr.SourceImageForMeasurementGroup:
    ds = _header(evidence, by_uid)
    frames = _referenced_frames(evidence, ds)
    return hd.sr.SourceImageForMeasurementGroup(
        referenced_sop_class_uid=str(ds.SOPClassUID), referenced_sop_instance_uid=str(ds.SOPInstanceUID),
        referenced_frame_numbers=frames)


def _referenced_frames(evidence: ImageEvidence, ds: Dataset) -> list[int] | None:
    """The frames a citation names: a slide patch's tiles, else the one frame of a multi-frame
    image (None for a single-frame image, which has no frames to name)."""
    if evidence.frames:
        return sorted(set(evidence.frames))
    return [evidence.frame] if _frames(ds) > 1 and evidence.frame else None


def _header(evidence: ImageEvidence, by_uid: dict[str, Dataset]) -> Dataset:
    ds = by_uid.get(evidence.instance_uid)
    if ds is None:
        raise ValueError(f"instance {evidence.instance_uid} is cited but its header is not in the evidence")
    return ds


def _frames(ds: Dataset) -> int:
    return int(getattr(ds, "NumberOfFrames", 1) or 1)


def _text(name: hd.sr.CodedConcept, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value,
                                 relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _procedure(group: ReportGroup) -> hd.sr.CodedConcept:
    """The DiagnosticReport's code (the study's procedure code, else LOINC 18748-4, or 60567-5
    for a pathology report)."""
    scheme = _SCHEMES.get(group.code.system)
    if scheme is None:
        return _PATHOLOGY_REPORT if group.category == "PAT" else _IMAGING_STUDY
    return hd.sr.CodedConcept(group.code.code, scheme, group.code.display or group.code.code)


def _predecessor_dataset(predecessor: Predecessor) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = predecessor.study_uid
    ds.SeriesInstanceUID = predecessor.series_uid
    ds.SOPInstanceUID = predecessor.instance_uid
    ds.SOPClassUID = UID("1.2.840.10008.5.1.4.1.1.88.34")  # Comprehensive 3D SR
    return ds
