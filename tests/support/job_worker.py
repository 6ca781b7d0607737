"""A job-worker process for restart tests: `python -m tests.support.job_worker DB FHIR_BASE MODE`.

MODE "slow": the pipeline sleeps 60 s (the test kills the process meanwhile).
MODE "die-after-write": the process dies the instant the server has committed the write,
before the job is marked done. MODE "normal": runs queued jobs to the end and exits.
MODE "storm": like "normal", with a lease long enough for a loaded machine, for several
workers running at once (a rerun storm).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobStore
from tests.support.pipelines import fixed_pipeline


class DyingAfterWriteClient(FhirClient):
    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        response = super().transaction(bundle)
        os._exit(9)
        return response  # unreachable


def main() -> None:
    db, base, mode = sys.argv[1:4]
    client_type = DyingAfterWriteClient if mode == "die-after-write" else FhirClient
    runner = JobRunner(JobStore(db), {"test-fixed": fixed_pipeline(delay_s=60 if mode == "slow" else 0)},
                       lambda job: client_type(job.fhir_base_url, retry_backoff_s=0.05),
                       lease_s=10.0 if mode == "storm" else 1.0, backoff_s=0.2, poll_s=0.1)
    runner.run_until_idle(include_delayed=True, timeout_s=120)


if __name__ == "__main__":
    main()
