"""Job rows: creation, atomic claiming and state changes. Every queue backend uses these.

Every change of a running job is guarded by its ``worker`` column, so a worker that was
given up on (and whose job another worker took over) can no longer overwrite the row.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import Session

from skyphot.db.crud import get_source
from skyphot.db.errors import ConflictError, NotFoundError, PermissionDeniedError
from skyphot.db.models import Job, Source, User, source_groups, user_groups, utcnow
from skyphot.jobs.limits import time_limit_message
from skyphot.jobs.states import JobState

# Parameters that change the measurement; their hash identifies "same settings".
HASHED_PARAMS = (
    "filter", "mjd", "obstime_ref", "instrument", "catalog", "catalog_file_hash", "nsigma",
    "target_color", "color_bands", "gain", "saturation", "engine", "pixel_scale",
)


def settings_hash(params: dict[str, Any]) -> str:
    """SHA-256 of the measurement-relevant parameters in canonical JSON."""
    relevant = {key: params.get(key) for key in HASHED_PARAMS}
    # A subtracted measurement differs from a plain one; without a template the hash stays
    # what it was before templates existed.
    if params.get("template") not in (None, "none"):
        relevant["template"] = params["template"]
        relevant["template_file_hash"] = params.get("template_file_hash")
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


def kept_upload(session: Session, file_hash: str) -> Path | None:
    """The stored file of an earlier job with the same content (SHA-256), if still there."""
    paths = session.scalars(
        select(Job.upload_path).where(Job.file_hash == file_hash).order_by(Job.id).limit(5))
    for path in paths:
        if Path(path).is_file():
            return Path(path)
    return None


ENDED = (JobState.SUCCEEDED.value, JobState.FAILED.value)


def prune_uploads(session: Session, *, older_than: datetime, root: Path) -> list[Path]:
    """Delete kept uploads whose jobs all ended before ``older_than`` (and the catalog
    files that came with them); returns the files deleted. Only files under ``root`` (the
    upload directory) are touched; emptied directories are removed too."""
    rows = session.execute(select(Job.upload_path, Job.state, Job.finished_at, Job.params)).all()
    by_path: dict[str, list[tuple[str, datetime | None, dict[str, Any]]]] = {}
    for path, state, finished, params in rows:
        by_path.setdefault(path, []).append((state, finished, params or {}))
    deleted: list[Path] = []
    base = root.resolve()
    for path, jobs in by_path.items():
        if not all(state in ENDED and finished is not None and finished < older_than
                   for state, finished, _ in jobs):
            continue
        extra = [str(p["catalog_file"]) for _, _, p in jobs if p.get("catalog_file")]
        for name in [path, *extra]:
            file = Path(name)
            if not file.resolve().is_relative_to(base) or not file.is_file():
                continue
            file.unlink()
            deleted.append(file)
            for directory in (file.parent, file.parent.parent):
                if directory.resolve() != base and directory.resolve().is_relative_to(base):
                    with contextlib.suppress(OSError):  # not empty yet
                        directory.rmdir()
    return deleted


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
    worker: str | None = None,
    retryable: bool = True,
) -> bool:
    """Move a job to an end state with a message for the user; ``retryable``: whether a
    retry (possibly with changed settings) can help a failed job.

    With ``worker``, only if the job is still running on that worker (it may have been
    ended by its time limit, or re-queued and taken by another worker, meanwhile).
    """
    now = utcnow()
    condition = [Job.id == job_id]
    if worker is not None:
        condition += [Job.state == JobState.RUNNING.value, Job.worker == worker]
    result = session.execute(
        update(Job)
        .where(*condition)
        .values(
            state=state.value, stage=None, message=message, photometry_id=photometry_id,
            finished_at=now, updated_at=now, retryable=retryable,
        )
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


def touch(session: Session, job_id: int, worker: str) -> bool:
    """Stamp a running job as alive (its heartbeat); False if it is no longer ours."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING.value, Job.worker == worker)
        .values(updated_at=utcnow())
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


def release(session: Session, job_id: int, worker: str) -> bool:
    """Hand a running job back to the queue because of trouble around it (database away),
    not in it: the attempt does not count."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING.value, Job.worker == worker)
        .values(state=JobState.QUEUED.value, stage=None, worker=None, updated_at=utcnow(),
                attempts=Job.attempts - 1)
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


def release_worker(session: Session, worker: str, *, prefix: bool = False) -> list[int]:
    """Hand every running job of ``worker`` (of every worker whose name starts with it, with
    ``prefix``) back to the queue because its server or worker is shutting down (not the
    job's fault: the attempt does not count). Returns their ids."""
    match = Job.worker.startswith(worker, autoescape=True) if prefix else Job.worker == worker
    rows = session.execute(
        select(Job.id, Job.worker).where(Job.state == JobState.RUNNING.value, match)).all()
    released = []
    for job_id, holder in rows:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.RUNNING.value, Job.worker == holder)
            .values(state=JobState.QUEUED.value, stage=None, worker=None, updated_at=utcnow(),
                    attempts=Job.attempts - 1)
        )
        if getattr(result, "rowcount", 0) == 1:
            released.append(job_id)
    session.commit()
    return released


def lost_message(attempts: int) -> str:
    """Why a job whose workers kept dying was given up."""
    return (
        f"the worker running this analysis stopped unexpectedly {attempts} time(s) (killed, "
        "crashed or out of memory) and the job was given up; check the frame (e.g. its size) "
        "and the workers' memory, then retry"
    )


def requeue_lost(
    session: Session,
    *,
    max_attempts: int,
    time_limit_s: float | None = None,
    worker: str | None = None,
    job_id: int | None = None,
    stale_before: datetime | None = None,
) -> list[int]:
    """Deal with running jobs whose worker is gone; returns the ids put back in the queue.

    Selects running jobs (of one ``worker``, one ``job_id``, or those not stamped since
    ``stale_before``). A job past ``time_limit_s`` (s since it started) fails with the time
    limit message, one that already had ``max_attempts`` runs fails as given up; the others
    are queued again (their attempts count).
    """
    condition = [Job.state == JobState.RUNNING.value]
    if worker is not None:
        condition.append(Job.worker == worker)
    if job_id is not None:
        condition.append(Job.id == job_id)
    if stale_before is not None:
        condition.append(Job.updated_at < stale_before)
    rows = session.execute(
        select(Job.id, Job.attempts, Job.started_at, Job.worker).where(*condition)
    ).all()
    now = utcnow()
    requeued: list[int] = []
    for row_id, attempts, started_at, holder in rows:
        values: dict[str, Any]
        if (time_limit_s is not None and started_at is not None
                and started_at <= now - timedelta(seconds=time_limit_s)):
            values = {"state": JobState.FAILED.value, "finished_at": now,
                      "message": time_limit_message(time_limit_s)}
        elif attempts >= max_attempts:
            values = {"state": JobState.FAILED.value, "finished_at": now,
                      "message": lost_message(attempts)}
        else:
            values = {"state": JobState.QUEUED.value, "worker": None}
        # Re-check in the UPDATE: the job may have moved on since the SELECT.
        guard = [*condition, Job.id == row_id,
                 Job.worker == holder if holder is not None else Job.worker.is_(None)]
        result = session.execute(
            update(Job).where(*guard).values(stage=None, updated_at=now, **values)
        )
        if getattr(result, "rowcount", 0) == 1 and values["state"] == JobState.QUEUED.value:
            requeued.append(int(row_id))
    session.commit()
    return requeued


def fail_running(session: Session, job_id: int, *, worker: str | None, message: str) -> bool:
    """End a running job as failed (its worker was killed for it); guarded by ``worker``."""
    now = utcnow()
    condition = [Job.id == job_id, Job.state == JobState.RUNNING.value]
    if worker is not None:
        condition.append(Job.worker == worker)
    result = session.execute(
        update(Job).where(*condition).values(
            state=JobState.FAILED.value, stage=None, message=message, finished_at=now,
            updated_at=now,
        )
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


def overdue(session: Session, *, started_before: datetime) -> list[tuple[int, str | None]]:
    """Running jobs started before ``started_before``: (id, worker) pairs."""
    rows = session.execute(
        select(Job.id, Job.worker).where(
            Job.state == JobState.RUNNING.value, Job.started_at < started_before
        )
    ).all()
    return [(int(row_id), holder) for row_id, holder in rows]


def stale_queued(session: Session, *, updated_before: datetime, limit: int = 1000) -> list[int]:
    """Ids of jobs queued and untouched since ``updated_before``, oldest first."""
    query = (
        select(Job.id)
        .where(Job.state == JobState.QUEUED.value, Job.updated_at < updated_before)
        .order_by(Job.id)
        .limit(limit)
    )
    return [int(row_id) for row_id in session.scalars(query)]


def mark_sent(session: Session, job_ids: list[int]) -> None:
    """Stamp queued jobs just (re)sent to the broker, so they are not sent again at once."""
    if job_ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.state == JobState.QUEUED.value)
            .values(updated_at=utcnow())
        )
    session.commit()


def retry(session: Session, job: Job, changes: dict[str, Any] | None = None) -> Job:
    """Queue a failed job again on its kept upload, optionally with changed parameters."""
    if job.state != JobState.FAILED.value:
        raise ConflictError(f"job {job.id} is {job.state}; only failed jobs can be retried")
    if not job.retryable:
        raise ConflictError(f"job {job.id} failed for a reason a retry cannot change "
                            f"({job.message}); upload a corrected file instead")
    if not Path(job.upload_path).is_file():
        raise ConflictError(
            f"job {job.id}'s upload is no longer kept (uploads of ended jobs are deleted after "
            "upload_retention_days); upload the frame again"
        )
    if changes:
        params = {**job.params, **{k: v for k, v in changes.items() if v is not None}}
        job.params = params
        job.settings_hash = settings_hash(params)
    job.state = JobState.QUEUED.value
    job.stage = None
    job.message = None
    job.retryable = True
    job.finished_at = None
    # A retry starts a new series of runs: job_max_attempts and the give-up message count
    # the worker deaths of this series, not the runs before it.
    job.attempts = 0
    job.updated_at = utcnow()
    session.flush()
    return job


def changed_since(session: Session, user: User, since: datetime) -> list[Job]:
    """Jobs of ``user`` updated after ``since`` (for live notifications)."""
    query = select(Job).where(Job.updated_at > since, Job.owner_id == user.id)
    return list(session.scalars(query.order_by(Job.updated_at)))


def search_jobs(
    session: Session,
    user: User,
    *,
    state: str | None = None,
    source_id: str | None = None,
    text: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[tuple[Job, str | None]], int]:
    """Jobs the user may see (own, or of sources shared with them; all for an admin),
    newest first, with their owner's name; and how many match in all."""
    condition: list[Any] = []
    if not user.is_admin:
        visible = select(Source.id).where(exists().where(
            source_groups.c.source_id == Source.id,
            source_groups.c.group_id == user_groups.c.group_id,
            user_groups.c.user_id == user.id,
        ))
        condition.append(or_(Job.owner_id == user.id, Job.source_id.in_(visible)))
    if state:
        condition.append(Job.state == state)
    if source_id:
        condition.append(Job.source_id == source_id)
    if text:
        pattern = f"%{text.lower()}%"
        condition.append(or_(func.lower(Job.filename).like(pattern),
                             func.lower(func.coalesce(Job.message, "")).like(pattern)))
    total = session.scalar(select(func.count()).select_from(Job).where(*condition)) or 0
    query = (select(Job, User.username).outerjoin(User, User.id == Job.owner_id)
             .where(*condition).order_by(Job.id.desc()).offset(offset).limit(limit))
    return [(job, name) for job, name in session.execute(query).all()], int(total)


def delete_failed(session: Session, user: User, job: Job) -> str:
    """Delete a failed job (its owner or an admin); returns its upload path to remove."""
    if not (user.is_admin or job.owner_id == user.id):
        raise PermissionDeniedError("only the owner of a job or an admin may delete it")
    if job.state != JobState.FAILED.value:
        raise ConflictError(f"job {job.id} is {job.state}; only failed jobs can be deleted")
    path = job.upload_path
    session.delete(job)
    session.flush()
    return path
