"""The synthetic patient whose lab report, dictation and images the sandbox is seeded with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal


@dataclass(frozen=True)
class SyntheticPatient:
    """Demographics as every generated input prints or encodes them."""

    mrn: str
    family: str
    given: str
    birth_date: date
    gender: Literal["female", "male"]

    @property
    def display_name(self) -> str:
        """Name as a lab report header prints it: "FAMILY, Given"."""
        return f"{self.family.upper()}, {self.given}"

    @property
    def dicom_name(self) -> str:
        """DICOM PN value: family^given."""
        return f"{self.family}^{self.given}"

    @property
    def dicom_sex(self) -> str:
        return "F" if self.gender == "female" else "M"


# Entirely fictional: the name, MRN and birth date belong to no real person.
DEMO_PATIENT = SyntheticPatient(
    mrn="CL-004417",
    family="Lindqvist",
    given="Maren",
    birth_date=date(1962, 6, 18),
    gender="female",
)
