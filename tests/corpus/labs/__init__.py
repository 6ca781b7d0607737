"""Lab reports nobody here drew: 18 layouts by three producers (reportlab, Chromium printing
HTML+CSS, fpdf2) and 2 whose text layer cannot be trusted (`LabLayout.text_layer(page)`), each
with its ground truth, plus seeded scans and phone photos of them.

    from tests.corpus.labs import layouts, scans
    for layout in layouts():
        pdf = layout.render()           # bytes, cached on disk
        for row in layout.truth: ...    # TruthRow: as printed, and what it means
        for scan in scans(layout): ...  # ScanVariant: image bytes and content type

The generator never imports chartlight's reader (plugin/pipelines), and the reader never imports
this package: the layouts are not shaped by what the reader expects.
"""

from .layouts import held_out, layout, layouts
from .model import LabLayout, LabTest, ScanVariant, TextLayer, TruthRow
from .scans import scans
from .scoring import ReadValue, Score, score

__all__ = ["LabLayout", "LabTest", "ReadValue", "Score", "ScanVariant", "TextLayer", "TruthRow",
           "held_out", "layout", "layouts", "scans", "score"]
