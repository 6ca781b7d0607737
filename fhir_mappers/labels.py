"""AI labels (HL7 AI Transparency on FHIR, ballot 1.0.0) and the test-weights marker.

Every AI-written resource carries `meta.security` AIAST (and DICTAST when the text came from
dictation). An element the model wrote inside a resource of other content gets the DS4P inline
label, announced by PROCESSINLINELABEL in `meta.security`. Output of a random-weight test model is
tagged `run-kind#test-weights` and says so in its own text, so no reader mistakes it for clinical
output.
"""

from __future__ import annotations

from plugin.results import ModelInfo

from .datatypes import JsonDict, coding
from .systems import CS_RUN_KIND, DS4P_INLINE_SEC_LABEL, V3_ACT_CODE, V3_OBSERVATION_VALUE

AIAST_CODE = "AIAST"  # v3-ObservationValue: artificial intelligence asserted
DICTAST_CODE = "DICTAST"  # v3-ObservationValue: dictation asserted
TEST_WEIGHTS_CODE = "test-weights"  # run-kind
TEST_WEIGHTS_DISPLAY = "TEST OUTPUT, not clinical (random-weight test model)"


def aiast() -> JsonDict:
    return coding(V3_OBSERVATION_VALUE, AIAST_CODE, "artificial intelligence asserted")


def dictast() -> JsonDict:
    return coding(V3_OBSERVATION_VALUE, DICTAST_CODE, "dictation asserted")


def process_inline_label() -> JsonDict:
    return coding(V3_ACT_CODE, "PROCESSINLINELABEL", "process inline security label")


def test_weights_tag() -> JsonDict:
    return coding(CS_RUN_KIND, TEST_WEIGHTS_CODE, TEST_WEIGHTS_DISPLAY)


def ai_meta(model: ModelInfo, *, dictated: bool = False, inline_labels: bool = False) -> JsonDict:
    """`meta` for a resource the model wrote."""
    security = [aiast()]
    if dictated:
        security.append(dictast())
    if inline_labels:
        security.append(process_inline_label())
    # HAPI returns labels sorted by system and code; writing them in that order lets a re-run
    # compare what it maps with what the server holds without a spurious difference.
    security.sort(key=lambda label: (label["system"], label["code"]))
    meta: JsonDict = {"security": security}
    if model.test_weights:
        meta["tag"] = [test_weights_tag()]
    return meta


def inline_ai_label() -> JsonDict:
    """The DS4P inline label extension for one model-written element."""
    return {"url": DS4P_INLINE_SEC_LABEL, "valueCoding": aiast()}


def with_test_marker(model: ModelInfo, text: str) -> str:
    """`text` prefixed with the test-weights marker when the model is a test model."""
    if not model.test_weights:
        return text
    marker = f"[{TEST_WEIGHTS_DISPLAY}]"
    return f"{marker} {text}" if text.strip() else marker


def test_weights_note(model: ModelInfo) -> list[JsonDict]:
    """An Annotation list saying the content is test output, or nothing."""
    return [{"text": TEST_WEIGHTS_DISPLAY}] if model.test_weights else []
