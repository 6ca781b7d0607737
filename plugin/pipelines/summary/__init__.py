"""Chart understanding: a digest of the patient's FHIR record, a cited patient summary written by
MedGemma and checked line by line, and answers to a clinician's questions about the chart."""

from plugin.pipelines.summary.chart import Chart, read_chart
from plugin.pipelines.summary.citations import CheckedAnswer, CitedSentence, Withheld, check_answer
from plugin.pipelines.summary.digest import Digest, DigestLine, NumberedLine, build_digest
from plugin.pipelines.summary.latest import LatestSummary, latest_summary, queue_summary, refresh_if_changed
from plugin.pipelines.summary.pipeline import (
    PIPELINE,
    PIPELINE_VERSION,
    SUMMARY_KEY,
    SummaryNotWritten,
    SummaryOptions,
    SummaryPipeline,
)
from plugin.pipelines.summary.tokens import EstimatedCounter, TokenCounter, token_counter

__all__ = ["PIPELINE", "PIPELINE_VERSION", "SUMMARY_KEY", "Chart", "CheckedAnswer", "CitedSentence", "Digest",
           "DigestLine", "EstimatedCounter", "LatestSummary", "NumberedLine", "SummaryNotWritten",
           "SummaryOptions", "SummaryPipeline", "TokenCounter", "Withheld", "build_digest", "check_answer",
           "latest_summary", "queue_summary", "read_chart", "refresh_if_changed", "token_counter"]
