"""Time limits and liveness stamps of a running job, the same for every queue backend.

A job has a *hard* limit (``job_time_limit_s``): past it the worker process is killed by
its supervisor (the embedded pool) or by Celery. A *soft* limit a little earlier raises
``JobTimeLimitError`` inside the job, so a job that is merely slow ends ``failed`` with the
same clear message and its worker lives on. While a job runs, a ``Heartbeat`` thread stamps
its row so that sweeps can tell a live job from one whose worker vanished.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from skyphot.errors import SkyphotError

log = logging.getLogger(__name__)

# Errors meaning "the database is unreachable right now", not "this job is bad": a job hit
# by one is handed back to the queue instead of being failed.
DATABASE_OUTAGE: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)


def is_database_outage(error: BaseException) -> bool:
    """True for a lost or refused database connection (worth retrying later)."""
    if isinstance(error, DATABASE_OUTAGE):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def is_lock_conflict(error: BaseException) -> bool:
    """True for SQLite's "database is locked": two writers met (e.g. a read transaction that
    must become a write one after another process wrote); retrying in a fresh transaction
    helps, the connection is fine."""
    return isinstance(error, OperationalError) and "is locked" in str(error.orig or error)


def describe_database_error(error: BaseException) -> str:
    """One line for logs: a lock conflict or a lost connection, with the driver's words."""
    kind = "a lock conflict" if is_lock_conflict(error) else "the database connection was lost"
    detail = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{kind} ({type(error).__name__}: {detail[0] if detail else ''})"


class JobTimeLimitError(SkyphotError):
    """A job ran longer than ``job_time_limit_s``."""


def time_limit_message(limit_s: float) -> str:
    """The message of a job ended by its time limit (``limit_s`` in seconds)."""
    return (
        f"analysis exceeded the {limit_s:g} s time limit (job_time_limit_s); check that the "
        "frame is sensible (size, catalog) or ask the administrator to raise the limit"
    )


def soft_limit_s(limit_s: float) -> float:
    """When the soft limit fires, s: 10 % before the hard one, at least 1 s, at most 30 s."""
    return limit_s - min(30.0, max(1.0, 0.1 * limit_s))


@contextmanager
def soft_time_limit(limit_s: float | None) -> Iterator[None]:
    """Raise ``JobTimeLimitError`` in this thread once ``soft_limit_s(limit_s)`` s passed.

    Uses SIGALRM, so it only works in the main thread of a process (the embedded workers and
    Celery's prefork children run jobs there); elsewhere the hard limit alone applies.
    """
    usable = (
        limit_s is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable or limit_s is None:
        yield
        return

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise JobTimeLimitError(time_limit_message(limit_s))

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, soft_limit_s(limit_s))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Heartbeat:
    """A daemon thread calling ``stamp(session, job_id, worker)`` every ``interval_s`` seconds
    while the job runs (``store.touch``).

    A failed stamp (database briefly away) is logged and tried again at the next tick: the
    job itself must not die for it.
    """

    def __init__(self, sessions: sessionmaker[Session], job_id: int, worker: str,
                 interval_s: float, *, stamp: Callable[[Session, int, str], bool]) -> None:
        self._sessions = sessions
        self._job_id = job_id
        self._worker = worker
        self._interval = interval_s
        self._stamp = stamp
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}",
                                        daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                with self._sessions() as session:
                    self._stamp(session, self._job_id, self._worker)
            except DATABASE_OUTAGE as err:
                log.warning("job %s: cannot stamp its heartbeat (%s); will try again",
                            self._job_id, type(err).__name__)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, _type: type[BaseException] | None, _value: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5.0)
