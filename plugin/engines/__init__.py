"""Model engines behind small interfaces: vision-language (MedGemma), speech (MedASR), and the
readers of generative models' answers."""

from plugin.engines.answers import AnswerFormatError, find_json, strip_thoughts
from plugin.engines.medasr import MedAsrEngine
from plugin.engines.medgemma import DEFAULT_MODEL, MedGemmaEngine
from plugin.engines.vision_language import VisionLanguageEngine

__all__ = [
    "DEFAULT_MODEL",
    "AnswerFormatError",
    "MedAsrEngine",
    "MedGemmaEngine",
    "VisionLanguageEngine",
    "find_json",
    "strip_thoughts",
]
