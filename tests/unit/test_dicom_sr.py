"""The DICOM SR of an imaging result (plugin.pipelines.imaging.dicom_sr): deterministic UIDs under
an org root, and the SR itself re-read with highdicom from its Part-10 bytes. The source header
is pydicom's own bundled CT file, not one made here."""

from __future__ import annotations

import io
from dataclasses import replace

import highdicom as hd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import UID

from plugin.config import Settings
from plugin.dicom_uids import UidRootError, check_uid_root, derive_uid
from plugin.errors import ConfigError
from plugin.pipelines.imaging.dicom_sr import (
    TEST_MARKER,
    Predecessor,
    SrIdentity,
    build_sr,
    sr_identity,
)
from plugin.pipelines.imaging.stow import DicomWriteOptions, dicom_write_options
from plugin.results import (
    Box,
    Coding,
    Finding,
    ImageEvidence,
    ModelInfo,
    PipelineResult,
    ReportGroup,
    SourceRef,
)

ROOT = "1.2.826.0.1.3680043.99"
REPORT = "https://chartlight.dev/fhir/sid/result|abc123"


def ct_header() -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    return ds


def result(*, version: str = "rev-1", test_weights: bool = False,
           change: str | None = None) -> PipelineResult:
    ds = ct_header()
    box = Box(10.5, 20.0, 40.25, 50.0)
    boxed = Finding(key="t/1", text="right lung", evidence=(ImageEvidence(
        str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), frame=1, box=box),))
    coded = Finding(key="t/2", text="Pulmonary nodule", change=change,  # type: ignore[arg-type]
                    code=Coding("http://snomed.info/sct", "427359005", "Solitary nodule of lung"),
                    evidence=(ImageEvidence(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                                            str(ds.SOPInstanceUID), frame=1),))
    return PipelineResult(
        pipeline="imaging", pipeline_version="1+prompt.3",
        source=SourceRef("ImagingStudy", "7", "2"),
        model=ModelInfo("google/medgemma-1.5-4b-it", version, ("Vision-Language-Models",),
                        test_weights=test_weights),
        items=(boxed, coded),
        reports=(ReportGroup("t", Coding("http://loinc.org", "18748-4", "Diagnostic imaging study"), "RAD",
                             ("t/1", "t/2"), conclusion="One nodule."),))


def reread(sr: hd.sr.Comprehensive3DSR) -> hd.sr.Comprehensive3DSR:
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    again = hd.sr.srread(buffer)
    assert isinstance(again, hd.sr.Comprehensive3DSR)
    return again


def identity_of(res: PipelineResult, server: str = "https://ehr.test/fhir") -> SrIdentity:
    return sr_identity(ROOT, REPORT, res, server=server)


def texts(item: pydicom.Dataset) -> str:
    """Every TEXT, UIDREF and code meaning in an SR content tree, one per line."""
    found: list[str] = []
    for element in item.iterall():
        if element.keyword in {"TextValue", "UID", "CodeMeaning"}:
            found.append(str(element.value))
    return "\n".join(found)


def test_uids_are_deterministic_valid_and_under_the_root() -> None:
    uid = derive_uid(ROOT, ["sr-instance", REPORT, "rev-1"])
    assert uid == derive_uid(ROOT, ["sr-instance", REPORT, "rev-1"])
    assert uid != derive_uid(ROOT, ["sr-instance", REPORT, "rev-2"])
    assert uid.startswith(ROOT + ".") and len(uid) == 64 and UID(uid).is_valid
    plain = derive_uid("", ["sr-instance", REPORT, "rev-1"])
    assert plain.startswith("2.25.") and UID(plain).is_valid and int(plain[5:]) < 2 ** 128
    assert derive_uid("1.2.3", ["x"]) != derive_uid("1.2.4", ["x"])


@pytest.mark.parametrize("root", ["1.2.03", "1.2.", ".1.2", "1.2.abc", "1." + "2" * 40, "1..2"])
def test_a_uid_root_that_is_not_a_dicom_prefix_is_refused(root: str) -> None:
    with pytest.raises(UidRootError, match="dicom_uid_root"):
        check_uid_root(root)
    with pytest.raises(ConfigError, match="dicom_uid_root"):
        Settings(dicom_uid_root=root)


def test_the_series_is_shared_by_model_versions_and_the_instance_is_not() -> None:
    first, second = identity_of(result()), identity_of(result(version="rev-2"))
    assert first.series_uid == second.series_uid and first.instance_uid != second.instance_uid
    assert identity_of(result()) == first
    assert identity_of(result(test_weights=True)).instance_uid != first.instance_uid
    other_ehr = identity_of(result(), server="https://other-ehr.test/fhir")
    assert other_ehr.series_uid != first.series_uid and other_ehr.instance_uid != first.instance_uid


def test_settings_reach_the_write_options() -> None:
    assert dicom_write_options(Settings()) == DicomWriteOptions()  # off, no endpoint, 2.25 UIDs
    options = dicom_write_options(Settings(imaging_write_back_dicom=True, dicom_uid_root=ROOT,
                                           imaging_dicom_write_endpoints=("http://pacs.test/dicom-web",)))
    assert options.enabled and options.write_endpoints == ("http://pacs.test/dicom-web",)
    assert options.uid_root == ROOT
    with pytest.raises(ConfigError, match="imaging_dicom_write_endpoints"):
        Settings(imaging_dicom_write_endpoints=("ftp://pacs.test/",))


def test_the_sr_carries_the_model_the_findings_their_places_and_preliminary_status() -> None:
    ds = ct_header()
    res = result(change="worsened")
    identity = identity_of(res)
    sr = reread(build_sr(res, res.reports[0], identity=identity, evidence=[ds], device_uid=f"{ROOT}.5",
                         device_serial="dev-1", prior_study_uid="1.2.3.4"))
    assert sr.SOPInstanceUID == identity.instance_uid and sr.SeriesInstanceUID == identity.series_uid
    assert sr.StudyInstanceUID == ds.StudyInstanceUID and sr.PatientID == ds.PatientID
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("PARTIAL", "UNVERIFIED")
    text = texts(sr)  # the device observer and the algorithm are in the tree
    assert "google/medgemma-1.5-4b-it" in text and "rev-1" in text and "dev-1" in text
    report = sr.content
    (planar,) = report.get_planar_roi_measurement_groups()
    region = planar.roi
    assert region is not None and region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    assert region.value.tolist() == [[10.5, 20.0], [40.25, 20.0], [40.25, 50.0], [10.5, 50.0],
                                     [10.5, 20.0]]
    source = region.ContentSequence[0]
    assert source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert source.ReferencedSOPSequence[0].ReferencedSOPClassUID == ds.SOPClassUID
    (plain,) = report.get_image_measurement_groups()
    assert plain.finding_type is not None
    assert (plain.finding_type.value, plain.finding_type.scheme_designator) == ("427359005", "SCT")
    assert planar.finding_type is None  # no code: the text alone
    group_text = texts(plain[0])
    assert "Pulmonary nodule" in group_text and "change from the prior study: worsened" in group_text
    assert "Compared with the prior study 1.2.3.4" in text and "One nodule." in text
    assert TEST_MARKER not in text
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (
        ds.SOPInstanceUID)


def test_test_weights_say_so_in_the_sr_and_a_new_version_names_its_predecessor() -> None:
    ds = ct_header()
    res = result(version="rev-2", test_weights=True)
    old = identity_of(replace(res, model=replace(res.model, version="rev-1")))
    identity = identity_of(res)
    sr = reread(build_sr(res, res.reports[0], identity=identity, evidence=[ds], device_uid=f"{ROOT}.5",
                         device_serial="dev-1",
                         predecessor=Predecessor(str(ds.StudyInstanceUID), old.series_uid, old.instance_uid)))
    text = texts(sr)
    assert text.count(TEST_MARKER) >= 3  # the observer, each finding, the root comment
    assert sr.SeriesDescription == "TEST OUTPUT, not clinical: chartlight AI read"
    (previous,) = sr.PredecessorDocumentsSequence
    assert previous.StudyInstanceUID == ds.StudyInstanceUID
    item = previous.ReferencedSeriesSequence[0]
    assert item.SeriesInstanceUID == old.series_uid
    assert item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == old.instance_uid


def test_a_box_on_a_multi_frame_instance_names_its_frame() -> None:
    ds = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"), stop_before_pixels=True)
    assert int(ds.NumberOfFrames) > 3
    res = result()
    (boxed, coded) = res.items
    assert isinstance(boxed, Finding) and isinstance(coded, Finding)
    where = ImageEvidence(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                          frame=3, box=Box(1.0, 2.0, 30.0, 40.0))
    res = replace(res, items=(replace(boxed, evidence=(where,)), replace(coded, evidence=())))
    sr = reread(build_sr(res, res.reports[0], identity=identity_of(res), evidence=[ds],
                         device_uid=f"{ROOT}.5", device_serial="dev-1"))
    (planar,) = sr.content.get_planar_roi_measurement_groups()
    assert planar.roi is not None
    source = planar.roi.ContentSequence[0].ReferencedSOPSequence[0]
    assert source.ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert int(source.ReferencedFrameNumber) == 3


class _Engine:
    def available(self) -> bool:
        return True


def test_the_installed_imaging_pipeline_gets_the_write_back_settings() -> None:
    from plugin.pipelines.imaging import ImagingPipeline
    from plugin.pipelines.registry import imaging_pipeline

    settings = Settings(imaging_write_back_dicom=True, dicom_uid_root=ROOT,
                        imaging_dicom_write_endpoints=("http://pacs.test/dicom-web",))
    installed = imaging_pipeline(settings, engine=_Engine())  # type: ignore[arg-type]
    assert isinstance(installed.run, ImagingPipeline)
    assert installed.run.dicom_write == dicom_write_options(settings)
    default = imaging_pipeline(Settings(), engine=_Engine())  # type: ignore[arg-type]
    assert isinstance(default.run, ImagingPipeline)
    assert default.run.dicom_write is not None and not default.run.dicom_write.enabled


@pytest.mark.parametrize(("choices", "why"), [
    ({"route": "binary"}, "the study was read from DICOM attachments, not from a PACS"),
    ({"endpoint": "http://pacs.test/dicom-webx"},
     "http://pacs.test/dicom-webx is not a DICOMweb endpoint trusted for writes"),
])
def test_no_sr_is_sent_without_a_write_allowed_pacs_and_the_result_says_why(
        choices: dict[str, str], why: str) -> None:
    from plugin.pipelines.imaging.prepared import PreparedStudy
    from plugin.pipelines.imaging.stow import write_back_sr

    res = result()
    study = PreparedStudy(source=res.source, study_uid="1.2.3", kind="projection", modality="CR",
                          body_part="CHEST", started=None, images=(), choices=choices)
    options = DicomWriteOptions(enabled=True, write_endpoints=("http://pacs.test/dicom-web",))
    out = write_back_sr(None, res, study, options)  # type: ignore[arg-type]  # refused before any call
    assert out.reports == res.reports and out.reports[0].dicom_sr_uid == ""
    (problem,) = out.problems
    assert problem.where == "ImagingStudy/7" and problem.reason.startswith("DICOM SR not sent: " + why)
    assert write_back_sr(None, res, study, replace(options, enabled=False)) == res  # type: ignore[arg-type]
