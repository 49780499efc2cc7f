"""The life of an analysis job: queued -> running (with a stage) -> succeeded | failed."""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    """State of a job as stored in ``jobs.state``."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """True for the two end states."""
        return self in (JobState.SUCCEEDED, JobState.FAILED)
