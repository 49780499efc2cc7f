"""The Celery application of ``queue: celery``: one task, ``skyphot.run_job``, that calls
``skyphot.jobs.runner.run_job`` (the same job function as the embedded pool).

State lives in the database, not in Celery (no result backend). Reliability comes from:

- late acknowledgement, one message prefetched per process, and re-delivery of the message
  of a worker process that died (``task_reject_on_worker_lost``); the worker's main process
  puts the dead child's job back in the queue first (``JobRequest``), counting the attempt;
- the claim in ``run_job`` (a job delivered twice runs once) and the unique constraint on
  the photometry point (a job run twice adds its point once);
- a hard time limit (Celery kills the process, ``JobRequest`` fails the job with the time
  limit message) behind the soft one of ``run_job``;
- a lost database connection hands the job back and retries the task with back-off;
- a ``Sweeper`` thread in every ``skyphot worker`` re-queues running jobs whose heartbeat
  went stale (their whole worker machine vanished) and re-sends queued jobs the broker no
  longer holds (a restart without persistence, a submit while the broker was away).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from celery import Celery, Task
from celery.exceptions import WorkerLostError
from celery.worker.request import Request
from kombu.exceptions import ChannelError
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from skyphot.db.models import utcnow
from skyphot.db.session import make_engine, make_sessionmaker
from skyphot.jobs import push, store
from skyphot.jobs.limits import DATABASE_OUTAGE, is_database_outage, time_limit_message
from skyphot.jobs.runner import DEFAULT_ENGINE, MeasureFunction, load_engine, run_job
from skyphot.settings import Settings

log = logging.getLogger(__name__)

TASK_NAME = "skyphot.run_job"
# Database outages are retried with back-off 1, 2, 4 ... 30 s: about 10 minutes in all.
DATABASE_RETRIES = 25
SEND_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5,
                     "interval_max": 1.0}
# What a send or queue inspection raises while the broker is away.
BROKER_OUTAGE: tuple[type[BaseException], ...] = (KombuOperationalError, RedisError, OSError)
T = TypeVar("T")


def visibility_timeout_s(limit_s: float) -> float:
    """How long the broker waits for an unacknowledged message before handing it to another
    worker, s: well above the job time limit, or running jobs would be delivered twice."""
    return max(2.0 * limit_s, limit_s + 300.0)


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings that matter for reliability (see the module docstring)."""
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a worker waits out a broker restart
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout_s(settings.job_time_limit_s),
        },
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # A dead child has no result to wait for (state is in the database): notice it fast.
        "worker_lost_wait": 1.0,
        "worker_concurrency": settings.worker_concurrency,
        # A broker blip must not abort jobs that are half done.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_time_limit": settings.job_time_limit_s,
        "task_ignore_result": True,
        "result_backend": None,
        "task_default_queue": settings.celery_queue,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_send_task_events": False,
    }


class WorkerContext:
    """What a process needs to run jobs: settings, a database engine of its own (never one
    inherited through fork) and the analysis engine."""

    def __init__(self, settings: Settings, engine_path: str) -> None:
        self.settings = settings
        self.engine_path = engine_path
        self._pid: int | None = None
        self._db: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._measure: MeasureFunction | None = None
        self._lock = threading.Lock()

    def sessions(self) -> sessionmaker[Session]:
        """The session factory of this process."""
        if self._pid != os.getpid():
            # Just forked: the inherited lock may be held by a thread that does not exist
            # here (the parent's sweeper), and only this thread runs yet.
            self._lock = threading.Lock()
        with self._lock:
            if self._pid != os.getpid() or self._sessions is None:
                if self._db is not None:
                    # Inherited from the parent: drop its pool without closing its sockets.
                    self._db.dispose(close=False)
                self._db = make_engine(self.settings.db_url)
                self._sessions = make_sessionmaker(self._db)
                self._pid = os.getpid()
            return self._sessions

    def measure(self) -> MeasureFunction:
        """The analysis engine, imported once per process."""
        if self._measure is None:
            self._measure = load_engine(self.engine_path)
        return self._measure

    def record(self, what: str, change: Callable[[Session], T]) -> T | None:
        """Apply a bookkeeping change; a database outage is logged (a sweep catches up)."""
        try:
            with self.sessions()() as session:
                return change(session)
        except DATABASE_OUTAGE as err:
            log.warning("cannot %s: database unreachable (%s); a sweep will catch up", what,
                        type(err).__name__)
            return None


def worker_name(hostname: str | None, pid: int | None) -> str:
    """The ``worker`` recorded on a job: Celery node name and process id."""
    return f"{hostname}/{pid}"


class JobRequest(Request):
    """Runs in the worker's main process: books what the child process could not."""

    def _job(self) -> tuple[WorkerContext, int, str] | None:
        context = getattr(self.task, "skyphot", None)
        if not isinstance(context, WorkerContext) or not self.args or self.worker_pid is None:
            return None
        return context, int(self.args[0]), worker_name(self.hostname, self.worker_pid)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """Hard time limit: Celery kills the child; the job fails with the clear message."""
        job = None if soft else self._job()
        if job is not None:
            context, job_id, name = job
            message = time_limit_message(context.settings.job_time_limit_s)
            context.record(f"fail job {job_id} after its time limit",
                           lambda s: store.fail_running(s, job_id, worker=name,
                                                        message=message))
        super().on_timeout(soft, timeout)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True,
                   return_ok: bool = False) -> None:
        """A child that died mid-job: re-queue the job before Celery re-delivers it."""
        error = getattr(exc_info.exception, "exc", exc_info.exception)
        lost = isinstance(error, WorkerLostError) or (
            isinstance(error, (SystemExit, KeyboardInterrupt))
            and not getattr(self, "_already_cancelled", False)
            and not getattr(self, "_already_revoked", False)
        )
        job = self._job() if lost else None
        if job is not None:
            context, job_id, name = job
            log.warning("worker process %s died running job %s; re-queueing it", name, job_id)
            context.record(f"re-queue job {job_id}", lambda s: store.requeue_lost(
                s, job_id=job_id, worker=name, max_attempts=context.settings.job_max_attempts,
                time_limit_s=context.settings.job_time_limit_s))
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


class JobTask(Task):
    """The task class: carries the ``WorkerContext`` and the ``JobRequest`` hooks."""

    Request = JobRequest
    skyphot: WorkerContext | None = None


def make_celery(settings: Settings, *, engine_path: str = DEFAULT_ENGINE) -> Celery:
    """A Celery app for ``settings`` with the job task registered.

    ``engine_path`` (``module:function``) is the analysis engine workers load.
    """
    app = Celery("skyphot", set_as_current=False)
    app.conf.update(celery_config(settings))
    context = WorkerContext(settings, engine_path)

    @app.task(name=TASK_NAME, bind=True, base=JobTask, max_retries=DATABASE_RETRIES,
              shared=False)  # each app its own task: it closes over its settings
    def run(self: JobTask, job_id: int) -> bool:
        name = worker_name(self.request.hostname, os.getpid())
        try:
            return run_job(job_id, settings=context.settings, sessions=context.sessions(),
                           measure=context.measure(), worker=name)
        except DBAPIError as err:
            if not is_database_outage(err):
                raise
            delay = min(30, 2 ** self.request.retries)
            log.warning("job %s: database unreachable; retrying in %d s", job_id, delay)
            raise self.retry(exc=err, countdown=delay) from err

    run.skyphot = context
    app.skyphot_context = context
    return app


def send_job(app: Celery, settings: Settings, job_id: int) -> None:
    """Send job ``job_id`` to the workers (a few quick retries if the broker is away)."""
    app.send_task(TASK_NAME, args=[job_id], queue=settings.celery_queue, retry=True,
                  retry_policy=SEND_RETRY_POLICY)


def broker_queue_length(app: Celery, queue: str) -> int:
    """Messages waiting in ``queue`` (not counting those workers hold)."""
    with app.connection_for_write() as connection:
        try:
            declared = connection.default_channel.queue_declare(queue=queue, passive=True)
        except ChannelError:
            return 0  # Redis drops an empty queue's key: no such queue means empty
        return int(declared.message_count)


class Sweeper:
    """Periodically recovers lost jobs (see the module docstring); one per worker machine
    is enough, several do no harm (every change is a guarded update)."""

    def __init__(self, app: Celery, settings: Settings,
                 sessions: Callable[[], sessionmaker[Session]]) -> None:
        self.app = app
        self.settings = settings
        self._sessions = sessions
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="skyphot-sweeper",
                                        daemon=True)

    def sweep(self) -> list[int]:
        """One round; returns the ids of the jobs (re)sent."""
        settings = self.settings
        stale_before = utcnow() - timedelta(seconds=settings.job_stale_after_s)
        with self._sessions()() as session:
            resend = store.requeue_lost(
                session, stale_before=stale_before, max_attempts=settings.job_max_attempts,
                time_limit_s=settings.job_time_limit_s)
            if resend:
                log.warning("re-queued %d job(s) whose worker stopped answering: %s",
                            len(resend), resend)
            # Queued jobs are only missing from the broker if its queue is empty while they
            # have waited a long time; anything waiting in the queue will run in turn.
            if broker_queue_length(self.app, settings.celery_queue) == 0:
                lost = [i for i in store.stale_queued(session, updated_before=stale_before)
                        if i not in resend]
                if lost:
                    log.warning("sending %d queued job(s) the broker does not hold: %s",
                                len(lost), lost)
                resend += lost
            store.mark_sent(session, resend)
        for job_id in resend:
            send_job(self.app, settings, job_id)
        return resend

    def _loop(self) -> None:
        from skyphot.jobs.queue import PRUNE_INTERVAL_S, prune_old_uploads

        next_prune = 0.0
        while not self._stop.is_set():
            try:
                self.sweep()
                # SkyPortal pushes queued in the photometry rows go out with each sweep.
                push.run_due_pushes(self._sessions(), self.settings)
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_INTERVAL_S
                    with self._sessions()() as session:
                        prune_old_uploads(session, self.settings)
            except DATABASE_OUTAGE as err:
                log.warning("sweep skipped: database unreachable (%s)", type(err).__name__)
            except BROKER_OUTAGE as err:
                log.warning("sweep skipped: broker unreachable (%s)", err)
            except Exception:  # the sweeper must outlive any surprise; it is logged in full
                log.exception("sweep failed")
            self._stop.wait(self.settings.job_sweep_interval_s)

    def start(self) -> None:
        """Sweep now, then every ``job_sweep_interval_s`` seconds, in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current round."""
        self._stop.set()
        self._thread.join(10.0)
