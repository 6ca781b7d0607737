"""Document understanding: lab reports as PDFs, scans and photos -> verified lab values."""

from plugin.pipelines.documents.inputs import find_sources
from plugin.pipelines.documents.layout_extractor import MODEL as LAYOUT_MODEL
from plugin.pipelines.documents.pipeline import (
    PIPELINE,
    PIPELINE_VERSION,
    DocumentsOptions,
    DocumentsPipeline,
)

__all__ = [
    "LAYOUT_MODEL",
    "PIPELINE",
    "PIPELINE_VERSION",
    "DocumentsOptions",
    "DocumentsPipeline",
    "find_sources",
]
