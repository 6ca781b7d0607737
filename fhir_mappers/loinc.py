"""A curated table of common lab tests and their LOINC codes (http://loinc.org).

Only codes checked against LOINC are listed; a test that is not here, or whose unit does not fit
the code's property (mass vs. substance concentration, count vs. percentage), gets no LOINC code
and is written as text plus chartlight's `lab-test-name` code instead: a missing code is
recoverable, a wrong one is not.

Deliberately absent: a plain "eGFR" (LOINC codes eGFR by its equation, so only names that state
the equation are coded) and the urine dipstick names without a urine context ("Glucose" in a
urinalysis panel is not serum glucose: pass the panel or specimen as `specimen`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .units import normalise_unit

Specimen = Literal["blood", "urine"]
Scale = Literal["Qn", "Ord"]  # quantitative (a number) or ordinal (Negative / 1+ / Positive)


@dataclass(frozen=True)
class LoincEntry:
    code: str
    display: str  # LOINC long common name
    units: tuple[str, ...]  # UCUM codes that fit the code's property; the first is LOINC's own
    aliases: tuple[str, ...]
    specimen: Specimen = "blood"  # blood, serum or plasma
    scale: Scale = "Qn"

    @property
    def ucum(self) -> str | None:
        """The UCUM unit the code expects."""
        return self.units[0] if self.units else None


_ABS = ("10*3/uL", "10*9/L", "/uL")  # absolute counts of white cells and platelets
_ENZYME = ("U/L", "[IU]/L")

_E = LoincEntry
TABLE: tuple[LoincEntry, ...] = (
    # ---- glucose and diabetes
    _E("2345-7", "Glucose [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("glucose", "glu", "blood glucose", "blood sugar", "random glucose", "glucose random",
        "plasma glucose", "serum glucose", "rbs")),
    _E("14749-6", "Glucose [Moles/volume] in Serum or Plasma", ("mmol/L",),
       ("glucose", "glu", "blood glucose", "blood sugar", "random glucose", "glucose random",
        "plasma glucose", "serum glucose", "rbs")),
    _E("1558-6", "Fasting glucose [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("fasting glucose", "glucose fasting", "fbs", "fasting blood sugar", "fpg",
        "fasting plasma glucose", "fbg")),
    _E("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", ("%",),
       ("hba1c", "hemoglobin a1c", "haemoglobin a1c", "a1c", "hgb a1c", "glycated hemoglobin",
        "glycated haemoglobin", "glycohemoglobin", "glycosylated hemoglobin")),
    _E("59261-8", "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol", ("mmol/mol",),
       ("hba1c", "hemoglobin a1c", "haemoglobin a1c", "a1c", "hgb a1c", "glycated hemoglobin",
        "glycated haemoglobin", "hba1c ifcc")),
    # ---- complete blood count
    _E("718-7", "Hemoglobin [Mass/volume] in Blood", ("g/dL", "g/L"),
       ("hemoglobin", "haemoglobin", "hgb", "hb")),
    _E("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", ("%",),
       ("hematocrit", "haematocrit", "hct", "pcv", "packed cell volume")),
    _E("6690-2", "Leukocytes [#/volume] in Blood by Automated count", _ABS,
       ("wbc", "wbc count", "white blood cells", "white blood cell count", "white cell count",
        "leukocytes", "leucocytes", "total leukocyte count", "tlc", "total wbc count")),
    _E("789-8", "Erythrocytes [#/volume] in Blood by Automated count", ("10*6/uL", "10*12/L"),
       ("rbc", "rbc count", "red blood cells", "red blood cell count", "red cell count",
        "erythrocytes", "erythrocyte count")),
    _E("777-3", "Platelets [#/volume] in Blood by Automated count", _ABS,
       ("platelets", "platelet", "platelet count", "plt", "thrombocytes")),
    _E("787-2", "MCV [Entitic volume] by Automated count", ("fL",),
       ("mcv", "mean corpuscular volume", "mean cell volume")),
    _E("785-6", "MCH [Entitic mass] by Automated count", ("pg",),
       ("mch", "mean corpuscular hemoglobin", "mean cell hemoglobin")),
    _E("786-4", "MCHC [Mass/volume] by Automated count", ("g/dL", "g/L"),
       ("mchc", "mean corpuscular hemoglobin concentration", "mean cell hemoglobin concentration")),
    _E("788-0", "Erythrocyte distribution width [Ratio] by Automated count", ("%",),
       ("rdw", "rdw cv", "red cell distribution width", "red blood cell distribution width")),
    _E("32623-1", "Platelet mean volume [Entitic volume] in Blood by Automated count", ("fL",),
       ("mpv", "mean platelet volume")),
    _E("770-8", "Neutrophils/100 leukocytes in Blood by Automated count", ("%",),
       ("neutrophils", "neutrophil", "neut", "neutrophils percent", "segs", "polys")),
    _E("751-8", "Neutrophils [#/volume] in Blood by Automated count", _ABS,
       ("neutrophils", "neutrophil", "neut", "absolute neutrophils", "neutrophils absolute",
        "abs neutrophils", "anc", "absolute neutrophil count")),
    _E("736-9", "Lymphocytes/100 leukocytes in Blood by Automated count", ("%",),
       ("lymphocytes", "lymphocyte", "lymphs", "lymph")),
    _E("731-0", "Lymphocytes [#/volume] in Blood by Automated count", _ABS,
       ("lymphocytes", "lymphocyte", "lymphs", "lymph", "absolute lymphocytes",
        "lymphocytes absolute", "abs lymphocytes")),
    _E("5905-5", "Monocytes/100 leukocytes in Blood by Automated count", ("%",),
       ("monocytes", "monocyte", "monos", "mono")),
    _E("742-7", "Monocytes [#/volume] in Blood by Automated count", _ABS,
       ("monocytes", "monocyte", "monos", "absolute monocytes", "monocytes absolute")),
    _E("713-8", "Eosinophils/100 leukocytes in Blood by Automated count", ("%",),
       ("eosinophils", "eosinophil", "eos")),
    _E("711-2", "Eosinophils [#/volume] in Blood by Automated count", _ABS,
       ("eosinophils", "eosinophil", "eos", "absolute eosinophils", "eosinophils absolute")),
    _E("706-2", "Basophils/100 leukocytes in Blood by Automated count", ("%",),
       ("basophils", "basophil", "basos", "baso")),
    _E("704-7", "Basophils [#/volume] in Blood by Automated count", _ABS,
       ("basophils", "basophil", "basos", "absolute basophils", "basophils absolute")),
    # ---- basic / comprehensive metabolic panel
    _E("2951-2", "Sodium [Moles/volume] in Serum or Plasma", ("mmol/L", "meq/L"),
       ("sodium", "na")),
    _E("2823-3", "Potassium [Moles/volume] in Serum or Plasma", ("mmol/L", "meq/L"),
       ("potassium", "k")),
    _E("2075-0", "Chloride [Moles/volume] in Serum or Plasma", ("mmol/L", "meq/L"),
       ("chloride", "cl")),
    _E("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", ("mmol/L", "meq/L"),
       ("co2", "c02", "total co2", "tco2", "carbon dioxide", "carbon dioxide total")),
    _E("1963-8", "Bicarbonate [Moles/volume] in Serum or Plasma", ("mmol/L", "meq/L"),
       ("bicarbonate", "hco3", "bicarb")),
    _E("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("bun", "urea nitrogen", "blood urea nitrogen")),
    _E("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("creatinine", "creat", "cr", "scr", "serum creatinine")),
    _E("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", ("umol/L",),
       ("creatinine", "creat", "cr", "scr", "serum creatinine")),
    _E("17861-6", "Calcium [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("calcium", "ca", "total calcium", "calcium total")),
    _E("19123-9", "Magnesium [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("magnesium", "mg")),
    _E("2777-1", "Phosphate [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("phosphorus", "phosphate", "phos", "inorganic phosphorus")),
    _E("2885-2", "Protein [Mass/volume] in Serum or Plasma", ("g/dL", "g/L"),
       ("total protein", "protein total", "protein", "tp")),
    _E("1751-7", "Albumin [Mass/volume] in Serum or Plasma", ("g/dL", "g/L"),
       ("albumin", "alb")),
    _E("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("total bilirubin", "bilirubin total", "bilirubin", "tbil", "t bili", "bili total")),
    _E("1968-7", "Bilirubin.direct [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("direct bilirubin", "bilirubin direct", "dbil", "d bili", "conjugated bilirubin")),
    _E("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", _ENZYME,
       ("alkaline phosphatase", "alk phos", "alp", "alkp")),
    _E("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
       _ENZYME,
       ("alt", "sgpt", "alt sgpt", "alanine aminotransferase", "alanine transaminase")),
    _E("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
       _ENZYME,
       ("ast", "sgot", "ast sgot", "aspartate aminotransferase", "aspartate transaminase")),
    _E("2324-2", "Gamma glutamyl transferase [Enzymatic activity/volume] in Serum or Plasma",
       _ENZYME, ("ggt", "gamma gt", "ggtp", "gamma glutamyl transferase")),
    # ---- lipid panel
    _E("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("total cholesterol", "cholesterol total", "cholesterol", "chol", "tc")),
    _E("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("hdl", "hdl cholesterol", "hdl c", "cholesterol hdl", "hdl chol")),
    _E("2089-1", "Cholesterol in LDL [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("ldl", "ldl cholesterol", "ldl c", "cholesterol ldl", "ldl chol", "ldl direct",
        "direct ldl")),
    _E("13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
       ("mg/dL",),
       ("ldl calc", "ldl calculated", "calculated ldl", "ldl c calc", "ldl cholesterol calc",
        "ldl cholesterol calculated", "ldl chol calc", "ldl chol calc nih")),
    _E("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("triglycerides", "triglyceride", "trig", "trigs", "tg")),
    _E("43396-1", "Cholesterol non HDL [Mass/volume] in Serum or Plasma", ("mg/dL",),
       ("non hdl cholesterol", "non hdl", "non hdl c", "cholesterol non hdl")),
    # ---- thyroid
    _E("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", ("m[IU]/L", "u[IU]/mL"),
       ("tsh", "thyrotropin", "thyroid stimulating hormone", "tsh ultrasensitive")),
    _E("3024-7", "Thyroxine (T4) free [Mass/volume] in Serum or Plasma", ("ng/dL",),
       ("free t4", "t4 free", "ft4", "free thyroxine", "thyroxine free")),
    _E("14920-3", "Thyroxine (T4) free [Moles/volume] in Serum or Plasma", ("pmol/L",),
       ("free t4", "t4 free", "ft4", "free thyroxine", "thyroxine free")),
    # ---- iron and vitamins
    _E("2276-4", "Ferritin [Mass/volume] in Serum or Plasma", ("ng/mL", "ug/L"),
       ("ferritin",)),
    _E("2498-4", "Iron [Mass/volume] in Serum or Plasma", ("ug/dL",),
       ("iron", "serum iron", "fe")),
    _E("2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", ("pg/mL", "ng/L"),
       ("vitamin b12", "vit b12", "b12", "cobalamin", "vitamin b 12")),
    _E("2284-8", "Folate [Mass/volume] in Serum or Plasma", ("ng/mL", "ug/L"),
       ("folate", "folic acid", "serum folate")),
    _E("62292-8", "25-Hydroxyvitamin D2+25-Hydroxyvitamin D3 [Mass/volume] in Serum or Plasma",
       ("ng/mL",),
       ("vitamin d", "vit d", "25 oh vitamin d", "25 hydroxyvitamin d", "25 hydroxy vitamin d",
        "vitamin d 25 hydroxy", "vitamin d 25 oh", "25 oh d", "vitamin d total",
        "vitamin d 25 hydroxy total")),
    # ---- inflammation
    _E("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", ("mg/L", "mg/dL"),
       ("crp", "c reactive protein")),
    _E("30522-7", "C reactive protein [Mass/volume] in Serum or Plasma by High sensitivity method",
       ("mg/L",),
       ("hs crp", "hscrp", "high sensitivity crp", "crp high sensitivity", "crp hs",
        "high sensitivity c reactive protein")),
    _E("30341-2", "Erythrocyte sedimentation rate", ("mm/h",),
       ("esr", "sed rate", "erythrocyte sedimentation rate", "sedimentation rate")),
    # ---- coagulation
    _E("5902-2", "Prothrombin time (PT)", ("s",), ("pt", "prothrombin time", "protime")),
    _E("6301-6", "INR in Platelet poor plasma by Coagulation assay", ("{INR}", "{ratio}", "1"),
       ("inr", "pt inr", "international normalized ratio", "international normalised ratio")),
    _E("3173-2", "aPTT in Blood by Coagulation assay", ("s",),
       ("aptt", "ptt", "partial thromboplastin time", "activated partial thromboplastin time")),
    # ---- cardiac
    _E("10839-9", "Troponin I.cardiac [Mass/volume] in Serum or Plasma", ("ng/mL", "ug/L"),
       ("troponin i", "tni", "ctni", "cardiac troponin i")),
    _E("89579-7",
       "Troponin I.cardiac [Mass/volume] in Serum or Plasma by High sensitivity method",
       ("ng/L",), ("hs troponin i", "hs tni", "hstni", "high sensitivity troponin i")),
    _E("6598-7", "Troponin T.cardiac [Mass/volume] in Serum or Plasma", ("ng/mL", "ug/L"),
       ("troponin t", "tnt", "ctnt", "cardiac troponin t")),
    _E("67151-1",
       "Troponin T.cardiac [Mass/volume] in Serum or Plasma by High sensitivity method",
       ("ng/L",), ("hs troponin t", "hs tnt", "hstnt", "high sensitivity troponin t")),
    _E("30934-4", "Natriuretic peptide B [Mass/volume] in Serum or Plasma", ("pg/mL", "ng/L"),
       ("bnp", "b type natriuretic peptide", "brain natriuretic peptide")),
    _E("33762-6", "Natriuretic peptide.B prohormone N-Terminal [Mass/volume] in Serum or Plasma",
       ("pg/mL", "ng/L"), ("nt probnp", "ntprobnp", "nt pro bnp", "n terminal pro bnp")),
    # ---- kidney function (by equation only)
    _E("98979-8",
       "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or "
       "Blood by Creatinine-based formula (CKD-EPI 2021)", ("mL/min/{1.73_m2}",),
       ("egfr ckd epi 2021", "egfr 2021 ckd epi", "egfr cr ckd epi 2021",
        "estimated gfr ckd epi 2021")),
    _E("62238-1",
       "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or "
       "Blood by Creatinine-based formula (CKD-EPI)", ("mL/min/{1.73_m2}",),
       ("egfr ckd epi", "estimated gfr ckd epi", "egfr cr ckd epi")),
    _E("33914-3",
       "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or Plasma "
       "by Creatinine-based formula (MDRD)", ("mL/min/{1.73_m2}",),
       ("egfr mdrd", "estimated gfr mdrd", "mdrd egfr", "egfr by mdrd")),
    # ---- urinalysis (urine context only; see the module docstring)
    _E("5811-5", "Specific gravity of Urine by Test strip", ("1",),
       ("specific gravity", "sp gravity", "sp gr", "sg"), "urine"),
    _E("5803-2", "pH of Urine by Test strip", ("[pH]",), ("ph",), "urine"),
    _E("20454-5", "Protein [Presence] in Urine by Test strip", (),
       ("protein", "proteins"), "urine", "Ord"),
    _E("25428-4", "Glucose [Presence] in Urine by Test strip", (),
       ("glucose", "sugar"), "urine", "Ord"),
    _E("2514-8", "Ketones [Presence] in Urine by Test strip", (),
       ("ketones", "ketone", "ketone bodies"), "urine", "Ord"),
    _E("5794-3", "Hemoglobin [Presence] in Urine by Test strip", (),
       ("blood", "occult blood", "hemoglobin", "haemoglobin"), "urine", "Ord"),
    _E("5802-4", "Nitrite [Presence] in Urine by Test strip", (),
       ("nitrite", "nitrites"), "urine", "Ord"),
    _E("5799-2", "Leukocyte esterase [Presence] in Urine by Test strip", (),
       ("leukocyte esterase", "leucocyte esterase", "leukocytes", "leu", "le"), "urine", "Ord"),
    _E("9318-7", "Albumin/Creatinine [Mass Ratio] in Urine", ("mg/g",),
       ("albumin creatinine ratio", "acr", "uacr", "microalbumin creatinine ratio",
        "albumin creatinine"), "urine"),
)

_NOISE = frozenset({"serum", "plasma", "ser", "plas", "level", "lvl", "result", "conc", "s", "p"})


def name_key(name: str) -> str:
    """A test name reduced for matching: case, punctuation, spacing and specimen words dropped,
    and the OCR slip "Alc" for "A1c" undone."""
    text = name.lower().replace("µ", "u").replace("μ", "u")
    tokens = [t for t in re.findall(r"[^\W_]+", text) if t not in _NOISE]
    tokens = [re.sub(r"alc$", "a1c", t) for t in tokens]
    return "".join(tokens)


def _build_index() -> dict[tuple[Specimen, str], list[LoincEntry]]:
    index: dict[tuple[Specimen, str], list[LoincEntry]] = {}

    def add(context: Specimen, alias: str, entry: LoincEntry) -> None:
        bucket = index.setdefault((context, name_key(alias)), [])
        if entry not in bucket:
            bucket.append(entry)

    for entry in TABLE:
        for alias in entry.aliases:
            add(entry.specimen, alias, entry)
            if entry.specimen == "urine":
                # Naming the specimen makes a urine test findable from any context.
                for spelled in (f"urine {alias}", f"{alias} urine", f"ua {alias}", f"u {alias}"):
                    add("blood", spelled, entry)
                    add("urine", spelled, entry)
    return index


_INDEX = _build_index()
_BY_CODE = {entry.code: entry for entry in TABLE}


def is_urine_context(specimen: str) -> bool:
    return bool(re.search(r"urin|\bua\b", specimen.lower()))


def lookup_loinc(
    name: str, unit: str | None = None, *, specimen: str = "", numeric: bool | None = None
) -> LoincEntry | None:
    """The LOINC entry for a printed test name, or None.

    `unit` (printed or UCUM) picks between codes that differ by property (glucose in mg/dL vs
    mmol/L, neutrophils in % vs 10^9/L); a unit that fits none of them gives None. No unit
    (None or blank) takes the first match. `specimen` is the item's specimen or panel name: a
    urine context switches to the urinalysis codes. `numeric` (is the result a number?) rules out
    quantitative codes for results like "Negative" and ordinal codes for numbers.
    """
    context: Specimen = "urine" if is_urine_context(specimen) else "blood"
    candidates = _INDEX.get((context, name_key(name)), [])
    if numeric is not None:
        candidates = [e for e in candidates if (e.scale == "Qn") == numeric]
    if not candidates:
        return None
    if unit is None or not unit.strip():
        return candidates[0]
    ucum = normalise_unit(unit).ucum
    for entry in candidates:
        if entry.scale == "Ord" or (ucum is not None and ucum in entry.units):
            return entry
    return None


def loinc_entry(code: str) -> LoincEntry | None:
    """The table's entry for a LOINC code (for its display), or None."""
    return _BY_CODE.get(code)
