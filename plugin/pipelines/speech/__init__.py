"""Speech pipeline: dictation audio -> MedASR transcript with word times."""

from plugin.pipelines.speech.inputs import find_sources
from plugin.pipelines.speech.pipeline import PIPELINE, SpeechEngine, SpeechOptions, SpeechPipeline

__all__ = ["PIPELINE", "SpeechEngine", "SpeechOptions", "SpeechPipeline", "find_sources"]
