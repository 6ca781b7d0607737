"""Persistent analysis jobs: one per (source resource version, pipeline), run by a worker pool."""

from plugin.jobs.runner import JobContext, JobRunner, Pipeline
from plugin.jobs.store import Job, JobBrief, JobState, JobStore

__all__ = ["Job", "JobBrief", "JobContext", "JobRunner", "JobState", "JobStore", "Pipeline"]
