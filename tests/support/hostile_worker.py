"""A job-worker process for the hostile-input corpus: `python -m tests.support.hostile_worker DB
CHAT_URL`. It installs the real pipelines (imaging with the remote MedGemma engine pointed at a
loopback chat server, documents with the layout reader, speech with the tiny random-weight
MedASR when a speech case exists), then, for each line "run" on stdin, runs the queued jobs and
answers one JSON line: the process's peak RSS during that run (VmHWM after resetting it through
/proc/self/clear_refs), its RSS before, and the seconds taken."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from plugin.engines.openai_chat import OpenAIChatEngine
from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobStore
from plugin.pipelines.documents import DocumentsOptions, DocumentsPipeline
from plugin.pipelines.imaging import ImagingPipeline
from plugin.pipelines.imaging.prepare import ImagingOptions
from plugin.pipelines.speech import SpeechOptions, SpeechPipeline
from tests.support.hostile_runs import JOB_MEMORY_BYTES
from tests.support.hostile_runs import MODEL_NAME as MODEL

STATUS = Path("/proc/self/status")


def memory_kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from {STATUS}")


def reset_peak() -> bool:
    """Make VmHWM the current RSS again (Linux clear_refs value 5). Where the kernel refuses,
    VmHWM stays the peak since start: still an upper bound for each job."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def main() -> None:
    db, chat_url, with_speech = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    engine = OpenAIChatEngine(chat_url, MODEL, timeout_s=60)
    pipelines = {
        "imaging": ImagingPipeline(engine, preparation=ImagingOptions(memory_bytes=JOB_MEMORY_BYTES),
                                   max_new_tokens=64),
        "documents": DocumentsPipeline(DocumentsOptions(engine="layout", job_memory_bytes=JOB_MEMORY_BYTES),
                                       engine),
    }
    if with_speech:
        from plugin.engines.test_models.tiny_medasr import tiny_engine

        pipelines["speech"] = SpeechPipeline(SpeechOptions(job_memory_bytes=JOB_MEMORY_BYTES),
                                             engine=tiny_engine())
    runner = JobRunner(JobStore(db), pipelines,
                       lambda job: FhirClient(job.fhir_base_url, timeout_s=60, retry_backoff_s=0.05),
                       workers=1)
    print(json.dumps({"ready": True, "rss_kib": memory_kib("VmRSS")}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            continue
        before = memory_kib("VmRSS")
        reset = reset_peak()
        started = time.perf_counter()
        runner.run_until_idle(timeout_s=300)
        seconds = time.perf_counter() - started
        print(json.dumps({"peak_kib": memory_kib("VmHWM"), "rss_before_kib": before,
                          "seconds": seconds, "peak_reset": reset}), flush=True)


if __name__ == "__main__":
    main()
