"""Models -> FHIR R4 Device following the AI Transparency AI-Device profile: type
AIdeviceTypeCS#Artificial-Intelligence, the model's kinds as AIKind extensions, name and version.
One Device per model name and version (see identifiers.device_identifier).
"""

from __future__ import annotations

from plugin.results import ModelInfo

from .datatypes import JsonDict, coding, concept
from .identifiers import device_identifier
from .labels import TEST_WEIGHTS_DISPLAY, test_weights_tag
from .systems import AI_DEVICE_TYPE_CS, EXT_AI_KIND

AI_KIND_DISPLAYS = {
    "Large-Language-Models": "Large Language Models",
    "Vision-Language-Models": "Vision-Language Models",
    "Deep-Learning-Models": "Deep Learning Models",
    "Non-Deterministic-AI": "Non-deterministic AI",
    "Deterministic-AI": "Deterministic AI",
}


def to_device(model: ModelInfo) -> JsonDict:
    resource: JsonDict = {"resourceType": "Device"}
    if model.test_weights:
        resource["meta"] = {"tag": [test_weights_tag()]}
    kinds = [
        {"url": EXT_AI_KIND,
         "valueCodeableConcept": concept(coding(AI_DEVICE_TYPE_CS, kind, AI_KIND_DISPLAYS[kind]))}
        for kind in model.kinds
    ]
    if kinds:
        resource["extension"] = kinds
    resource["identifier"] = [device_identifier(model)]
    resource["status"] = "active"
    names = [{"name": model.name, "type": "model-name"}]
    if model.display.strip() and model.display.strip() != model.name:
        names.append({"name": model.display.strip(), "type": "user-friendly-name"})
    resource["deviceName"] = names
    resource["modelNumber"] = model.name
    resource["type"] = concept(
        coding(AI_DEVICE_TYPE_CS, "Artificial-Intelligence", "All kinds of Artificial Intelligence"))
    resource["version"] = [{"value": model.version}]
    if model.test_weights:
        resource["note"] = [{"text": TEST_WEIGHTS_DISPLAY}]
    return resource
