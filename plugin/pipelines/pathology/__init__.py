"""Whole-slide pathology (DICOM VL Whole Slide Microscopy): the slide's pyramid read from the
PACS, only the tiles needed fetched by WADO-RS frame retrieval, patches sampled over tissue, and
MedGemma's findings written as a pathology DiagnosticReport (docs/pathology.md)."""
