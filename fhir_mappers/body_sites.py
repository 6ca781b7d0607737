"""Body sites as the model names them -> SNOMED CT body structures (http://snomed.info/sct).

A short table of sites imaging and exam findings name most; any other site is written as text
only (CodeableConcept.text), never guessed.
"""

from __future__ import annotations

import re

from .datatypes import JsonDict, coding, concept
from .systems import SNOMED

# SNOMED CT concept id, its preferred term, and the names models and reports use for it.
_SITES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("51185008", "Thoracic structure", ("chest", "thorax", "thoracic")),
    ("39607008", "Lung structure", ("lung", "lungs", "pulmonary", "both lungs", "bilateral lungs")),
    ("44029006", "Left lung structure", ("left lung", "lung left", "l lung")),
    ("3341006", "Right lung structure", ("right lung", "lung right", "r lung")),
    ("80891009", "Heart structure", ("heart", "cardiac")),
    ("12738006", "Brain structure", ("brain", "cerebral")),
    ("69536005", "Head structure", ("head",)),
    ("45048000", "Neck structure", ("neck",)),
    ("113345001", "Abdominal structure", ("abdomen", "abdominal")),
    ("10200004", "Liver structure", ("liver", "hepatic")),
    ("64033007", "Kidney structure", ("kidney", "kidneys", "renal")),
    ("76752008", "Breast structure", ("breast",)),
    ("72696002", "Knee region structure", ("knee",)),
)

_BY_NAME = {
    re.sub(r"\s+", " ", name): (code, display) for code, display, names in _SITES for name in names
}


def body_site(name: str) -> JsonDict | None:
    """Observation.bodySite for a named site: SNOMED-coded when known, else text; None when
    no site was named."""
    text = name.strip()
    if not text:
        return None
    found = _BY_NAME.get(re.sub(r"[^a-z]+", " ", text.lower()).strip())
    if found is None:
        return concept(text=text)
    return concept(coding(SNOMED, *found), text=text)


def is_known_body_site(name: str) -> bool:
    """True when `name` is a site of the table above (written SNOMED-coded)."""
    site = body_site(name)
    return site is not None and "coding" in site
