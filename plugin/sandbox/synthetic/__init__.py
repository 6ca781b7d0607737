"""Generators of a realistic synthetic patient's inputs: lab report, dictation, CT series, chest X-ray
and the chart (problems, medications, allergies, encounters, a year of vitals and labs)."""

from plugin.sandbox.synthetic.chart import chart_resources, scaled_observations
from plugin.sandbox.synthetic.chest_phantom import RIGHT_LOWER_LOBE_NODULE, Nodule
from plugin.sandbox.synthetic.chest_xray import NODULE_CENTRE_MM, chest_xray, nodule_centre_pixel
from plugin.sandbox.synthetic.ct import ct_series
from plugin.sandbox.synthetic.dictation import DICTATION_TEXT, espeak_wav, to_flac
from plugin.sandbox.synthetic.lab_report import (
    DEMO_LAB_REPORT,
    LabLine,
    LabReport,
    page_images,
    photo_png,
    scanned_pdf,
    text_pdf,
)
from plugin.sandbox.synthetic.patient import DEMO_PATIENT, SyntheticPatient

__all__ = [
    "DEMO_LAB_REPORT",
    "DEMO_PATIENT",
    "DICTATION_TEXT",
    "NODULE_CENTRE_MM",
    "RIGHT_LOWER_LOBE_NODULE",
    "LabLine",
    "LabReport",
    "Nodule",
    "SyntheticPatient",
    "chart_resources",
    "chest_xray",
    "ct_series",
    "espeak_wav",
    "nodule_centre_pixel",
    "page_images",
    "photo_png",
    "scaled_observations",
    "scanned_pdf",
    "text_pdf",
    "to_flac",
]
