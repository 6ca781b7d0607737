"""What the corpus's reports say (results of a synthetic patient, conventional US units, UK SI
units, an EU report), and how a layout prints each result: number format, flag style, range style.

The printed strings made here are the ground truth: a renderer places them, it never reformats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from .model import LabTest, TruthRow

D = Decimal
FlagStyle = Literal["column", "word", "suffix", "tight", "star"]
RangeStyle = Literal["dash", "spaced", "to", "paren"]

COLLECTED = datetime(2026, 11, 20, 8, 15)
DATE_US = "11/20/2026 08:15"
DATE_UK = "20/11/2026 08:15"
DATE_EU = "20.11.2026 08:15"
DATE_ISO = "2026-11-20 08:15"


def _t(name: str, value: str, unit: str, ucum: str, low: str | None, high: str | None,
       flag: Literal["", "H", "L"] = "", loinc: str = "", **extra: object) -> LabTest:
    places = len(value.split(".")[1]) if "." in value else 0
    return LabTest(name, D(value), unit, ucum, D(low) if low else None, D(high) if high else None,
                   flag, loinc, places=places, **extra)  # type: ignore[arg-type]


US_CBC = (
    _t("WBC", "11.2", "x10^3/uL", "10*3/uL", "4.0", "10.5", "H", "6690-2"),
    _t("RBC", "4.52", "x10^6/uL", "10*6/uL", "4.20", "5.80", "", "789-8"),
    _t("Hemoglobin", "13.1", "g/dL", "g/dL", "13.5", "17.5", "L", "718-7"),
    _t("Hematocrit", "40.2", "%", "%", "38.8", "50.0", "", "4544-3"),
    _t("MCV", "88.9", "fL", "fL", "80.0", "100.0", "", "787-2"),
    _t("MCH", "29.0", "pg", "pg", "27.0", "33.0", "", "785-6"),
    _t("MCHC", "32.6", "g/dL", "g/dL", "32.0", "36.0", "", "786-4"),
    _t("RDW", "13.4", "%", "%", "11.5", "14.5", "", "788-0"),
    _t("Platelet Count", "262000", "/uL", "/uL", "150000", "400000", "", "777-3"),
    _t("MPV", "10.1", "fL", "fL", "7.5", "11.5", "", "32623-1"),
    _t("Neutrophils", "68", "%", "%", "40", "75", "", "770-8"),
    _t("Lymphocytes", "22", "%", "%", "20", "45", "", "736-9"),
    _t("Monocytes", "7", "%", "%", "2", "10", "", "5905-5"),
    _t("Eosinophils", "2", "%", "%", "0", "6", "", "713-8"),
    _t("Basophils", "1", "%", "%", "0", "2", "", "706-2"),
)

US_CMP = (
    _t("Glucose", "128", "mg/dL", "mg/dL", "70", "99", "H", "2345-7"),
    _t("BUN", "18", "mg/dL", "mg/dL", "7", "20", "", "3094-0"),
    _t("Creatinine", "1.12", "mg/dL", "mg/dL", "0.70", "1.30", "", "2160-0"),
    _t("Sodium", "139", "mmol/L", "mmol/L", "136", "145", "", "2951-2"),
    _t("Potassium", "5.6", "mmol/L", "mmol/L", "3.5", "5.1", "H", "2823-3"),
    _t("Chloride", "101", "mmol/L", "mmol/L", "98", "107", "", "2075-0"),
    _t("Carbon Dioxide", "24", "mmol/L", "mmol/L", "22", "29", "", "2028-9"),
    _t("Calcium", "9.4", "mg/dL", "mg/dL", "8.6", "10.3", "", "17861-6"),
    _t("Total Protein", "7.1", "g/dL", "g/dL", "6.0", "8.3", "", "2885-2"),
    _t("Albumin", "4.2", "g/dL", "g/dL", "3.5", "5.0", "", "1751-7"),
    _t("Total Bilirubin", "0.8", "mg/dL", "mg/dL", "0.1", "1.2", "", "1975-2"),
    _t("Alkaline Phosphatase", "88", "U/L", "U/L", "40", "129", "", "6768-6"),
    _t("ALT (SGPT)", "42", "U/L", "U/L", "7", "56", "", "1742-6"),
    _t("AST (SGOT)", "31", "U/L", "U/L", "10", "40", "", "1920-8"),
)

US_LIPID_ENDO = (
    _t("Cholesterol, Total", "212", "mg/dL", "mg/dL", None, "200", "H", "2093-3"),
    _t("HDL Cholesterol", "38", "mg/dL", "mg/dL", "40", None, "L", "2085-9"),
    _t("LDL Chol Calc (NIH)", "141", "mg/dL", "mg/dL", None, "100", "H", "13457-7"),
    _t("Triglycerides", "165", "mg/dL", "mg/dL", None, "150", "H", "2571-8"),
    _t("Hemoglobin A1c", "6.1", "%", "%", "4.0", "5.6", "H", "4548-4"),
    _t("TSH", "2.45", "uIU/mL", "u[IU]/mL", "0.45", "4.50", "", "3016-3"),
    _t("Free T4", "1.1", "ng/dL", "ng/dL", "0.8", "1.8", "", "3024-7"),
    _t("Vitamin D, 25-Hydroxy", "24", "ng/mL", "ng/mL", "30", "100", "L", "62292-8"),
    _t("Ferritin", "45", "ng/mL", "ng/mL", "30", "400", "", "2276-4"),
    _t("Uric Acid", "6.8", "mg/dL", "mg/dL", "3.4", "7.0", "", "3084-1"),
    _t("Magnesium", "2.0", "mg/dL", "mg/dL", "1.6", "2.6", "", "19123-9"),
)

UK_SI = (
    _t("Haemoglobin", "131", "g/L", "g/L", "130", "170", "", "718-7"),
    _t("White cell count", "11.2", "x10^9/L", "10*9/L", "4.0", "11.0", "H", "6690-2"),
    _t("Platelet count", "262", "x10^9/L", "10*9/L", "150", "400", "", "777-3"),
    _t("Red cell count", "4.52", "x10^12/L", "10*12/L", "4.50", "5.90", "", "789-8"),
    _t("Mean cell volume", "88.9", "fL", "fL", "80.0", "100.0", "", "787-2"),
    _t("Neutrophils", "7.6", "x10^9/L", "10*9/L", "2.0", "7.5", "H", "751-8"),
    _t("Lymphocytes", "2.4", "x10^9/L", "10*9/L", "1.5", "4.0", "", "731-0"),
    _t("Sodium", "139", "mmol/L", "mmol/L", "133", "146", "", "2951-2"),
    _t("Potassium", "4.1", "mmol/L", "mmol/L", "3.5", "5.3", "", "2823-3"),
    _t("Urea", "6.2", "mmol/L", "mmol/L", "2.5", "7.8", "", "22664-7"),
    _t("Creatinine", "88", "µmol/L", "umol/L", "59", "104", "", "14682-9"),
    _t("Total bilirubin", "8", "µmol/L", "umol/L", "0", "21", "", "14631-6"),
    _t("Albumin", "42", "g/L", "g/L", "35", "50", "", "1751-7"),
    _t("Alanine transaminase", "42", "U/L", "U/L", "0", "40", "H", "1742-6"),
    _t("Cholesterol", "5.2", "mmol/L", "mmol/L", None, "5.0", "H", "14647-2"),
    _t("HbA1c", "48", "mmol/mol", "mmol/mol", "20", "41", "H", "59261-8"),
    _t("C-reactive protein", "12", "mg/L", "mg/L", "0", "5", "H", "1988-5"),
    _t("Free T4", "15.2", "pmol/L", "pmol/L", "12.0", "22.0", "", "14920-3"),
)

EU = (
    _t("Leucocytes", "7.8", "10^9/l", "10*9/L", "4.0", "10.0", "", "6690-2"),
    _t("Erythrocytes", "4.61", "10^12/l", "10*12/L", "4.30", "5.70", "", "789-8"),
    _t("Haemoglobin", "14.2", "g/dl", "g/dL", "13.5", "17.5", "", "718-7"),
    _t("Haematocrit", "42.1", "%", "%", "40.0", "52.0", "", "4544-3"),
    _t("Thrombocytes", "262", "10^9/l", "10*9/L", "150", "400", "", "777-3"),
    _t("Glucose", "5.4", "mmol/l", "mmol/L", "3.9", "5.6", "", "14749-6"),
    _t("Creatinine", "0.94", "mg/dl", "mg/dL", "0.70", "1.20", "", "2160-0"),
    _t("Urea", "32", "mg/dl", "mg/dL", "17", "43", "", "3091-6"),
    _t("Uric acid", "5.9", "mg/dl", "mg/dL", "3.4", "7.0", "", "3084-1"),
    _t("Gamma-GT", "38", "U/l", "U/L", None, "60", "", "2324-2"),
    _t("GPT (ALT)", "24", "U/l", "U/L", None, "50", "", "1742-6"),
    _t("GOT (AST)", "22", "U/l", "U/L", None, "50", "", "1920-8"),
    _t("CRP", "12.4", "mg/l", "mg/L", None, "5.0", "H", "1988-5"),
    _t("Sodium", "141", "mmol/l", "mmol/L", "136", "145", "", "2951-2"),
    _t("Potassium", "4.3", "mmol/l", "mmol/L", "3.5", "5.1", "", "2823-3"),
    _t("Cholesterol", "231", "mg/dl", "mg/dL", None, "200", "H", "2093-3"),
)

# Results printed with a comparator or in scientific notation (a US report).
US_SPECIAL = (
    _t("C-Reactive Protein", "0.5", "mg/L", "mg/L", None, "5.0", "", "1988-5", comparator="<"),
    _t("eGFR", "90", "mL/min/1.73m2", "mL/min/{1.73_m2}", "60", None, "", "", comparator=">"),
    _t("WBC", "7800", "/uL", "/uL", "4000", "10500", "", "6690-2", scientific=True),
    _t("Troponin I", "0.04", "ng/mL", "ng/mL", None, "0.04", "", "10839-9", comparator="<"),
    _t("Sodium", "139", "mEq/L", "meq/L", "136", "145", "", "2951-2"),
    _t("Potassium", "3.2", "mEq/L", "meq/L", "3.5", "5.1", "L", "2823-3"),
    _t("Glucose", "128", "mg/dL", "mg/dL", "70", "99", "H", "2345-7"),
    _t("Prothrombin Time", "12.8", "sec", "s", "11.0", "13.5", "", "5902-2"),
    _t("INR", "1.05", "ratio", "{ratio}", "0.85", "1.15", "", "6301-6"),
    _t("Platelets", "210", "K/uL", "10*3/uL", "150", "400", "", "777-3"),
)

# Long names that wrap in a narrow column.
US_LONG_NAMES = (
    _t("Alanine Aminotransferase (ALT/SGPT)", "42", "U/L", "U/L", "7", "56", "", "1742-6"),
    _t("Aspartate Aminotransferase (AST/SGOT)", "31", "U/L", "U/L", "10", "40", "", "1920-8"),
    _t("Gamma Glutamyl Transferase (GGT)", "71", "U/L", "U/L", "8", "61", "H", "2324-2"),
    _t("Alkaline Phosphatase", "88", "U/L", "U/L", "40", "129", "", "6768-6"),
    _t("Bilirubin, Total", "0.8", "mg/dL", "mg/dL", "0.1", "1.2", "", "1975-2"),
    _t("Bilirubin, Direct", "0.2", "mg/dL", "mg/dL", "0.0", "0.3", "", "1968-7"),
    _t("Protein, Total", "7.1", "g/dL", "g/dL", "6.0", "8.3", "", "2885-2"),
    _t("Albumin", "4.2", "g/dL", "g/dL", "3.5", "5.0", "", "1751-7"),
    _t("Thyroid Stimulating Hormone", "2.45", "uIU/mL", "u[IU]/mL", "0.45", "4.50", "", "3016-3"),
    _t("Prostate Specific Antigen, Total", "1.2", "ng/mL", "ng/mL", "0.0", "4.0", "", "2857-1"),
)


@dataclass(frozen=True)
class Style:
    """How a layout prints numbers, flags and ranges."""

    decimal_comma: bool = False
    thousands: bool = False  # "262,000"
    flags: FlagStyle = "column"
    ranges: RangeStyle = "dash"
    tight_bounds: bool = False  # "<200" rather than "< 200"


@dataclass(frozen=True)
class Printed:
    """A result's cells as a layout prints them, and the truth they carry."""

    name: str
    result: str  # the value cell (with the flag when the flag is a suffix/prefix)
    flag: str  # the flag cell ("" when the flag is in the result or absent)
    unit: str
    range: str
    truth: TruthRow


def number(value: Decimal, places: int, style: Style) -> str:
    text = f"{value:,.{places}f}" if style.thousands else f"{value:.{places}f}"
    return text.replace(".", ",") if style.decimal_comma else text


def _value_text(test: LabTest, style: Style) -> tuple[str, Decimal]:
    if test.scientific:
        exponent = len(str(int(test.value))) - 1  # 7800 -> 7.8 x 10^3
        mantissa = test.value / (D(10) ** exponent)
        return f"{number(mantissa, 1, style)} x 10^{exponent}", test.value
    return f"{test.comparator}{number(test.value, test.places, style)}", test.value


def _range_text(test: LabTest, style: Style) -> str:
    def bound(value: Decimal) -> str:
        places = test.places if test.places else 0
        if value != value.to_integral_value() and places == 0:
            places = 1
        return number(value, places, style)

    gap = "" if style.tight_bounds else " "
    if test.low is not None and test.high is not None:
        low, high = bound(test.low), bound(test.high)
        return {"dash": f"{low}-{high}", "spaced": f"{low} - {high}", "to": f"{low} to {high}",
                "paren": f"({low}-{high})"}[style.ranges]
    if test.high is not None:
        return f"<{gap}{bound(test.high)}"
    if test.low is not None:
        return f">{gap}{bound(test.low)}"
    return ""


def printed(test: LabTest, style: Style, page: int) -> Printed:
    value_text, value = _value_text(test, style)
    flag_text = {"column": test.flag, "word": {"H": "High", "L": "Low", "": ""}[test.flag],
                 "suffix": test.flag, "tight": test.flag,
                 "star": "*" if test.flag else ""}[style.flags]
    result, flag_cell = value_text, ""
    if style.flags in ("column", "word"):
        flag_cell = flag_text
    elif test.flag and style.flags == "suffix":
        result = f"{value_text} {flag_text}"
    elif test.flag and style.flags == "tight":
        result = f"{value_text}{flag_text}"
    elif test.flag:
        result = f"*{value_text}"
    range_text = _range_text(test, style)
    truth = TruthRow(test.name, value_text, value, test.unit, test.ucum, range_text, test.low,
                     test.high, test.flag, flag_text, page, test.loinc, test.comparator)
    return Printed(test.name, result, flag_cell, test.unit, range_text, truth)


def on_pages(tests: tuple[LabTest, ...], style: Style, per_page: int) -> list[list[Printed]]:
    """The results split into pages of `per_page` rows, each printed."""
    pages: list[list[Printed]] = []
    for start in range(0, len(tests), per_page):
        number_ = len(pages) + 1
        pages.append([printed(t, style, number_) for t in tests[start:start + per_page]])
    return pages

