"""The corpus's nouns: a lab test as a report states it, a row as one layout prints it (the ground
truth), a layout, and a degraded scan of one.

Nothing here knows how chartlight reads documents: the truth is what the generator printed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

Producer = Literal["reportlab", "chromium", "fpdf2", "pillow"]
Flag = Literal["", "H", "L", "A"]
RangeKind = Literal["between", "below", "above", "none"]  # "a-b", "< b", "> a", none printed
TextLayer = Literal["text", "garbage", "none"]  # what a page's text layer holds


@dataclass(frozen=True)
class LabTest:
    """One result as the laboratory reported it, before any layout prints it."""

    name: str  # as this report names it ("Haemoglobin", "ALT (SGPT)")
    value: Decimal  # the number (for "<0.5": 0.5, with comparator "<")
    unit: str  # as printed
    ucum: str  # the UCUM code the printed unit means (hand-written here, not computed)
    low: Decimal | None = None
    high: Decimal | None = None
    flag: Flag = ""
    loinc: str = ""  # the code a catalogue should find for this name and unit; "" = none
    comparator: Literal["", "<", ">"] = ""
    scientific: bool = False  # print "2.1 x 10^3" for 2100
    places: int = 0  # decimals printed

    @property
    def range_kind(self) -> RangeKind:
        if self.low is not None and self.high is not None:
            return "between"
        if self.high is not None:
            return "below"
        if self.low is not None:
            return "above"
        return "none"


@dataclass(frozen=True)
class TruthRow:
    """A row exactly as one layout printed it, and what it means."""

    name: str  # the test name as printed (a wrapped name joined by one space)
    value_text: str  # the result as printed, without its flag ("262,000", "0,94", "<0.5")
    value: Decimal  # its number ("<0.5" -> 0.5; "2.1 x 10^3" -> 2100)
    unit: str  # as printed ("" when the report prints none)
    ucum: str  # the UCUM code of that unit
    range_text: str  # as printed ("3.5-5.1", "< 200", "(0.70-1.30)"), "" when none
    low: Decimal | None
    high: Decimal | None
    flag: Flag  # what the report's flag says ("" = not flagged)
    flag_text: str  # the flag as printed ("H", "*", "High"), "" when none
    page: int  # 1-based
    loinc: str = ""  # the expected LOINC code, "" where the catalogue should not claim one
    comparator: str = ""


@dataclass(frozen=True)
class LabLayout:
    name: str
    producer: Producer
    description: str  # what the layout varies, for test ids and the benchmark table
    truth: tuple[TruthRow, ...]
    collected: datetime  # the specimen's collection time, printed in the layout's date style
    date_text: str  # how the layout prints it
    pages: int
    decimal_comma: bool = False
    text_layers: tuple[TextLayer, ...] = ()  # per page; () = every page has its text layer
    _render: Callable[[], bytes] | None = None

    def text_layer(self, page: int) -> TextLayer:
        """What page `page` (1-based) has as its text layer."""
        return self.text_layers[page - 1] if self.text_layers else "text"

    def render(self) -> bytes:
        """The layout as a PDF (cached on disk, keyed by the generator's code)."""
        if self._render is None:
            raise RuntimeError(f"layout {self.name} has no renderer")
        return self._render()


@dataclass(frozen=True)
class ScanVariant:
    name: str  # "<layout>/<variant>"
    layout: str
    data: bytes
    content_type: str  # image/jpeg, image/png, application/pdf (image-only pages)
    dpi: int
    description: str
