"""Queue backends. The job function (``runner.run_job``) is the same for all of them.

``EmbeddedQueue`` is the default: a pool of separate worker processes (never threads of the
web server) that poll the database for queued jobs. Because the queue *is* the ``jobs``
table, queued jobs survive a restart. Its supervisor replaces dead workers (their job is
re-queued, up to ``job_max_attempts`` runs) and kills a worker whose job overran
``job_time_limit_s`` (the job fails with the time limit message). ``queue: celery`` selects
``skyphot.jobs.celery_queue.CeleryQueue`` instead (see ``make_queue``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from datetime import timedelta
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from types import FrameType
from typing import Any, Protocol

from sqlalchemy.orm import Session

from skyphot.db.models import utcnow
from skyphot.db.session import make_engine, make_sessionmaker
from skyphot.errors import SkyphotError, ToolNotFoundError
from skyphot.jobs import push, store
from skyphot.jobs.lifeline import die_with_parent
from skyphot.jobs.limits import DATABASE_OUTAGE, time_limit_message
from skyphot.jobs.runner import DEFAULT_ENGINE, MeasureFunction, load_engine, run_job
from skyphot.pipeline.result import PhotometryResult
from skyphot.settings import Settings

log = logging.getLogger(__name__)

SUPERVISE_INTERVAL_S = 1.0  # how often the embedded pool checks workers and time limits
PRUNE_INTERVAL_S = 3600.0  # how often old uploads are looked for (upload_retention_days)


def prune_old_uploads(session: Session, settings: Settings) -> int:
    """Apply ``upload_retention_days`` once; returns how many files were deleted."""
    if settings.upload_retention_days is None:
        return 0
    cutoff = utcnow() - timedelta(days=settings.upload_retention_days)
    deleted = store.prune_uploads(session, older_than=cutoff, root=settings.upload_path)
    if deleted:
        log.info("deleted %d upload(s) of jobs ended over %g day(s) ago "
                 "(upload_retention_days)", len(deleted), settings.upload_retention_days)
    return len(deleted)


class JobQueue(Protocol):
    """What the web layer needs from a queue backend."""

    def start(self) -> None:
        """Start consuming (no-op for backends whose workers run elsewhere)."""

    def submit(self, job_id: int) -> None:
        """Tell the backend a committed job row is ready to run."""

    def request_stop(self, deadline: float | None = None) -> None:
        """Take no new jobs; running ones may go on until ``deadline`` (monotonic clock)."""

    def stop(self, timeout: float | None = None) -> None:
        """Stop consuming, letting running jobs finish up to ``timeout`` s (default: the
        grace period); unfinished ones go back to the queue."""

    def abort(self) -> list[int]:
        """Stop at once; running jobs go back to the queue. Returns their ids when known."""


class NullQueue:
    """Accepts jobs and runs none (tests of the API alone; jobs stay queued)."""

    def start(self) -> None:
        """Nothing to start."""

    def submit(self, job_id: int) -> None:
        """Nothing to tell."""

    def request_stop(self, deadline: float | None = None) -> None:
        """Nothing to stop."""

    def stop(self, timeout: float | None = None) -> None:
        """Nothing to stop."""

    def abort(self) -> list[int]:
        """Nothing to stop."""
        return []


def _unavailable(engine_path: str, error: BaseException) -> MeasureFunction:
    def measure(*_args: Any, **_kwargs: Any) -> PhotometryResult:
        raise SkyphotError(
            f"the analysis engine ({engine_path}) cannot be loaded on this worker "
            f"({type(error).__name__}: {error}); ask the administrator to check the install"
        )

    return measure


def worker_main(
    settings_data: dict[str, Any], engine_path: str, name: str, stop: Event, wake: Event,
    parent_pid: int | None = None,
) -> None:
    """Entry point of one worker process: run queued jobs until ``stop`` is set.

    The worker dies with its parent (``parent_pid``). SIGTERM and SIGINT (sent to the whole
    process group by Docker, systemd or Ctrl-C) do not interrupt the running job: the
    server decides, finishing it within the grace period or killing and re-queueing it.
    """
    if parent_pid is not None:
        die_with_parent(parent_pid)
    asked_to_stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        asked_to_stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    settings = Settings.model_validate(settings_data)
    if settings.worker_nice:
        os.nice(settings.worker_nice)
    engine = make_engine(settings.db_url)
    sessions = make_sessionmaker(engine)
    try:
        measure = load_engine(engine_path)
    except Exception as err:  # a broken engine install must fail jobs readably, not crash-loop
        log.exception("cannot load the analysis engine %s", engine_path)
        measure = _unavailable(engine_path, err)
    try:
        while not (stop.is_set() or asked_to_stop.is_set()):
            try:
                # SkyPortal pushes are short; each round sends those due before the next job.
                push.run_due_pushes(sessions, settings)
                with sessions() as session:
                    job_id = store.next_queued(session)
                if job_id is None:
                    wake.wait(settings.job_poll_interval)
                    wake.clear()
                    continue
                run_job(job_id, settings=settings, sessions=sessions, measure=measure,
                        worker=name)
            except DATABASE_OUTAGE as err:
                # run_job handed its job back; wait for the database instead of dying.
                log.warning("worker %s: database unreachable (%s); retrying", name,
                            type(err).__name__)
                stop.wait(max(1.0, settings.job_poll_interval))
    finally:
        engine.dispose()


class EmbeddedQueue:
    """A pool of ``settings.workers`` worker processes, supervised from the server."""

    def __init__(self, settings: Settings, *, engine: str = DEFAULT_ENGINE,
                 workers: int | None = None) -> None:
        self.settings = settings
        self.engine_path = engine
        self.n_workers = settings.workers if workers is None else workers
        self._ctx = multiprocessing.get_context("spawn")  # no fork of the server's threads
        self._stop = self._ctx.Event()
        self._wake = self._ctx.Event()
        self._processes: dict[str, SpawnProcess] = {}
        self._names: set[str] = set()  # every worker ever started: their jobs are ours
        self._supervisor: threading.Thread | None = None
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._serial = 0

    def _spawn(self) -> None:
        self._serial += 1
        name = f"worker-{os.getpid()}-{self._serial}"
        process = self._ctx.Process(
            target=worker_main,
            args=(self.settings.for_process(), self.engine_path, name,
                  self._stop, self._wake, os.getpid()),
            name=name,
            daemon=True,
        )
        process.start()
        self._processes[name] = process
        self._names.add(name)

    def start(self) -> None:
        """Re-queue jobs a previous server left running, then start the workers."""
        engine = make_engine(self.settings.db_url)
        with make_sessionmaker(engine)() as session:
            count = len(self._requeue(session))
        engine.dispose()
        if count:
            log.info("re-queued %d job(s) left running by a previous server", count)
        with self._lock:
            for _ in range(self.n_workers):
                self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, name="queue-supervisor",
                                            daemon=True)
        self._supervisor.start()

    def _requeue(self, session: Session, worker: str | None = None) -> list[int]:
        return store.requeue_lost(
            session, worker=worker, max_attempts=self.settings.job_max_attempts,
            time_limit_s=self.settings.job_time_limit_s,
        )

    def _supervise(self) -> None:
        engine = make_engine(self.settings.db_url)
        sessions = make_sessionmaker(engine)
        next_prune = time.monotonic()
        try:
            while not self._halt.wait(SUPERVISE_INTERVAL_S):
                try:
                    with sessions() as session, self._lock:
                        self._enforce_time_limit(session)
                        self._replace_dead(session)
                    if time.monotonic() >= next_prune:
                        next_prune = time.monotonic() + PRUNE_INTERVAL_S
                        with sessions() as session:
                            prune_old_uploads(session, self.settings)
                except DATABASE_OUTAGE as err:
                    # The supervisor must outlive a database restart; next round retries.
                    log.warning("queue supervisor: database unreachable (%s)",
                                type(err).__name__)
                except Exception:  # a dead supervisor would leave the pool unwatched
                    log.exception("queue supervisor: unexpected error; going on")
        finally:
            engine.dispose()

    def _replace_dead(self, session: Session) -> None:
        # A worker that died (killed, crashed) loses its job: re-queue it, replace the worker.
        for name, process in list(self._processes.items()):
            if process.is_alive() or self._stop.is_set():
                continue
            log.warning("worker %s died (exit %s); replacing it", name, process.exitcode)
            self._requeue(session, worker=name)
            del self._processes[name]
            self._spawn()

    def _enforce_time_limit(self, session: Session) -> None:
        # The hard limit: a job past it is stuck where the soft limit cannot reach (C code,
        # blocked signals). Kill its worker, fail the job; _replace_dead spawns a new worker.
        limit = self.settings.job_time_limit_s
        started_before = utcnow() - timedelta(seconds=limit)
        for job_id, name in store.overdue(session, started_before=started_before):
            process = self._processes.get(name or "")
            if process is None:
                continue  # not one of ours (or already gone: _replace_dead handles it)
            log.warning("job %s overran its %g s time limit; killing worker %s",
                        job_id, limit, name)
            process.kill()
            process.join(5)
            store.fail_running(session, job_id, worker=name, message=time_limit_message(limit))

    @property
    def alive(self) -> int:
        """Number of live worker processes."""
        return sum(p.is_alive() for p in self._processes.values())

    def submit(self, job_id: int) -> None:
        """Wake idle workers so the job starts without waiting for the next poll."""
        self._wake.set()

    def wake(self) -> None:
        """Wake idle workers (e.g. a SkyPortal push was queued)."""
        self._wake.set()

    def request_stop(self, deadline: float | None = None) -> None:
        """Take no new jobs from now on; running ones may go on until ``deadline``
        (``time.monotonic()`` value) when ``stop`` is called. Safe from any thread."""
        if deadline is not None:
            self._deadline = deadline if self._deadline is None else min(self._deadline,
                                                                         deadline)
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Let running jobs finish, up to ``timeout`` s (default ``shutdown_grace_s``) or the
        deadline given to ``request_stop``; then kill the workers still busy and hand their
        jobs back to the queue (the attempt does not count). Joins the supervisor."""
        wait_s = self.settings.shutdown_grace_s if timeout is None else timeout
        self.request_stop(time.monotonic() + wait_s)
        assert self._deadline is not None
        for process in list(self._processes.values()):
            process.join(max(0.0, self._deadline - time.monotonic()))
        self.abort()

    def abort(self) -> list[int]:
        """Kill every worker now and hand their running jobs back to the queue; returns the
        ids handed back. Safe from any thread (the last resort of a shutdown)."""
        self.request_stop()
        busy = [name for name, p in list(self._processes.items()) if p.is_alive()]
        for name in busy:
            log.warning("worker %s is still busy at the end of the grace period; stopping it",
                        name)
            self._processes[name].kill()
        for process in list(self._processes.values()):
            process.join(5)
        released: list[int] = []
        engine = make_engine(self.settings.db_url)
        try:
            with make_sessionmaker(engine)() as session:
                for name in sorted(self._names):
                    released += store.release_worker(session, name)
        except DATABASE_OUTAGE as err:
            # The next start re-queues jobs left running; nothing is lost.
            log.error("cannot hand running jobs back to the queue (%s); the next start "
                      "re-queues them", type(err).__name__)
        finally:
            engine.dispose()
        if released:
            log.warning("handed job(s) %s back to the queue: the server is shutting down",
                        ", ".join(map(str, released)))
        self._halt.set()
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(SUPERVISE_INTERVAL_S + 5)
        return released


def make_queue(settings: Settings, *, engine: str = DEFAULT_ENGINE) -> JobQueue:
    """The queue backend ``settings.queue`` names: the embedded pool or Celery."""
    if settings.queue == "celery":
        try:
            from skyphot.jobs.celery_queue import CeleryQueue
        except ModuleNotFoundError as err:
            raise ToolNotFoundError(
                f"queue: celery needs Celery ({err.name} is not installed): "
                "pip install 'skyphot[celery]'"
            ) from err
        return CeleryQueue(settings)
    return EmbeddedQueue(settings, engine=engine)
