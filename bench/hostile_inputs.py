"""Hostile inputs through the real pipelines: outcome, peak RSS and time per input, against a
normal input measured by the same machinery in the same run.

Every case of tests/corpus/hostile/ (whichever modules exist: pdf, images, audio, dicom) is
stored on a HAPI FHIR sandbox and run as a job in one worker process, `--repeats` times; the
worker resets its peak RSS (/proc/self/clear_refs) before each job and reports VmHWM after it.
The baseline is a normal 512x512 chest radiograph (tests/support/hostile_runs.baseline_case).
Table: input, pipeline, outcome (and the start of the error), median peak RSS, median seconds,
and both as ratios to the baseline's medians. The same machinery is the integration test
tests/integration/test_hostile_corpus_sandbox.py.

Run: .venv/bin/python bench/hostile_inputs.py [--repeats 3] [--port 8097]
(starts the HAPI sandbox on --port when nothing answers there, and stops it afterwards).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from plugin.fhir import FhirClient  # noqa: E402
from plugin.jobs import JobStore  # noqa: E402
from plugin.sandbox.hapi import default_sandbox  # noqa: E402
from tests.corpus.hostile import HostileInput  # noqa: E402
from tests.support.chat_completions import ChatServer, chat_server  # noqa: E402
from tests.support.hostile_runs import (  # noqa: E402
    MODEL_NAME,
    Run,
    baseline_case,
    hostile_worker,
    load_cases,
    run_case,
)

MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, default=8097, help="port of the bench's HAPI sandbox")
    args = parser.parse_args()

    box = default_sandbox(REPO_ROOT / ".sandbox", port=args.port)
    started_here = not box.is_running()
    box.start()
    try:
        rows = measure(FhirClient(box.base_url, timeout_s=120), args.repeats)
    finally:
        if started_here:
            box.stop()
    print_table(rows)


def measure(fhir: FhirClient, repeats: int) -> list[tuple[HostileInput, list[Run]]]:
    cases = [baseline_case(), *load_cases()]
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": f"Bench-{uuid.uuid4().hex[:8]}"}]})
    subject = f"Patient/{patient['id']}"
    results: dict[str, list[Run]] = {case.name: [] for case in cases}
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{folder}/jobs.db"
        store = JobStore(db)
        chat = ChatServer(model=MODEL_NAME, answers=["No acute cardiopulmonary findings."])
        with chat_server(chat) as chat_url, hostile_worker(
                db, chat_url, with_speech=any(c.pipeline == "speech" for c in cases)) as worker:
            print(f"worker idle RSS {worker.idle_rss_bytes / MIB:.0f} MiB", file=sys.stderr)
            # Interleaved: each round runs every case once, so drift on a shared machine hits all.
            for round_number in range(repeats):
                for case in cases:
                    results[case.name].append(run_case(fhir, store, worker, subject, case))
                print(f"round {round_number + 1}/{repeats} done", file=sys.stderr)
    return [(case, results[case.name]) for case in cases]


def print_table(rows: list[tuple[HostileInput, list[Run]]]) -> None:
    base_runs = rows[0][1]
    base_rss = statistics.median(r.peak_bytes for r in base_runs)
    base_s = statistics.median(r.seconds for r in base_runs)
    print("| input | pipeline | outcome | peak RSS (MiB) | x baseline | time (s) | x baseline |")
    print("|---|---|---|---:|---:|---:|---:|")
    for case, runs in rows:
        rss = statistics.median(r.peak_bytes for r in runs)
        seconds = statistics.median(r.seconds for r in runs)
        outcomes = {r.state for r in runs}
        outcome = "/".join(sorted(outcomes))
        error = runs[-1].error
        if error:
            reason = error.split(": ", 1)[-1] if ": " in error else error
            outcome += f": {reason[:70]}".replace("|", "/")
        print(f"| {case.name} | {case.pipeline} | {outcome} | {rss / MIB:.0f} | {rss / base_rss:.2f} "
              f"| {seconds:.3f} | {seconds / base_s:.2f} |")
    worst = max(rows, key=lambda row: statistics.median(r.peak_bytes for r in row[1]))
    print(f"\nbaseline: {rows[0][0].name}, median peak RSS {base_rss / MIB:.0f} MiB, "
          f"{base_s:.3f} s; medians of {len(base_runs)} runs each. Highest peak: {worst[0].name} "
          f"({statistics.median(r.peak_bytes for r in worst[1]) / MIB:.0f} MiB).")


if __name__ == "__main__":
    main()
