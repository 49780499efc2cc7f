"""Stopping `skyphot serve` on SIGTERM or SIGINT, in every state.

The signals reach a dedicated thread through the signal wake-up fd, so they are seen even
while the event loop or the main thread is stuck (blocked requests, a burst of logins). On
the first signal the server stops accepting requests and the queue takes no new jobs;
running jobs get the grace period (``shutdown_grace_s``) to finish; then the workers still
busy are killed and their jobs handed back to the queue. Whatever is still running a little
before the end of the grace period (a request blocked in a thread) cannot hold the process:
it exits with status 0. A second signal skips the wait.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Protocol

import uvicorn

from skyphot.jobs.queue import JobQueue

log = logging.getLogger(__name__)

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
# Of the grace period, what is kept for stopping the web server, workers and bookkeeping.
FINAL_MARGIN_S = 1.0
JOB_MARGIN_S = 3.0


class Stoppable(Protocol):
    """What is needed of the web server (``uvicorn.Server``)."""

    should_exit: bool


def deadlines(grace_s: float, start: float) -> tuple[float, float]:
    """(end of the jobs' time, forced exit) on the monotonic clock, for a signal at
    ``start``: jobs may run until ``JOB_MARGIN_S`` before the end of the grace period (at
    most a third of it), the process is gone ``FINAL_MARGIN_S`` before its end."""
    final = max(0.5, grace_s - min(FINAL_MARGIN_S, grace_s / 4))
    jobs = max(0.0, grace_s - min(JOB_MARGIN_S, grace_s / 3))
    return start + min(jobs, final), start + final


class WebServer(uvicorn.Server):
    """uvicorn's server without its own signal handling: ``GracefulShutdown`` owns SIGTERM
    and SIGINT and sets ``should_exit``. uvicorn's handlers, installed for the time it
    serves, re-raise the signals they caught once it has stopped; the shutdown thread saw
    that as a second signal and cut the running jobs' grace period short."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _note(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler: nothing to do (the wake-up fd carries the signal), but it
    replaces the default action (die at once) and ``KeyboardInterrupt``."""


class GracefulShutdown:
    """``install()`` in the main thread, then ``attach`` the server and queue."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.server: Stoppable | None = None
        self.queue: JobQueue | None = None
        self._thread: threading.Thread | None = None
        self._read_fd = -1
        self._lock = threading.Lock()

    def attach(self, server: Stoppable, queue: JobQueue) -> None:
        """What to stop on a signal."""
        with self._lock:
            self.server, self.queue = server, queue

    def install(self) -> None:
        """Route the stop signals to the watching thread. Call in the main thread."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        for signum in STOP_SIGNALS:
            # Python handlers only run in the main thread, which may be stuck; the C-level
            # handler writes the signal number to the wake-up fd at once, whatever thread
            # the kernel picked (native threads of numerical libraries included).
            signal.signal(signum, _note)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        self._read_fd = read_fd
        self._thread = threading.Thread(target=self._wait, name="stop-signals", daemon=True)
        self._thread.start()

    def _next_signal(self, timeout: float | None) -> int | None:
        ready, _, _ = select.select([self._read_fd], [], [], timeout)
        if not ready:
            return None
        data = os.read(self._read_fd, 1)
        return data[0] if data else None

    def _wait(self) -> None:
        signum = self._next_signal(None)
        while signum not in STOP_SIGNALS:  # other signals with Python handlers wake us too
            signum = self._next_signal(None)
        start = time.monotonic()
        jobs_end, final = deadlines(self.grace_s, start)
        with self._lock:
            server, queue = self.server, self.queue
        if server is None or queue is None:
            log.warning("received %s during start-up: stopping", signal.Signals(signum).name)
            self._exit()
            return
        log.warning("received %s: no new requests or jobs; running jobs get %.0f s to finish",
                    signal.Signals(signum).name, jobs_end - start)
        server.should_exit = True
        queue.request_stop(jobs_end)
        again = None
        while again not in STOP_SIGNALS and time.monotonic() < final:
            again = self._next_signal(max(0.0, final - time.monotonic()))
        if again in STOP_SIGNALS:
            log.warning("received %s again: stopping now", signal.Signals(again).name)
        else:
            log.warning("the %.0f s grace period is over: stopping now", self.grace_s)
        try:
            queue.abort()
        finally:
            self._exit()

    @staticmethod
    def _exit() -> None:
        try:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            # Threads stuck in blocking calls would keep the interpreter from exiting.
        finally:
            os._exit(0)
