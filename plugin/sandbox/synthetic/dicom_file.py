"""DICOM attributes every synthetic image shares, and the Part-10 encoding of a data set."""

from __future__ import annotations

import hashlib
import io
from datetime import date, datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from plugin.sandbox.synthetic.patient import SyntheticPatient


def dicom_date(moment: date) -> str:
    return moment.strftime("%Y%m%d")


def dicom_time(moment: datetime) -> str:
    return moment.strftime("%H%M%S")


def default_accession(study_uid: str) -> str:
    """A stable accession number (SH, <= 16 characters) for a study that was given none."""
    return f"NRH{int(hashlib.sha256(study_uid.encode()).hexdigest(), 16) % 10**9:09d}"


def patient_age(patient: SyntheticPatient, on: date) -> str:
    """DICOM AS value, e.g. "064Y"."""
    born = patient.birth_date
    years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    return f"{years:03d}Y"


def set_patient_and_study(ds: Dataset, patient: SyntheticPatient, *, study_uid: str, when: datetime,
                          accession_number: str, description: str) -> None:
    """Patient and General Study module attributes, shared by every synthetic image."""
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = patient.dicom_name
    ds.PatientID = patient.mrn
    ds.PatientBirthDate = dicom_date(patient.birth_date)
    ds.PatientSex = patient.dicom_sex
    ds.PatientAge = patient_age(patient, when.date())
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = dicom_date(when)
    ds.StudyTime = dicom_time(when)
    ds.StudyID = accession_number[-8:]
    ds.AccessionNumber = accession_number
    ds.StudyDescription = description
    ds.ReferringPhysicianName = "Adeyemi^Tomas^^Dr."
    if when.utcoffset() is not None:
        ds.TimezoneOffsetFromUTC = when.strftime("%z")
    ds.Manufacturer = "chartlight synthetic"
    ds.InstitutionName = "Northfield Regional Hospital"


def part10_bytes(ds: Dataset, transfer_syntax: UID) -> bytes:
    """`ds` as a DICOM Part-10 file: preamble, file meta information, then the data set."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
