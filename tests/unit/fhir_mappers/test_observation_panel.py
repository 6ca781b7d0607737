"""A panel measured together (a blood pressure) -> one Observation with a component per part."""

from __future__ import annotations

from decimal import Decimal

from fhir_mappers import to_observation
from plugin.results import Coding, MeasuredValue, ModelInfo, SourceRef

LOINC = "http://loinc.org"


def test_a_blood_pressure_panel_has_coded_components_and_no_value_of_its_own() -> None:
    parts = (MeasuredValue("bp/s", "Systolic blood pressure", Decimal(128), "mmHg",
                           code=Coding(LOINC, "8480-6"), category="vital-signs"),
             MeasuredValue("bp/d", "Diastolic blood pressure", Decimal(82), "mmHg",
                           code=Coding(LOINC, "8462-4"), category="vital-signs"))
    panel = MeasuredValue("bp", "Blood pressure", "", code=Coding(LOINC, "85354-9", "Blood pressure panel"),
                          category="vital-signs", components=parts, dictated=True)
    resource = to_observation(panel, subject="Patient/1", source=SourceRef("DocumentReference", "2", "1"),
                              identifier={"system": "urn:x", "value": "1"},
                              model=ModelInfo("m", "1", ("Deterministic-AI",)))
    assert "valueQuantity" not in resource and "valueString" not in resource
    assert resource["code"]["coding"][0]["code"] == "85354-9"
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"], c["valueQuantity"]["code"])
            for c in resource["component"]] == [("8480-6", 128, "mm[Hg]"), ("8462-4", 82, "mm[Hg]")]
    assert resource["component"][0]["code"]["coding"][0]["display"] == "Systolic blood pressure"
    assert [s["code"] for s in resource["meta"]["security"]] == ["AIAST", "DICTAST"]
