"""Lab reports nobody here drew: ≥ 15 layouts by three producers (reportlab, Chromium printing
HTML+CSS, fpdf2), each with its ground truth, plus seeded scans and phone photos of them.

    from tests.corpus.labs import layouts, scans
    for layout in layouts():
        pdf = layout.render()           # bytes, cached on disk
        for row in layout.truth: ...    # TruthRow: as printed, and what it means
        for scan in scans(layout): ...  # ScanVariant: image bytes and content type

The generator never imports chartlight's reader (plugin/pipelines), and the reader never imports
this package: the layouts are not shaped by what the reader expects.
"""

from .layouts import layout, layouts
from .model import LabLayout, LabTest, ScanVariant, TruthRow
from .scans import scans
from .scoring import ReadValue, Score, score

__all__ = ["LabLayout", "LabTest", "ReadValue", "Score", "ScanVariant", "TruthRow", "layout",
           "layouts", "scans", "score"]
