"""Lab panels: which LOINC panel a printed panel heading is, and the report groups (one
DiagnosticReport each) that collect a document's values by panel.

Only panel codes we are sure of are listed; any other heading (or none) is reported under LOINC
11502-2 "Laboratory report".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from plugin.results import Coding, MeasuredValue, ReportGroup

LOINC = "http://loinc.org"
LAB_REPORT = Coding(LOINC, "11502-2", "Laboratory report")

# (pattern over the lower-cased heading, code); the first that matches wins.
_PANELS: tuple[tuple[re.Pattern[str], Coding], ...] = (
    (re.compile(r"(complete blood count|\bcbc\b).*diff|diff.*(complete blood count|\bcbc\b)"),
     Coding(LOINC, "57021-8", "CBC W Auto Differential panel - Blood")),
    (re.compile(r"complete blood count|\bcbc\b"),
     Coding(LOINC, "58410-2", "CBC panel - Blood by Automated count")),
    (re.compile(r"comprehensive metabolic|\bcmp\b"),
     Coding(LOINC, "24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma")),
    (re.compile(r"basic metabolic|\bbmp\b"),
     Coding(LOINC, "24321-2", "Basic metabolic 2000 panel - Serum or Plasma")),
    (re.compile(r"lipid"), Coding(LOINC, "24331-1", "Lipid 1996 panel - Serum or Plasma")),
    (re.compile(r"hepatic function|liver function"),
     Coding(LOINC, "24325-3", "Hepatic function 2000 panel - Serum or Plasma")),
    (re.compile(r"urinalysis"), Coding(LOINC, "24356-8", "Urinalysis complete panel - Urine")),
)


def panel_code(heading: str) -> Coding:
    text = heading.lower()
    return next((code for pattern, code in _PANELS if pattern.search(text)), LAB_REPORT)


def report_groups(values: Sequence[MeasuredValue],
                  effective: datetime | None) -> tuple[ReportGroup, ...]:
    """One group per printed panel, in the order panels first appear."""
    by_panel: dict[str, list[str]] = {}
    for value in values:
        by_panel.setdefault(value.panel.strip(), []).append(value.key)
    return tuple(
        ReportGroup(key=f"panel/{_slug(panel) or 'lab-report'}", code=panel_code(panel),
                    category="LAB", item_keys=tuple(keys), effective=effective)
        for panel, keys in by_panel.items())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
