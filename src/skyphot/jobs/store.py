"""Job rows: creation, atomic claiming and state changes. Every queue backend uses these."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from skyphot.db.crud import get_source
from skyphot.db.errors import ConflictError, NotFoundError
from skyphot.db.models import Job, User, utcnow
from skyphot.jobs.states import JobState

# Parameters that change the measurement; their hash identifies "same settings".
HASHED_PARAMS = (
    "filter", "mjd", "instrument", "catalog", "catalog_file_hash", "nsigma", "target_color",
    "gain", "saturation",
)


def settings_hash(params: dict[str, Any]) -> str:
    """SHA-256 of the measurement-relevant parameters in canonical JSON."""
    relevant = {key: params.get(key) for key in HASHED_PARAMS}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def create_job(
    session: Session,
    *,
    source_id: str,
    owner_id: int,
    upload_path: str,
    filename: str,
    file_hash: str,
    params: dict[str, Any],
) -> Job:
    """A queued job row (the caller commits, then tells the queue)."""
    job = Job(
        source_id=source_id,
        owner_id=owner_id,
        state=JobState.QUEUED.value,
        upload_path=upload_path,
        filename=filename,
        file_hash=file_hash,
        params=params,
        settings_hash=settings_hash(params),
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, user: User, job_id: int) -> Job:
    """The job if the user may see it (owner, admin, or its source is shared with them)."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    if not (user.is_admin or job.owner_id == user.id):
        try:
            get_source(session, user, job.source_id)
        except NotFoundError:
            raise NotFoundError(f"job {job_id} not found") from None
    return job


def list_jobs(session: Session, source_id: str, *, limit: int = 50) -> list[Job]:
    """The newest jobs of a source."""
    query = select(Job).where(Job.source_id == source_id).order_by(Job.id.desc()).limit(limit)
    return list(session.scalars(query))


def next_queued(session: Session) -> int | None:
    """The oldest queued job id, or None."""
    return session.scalar(
        select(Job.id).where(Job.state == JobState.QUEUED.value).order_by(Job.id).limit(1)
    )


def claim(session: Session, job_id: int, worker: str) -> bool:
    """Atomically move a queued job to running; False if someone else got it first."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED.value)
        .values(
            state=JobState.RUNNING.value, stage="starting", worker=worker, started_at=now,
            updated_at=now, attempts=Job.attempts + 1, message=None,
        )
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


def set_stage(session: Session, job_id: int, stage: str) -> None:
    """Record the stage a running job is in."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING.value)
        .values(stage=stage, updated_at=utcnow())
    )
    session.commit()


def finish(
    session: Session,
    job_id: int,
    state: JobState,
    *,
    message: str | None,
    photometry_id: int | None = None,
) -> None:
    """Move a job to an end state with a message for the user."""
    now = utcnow()
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            state=state.value, stage=None, message=message, photometry_id=photometry_id,
            finished_at=now, updated_at=now,
        )
    )
    session.commit()


def retry(session: Session, job: Job, changes: dict[str, Any] | None = None) -> Job:
    """Queue a failed job again on its kept upload, optionally with changed parameters."""
    if job.state != JobState.FAILED.value:
        raise ConflictError(f"job {job.id} is {job.state}; only failed jobs can be retried")
    if changes:
        params = {**job.params, **{k: v for k, v in changes.items() if v is not None}}
        job.params = params
        job.settings_hash = settings_hash(params)
    job.state = JobState.QUEUED.value
    job.stage = None
    job.message = None
    job.finished_at = None
    job.updated_at = utcnow()
    session.flush()
    return job


def requeue(session: Session, *, worker: str | None = None) -> int:
    """Put running jobs back in the queue (all, or those of one dead ``worker``).

    Used at start-up of the embedded queue: a job left running by a stopped server had its
    worker killed with it.
    """
    condition = [Job.state == JobState.RUNNING.value]
    if worker is not None:
        condition.append(Job.worker == worker)
    result = session.execute(
        update(Job).where(*condition).values(
            state=JobState.QUEUED.value, stage=None, worker=None, updated_at=utcnow()
        )
    )
    session.commit()
    return int(getattr(result, "rowcount", 0))


def changed_since(session: Session, user: User, since: datetime) -> list[Job]:
    """Jobs of ``user`` updated after ``since`` (for live notifications)."""
    query = select(Job).where(Job.updated_at > since, Job.owner_id == user.id)
    return list(session.scalars(query.order_by(Job.updated_at)))
