"""Persistent analysis jobs: one per (FHIR server, source resource version, pipeline), run by a
worker pool with fenced, time-limited attempts."""

from plugin.jobs.intake import Intake, queue_sources
from plugin.jobs.on_record import Recorded, ResultOnRecord, analysed_by, analysed_versions
from plugin.jobs.runner import JobContext, JobLimits, JobRunner, JobTimedOut, Pipeline, run_with_time_limit
from plugin.jobs.store import Job, JobBrief, JobBusy, JobScope, JobState, JobStore, StaleJob

__all__ = ["Intake", "Job", "JobBrief", "JobBusy", "JobContext", "JobLimits", "JobRunner", "JobScope",
           "JobState", "JobStore", "JobTimedOut", "Pipeline", "Recorded", "ResultOnRecord", "StaleJob",
           "analysed_by", "analysed_versions", "queue_sources", "run_with_time_limit"]
