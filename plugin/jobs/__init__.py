"""Persistent analysis jobs: one per (source resource version, pipeline), run by a worker pool."""

from plugin.jobs.runner import JobContext, JobRunner, Pipeline
from plugin.jobs.store import Job, JobState, JobStore

__all__ = ["Job", "JobContext", "JobRunner", "JobState", "JobStore", "Pipeline"]
