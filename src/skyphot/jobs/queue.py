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
import threading
from datetime import timedelta
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from typing import Any, Protocol

from sqlalchemy.orm import Session

from skyphot.db.models import utcnow
from skyphot.db.session import make_engine, make_sessionmaker
from skyphot.errors import SkyphotError, ToolNotFoundError
from skyphot.jobs import push, store
from skyphot.jobs.limits import DATABASE_OUTAGE, time_limit_message
from skyphot.jobs.runner import DEFAULT_ENGINE, MeasureFunction, load_engine, run_job
from skyphot.pipeline.result import PhotometryResult
from skyphot.settings import Settings

log = logging.getLogger(__name__)

SUPERVISE_INTERVAL_S = 1.0  # how often the embedded pool checks workers and time limits


class JobQueue(Protocol):
    """What the web layer needs from a queue backend."""

    def start(self) -> None:
        """Start consuming (no-op for backends whose workers run elsewhere)."""

    def submit(self, job_id: int) -> None:
        """Tell the backend a committed job row is ready to run."""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming; running jobs are re-queued on the next start."""


class NullQueue:
    """Accepts jobs and runs none (tests of the API alone; jobs stay queued)."""

    def start(self) -> None:
        """Nothing to start."""

    def submit(self, job_id: int) -> None:
        """Nothing to tell."""

    def stop(self, timeout: float = 10.0) -> None:
        """Nothing to stop."""


def _unavailable(engine_path: str, error: BaseException) -> MeasureFunction:
    def measure(*_args: Any, **_kwargs: Any) -> PhotometryResult:
        raise SkyphotError(
            f"the analysis engine ({engine_path}) cannot be loaded on this worker "
            f"({type(error).__name__}: {error}); ask the administrator to check the install"
        )

    return measure


def worker_main(
    settings_data: dict[str, Any], engine_path: str, name: str, stop: Event, wake: Event
) -> None:
    """Entry point of one worker process: run queued jobs until ``stop`` is set."""
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
        while not stop.is_set():
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
    except KeyboardInterrupt:
        pass  # the server is shutting down; the running job is re-queued on next start
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
        self._supervisor: threading.Thread | None = None
        self._halt = threading.Event()
        self._serial = 0

    def _spawn(self) -> None:
        self._serial += 1
        name = f"worker-{os.getpid()}-{self._serial}"
        process = self._ctx.Process(
            target=worker_main,
            args=(self.settings.for_process(), self.engine_path, name,
                  self._stop, self._wake),
            name=name,
            daemon=True,
        )
        process.start()
        self._processes[name] = process

    def start(self) -> None:
        """Re-queue jobs a previous server left running, then start the workers."""
        engine = make_engine(self.settings.db_url)
        with make_sessionmaker(engine)() as session:
            count = len(self._requeue(session))
        engine.dispose()
        if count:
            log.info("re-queued %d job(s) left running by a previous server", count)
        for _ in range(self.n_workers):
            self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()

    def _requeue(self, session: Session, worker: str | None = None) -> list[int]:
        return store.requeue_lost(
            session, worker=worker, max_attempts=self.settings.job_max_attempts,
            time_limit_s=self.settings.job_time_limit_s,
        )

    def _supervise(self) -> None:
        engine = make_engine(self.settings.db_url)
        sessions = make_sessionmaker(engine)
        try:
            while not self._halt.wait(SUPERVISE_INTERVAL_S):
                try:
                    with sessions() as session:
                        self._enforce_time_limit(session)
                        self._replace_dead(session)
                except DATABASE_OUTAGE as err:
                    # The supervisor must outlive a database restart; next round retries.
                    log.warning("queue supervisor: database unreachable (%s)",
                                type(err).__name__)
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

    def stop(self, timeout: float = 10.0) -> None:
        """Ask workers to finish; terminate those still busy after ``timeout`` seconds."""
        self._halt.set()
        self._stop.set()
        self._wake.set()
        for process in self._processes.values():
            process.join(timeout)
        for process in self._processes.values():
            if process.is_alive():
                process.terminate()
                process.join(5)
        self._processes.clear()


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
