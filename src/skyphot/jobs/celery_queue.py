"""``CeleryQueue``: the web server's side of ``queue: celery``. It only sends job ids; the
jobs run in ``skyphot worker`` processes on any machine that reaches the database, the
broker and the upload storage."""

from __future__ import annotations

import logging
import queue
import threading

from skyphot.jobs.celery_app import BROKER_OUTAGE, make_celery, send_job
from skyphot.settings import Settings

log = logging.getLogger(__name__)


class CeleryQueue:
    """A ``JobQueue`` sending each submitted job to the Celery broker.

    Sending happens in a background thread, so a slow or absent broker never holds up a
    web request; a job that cannot be sent stays ``queued`` in the database and a worker's
    sweep sends it once the broker is back.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = make_celery(settings)
        self._pending: queue.Queue[int | None] = queue.Queue()
        self._sender: threading.Thread | None = None

    def start(self) -> None:
        """Start the sending thread (jobs run elsewhere: nothing to re-queue here)."""
        if self._sender is None:
            self._sender = threading.Thread(target=self._send_loop, name="celery-sender",
                                            daemon=True)
            self._sender.start()

    def submit(self, job_id: int) -> None:
        """Send job ``job_id`` to the workers soon (returns at once)."""
        self._pending.put(job_id)

    def _send_loop(self) -> None:
        while True:
            job_id = self._pending.get()
            if job_id is None:
                return
            try:
                send_job(self.app, self.settings, job_id)
            except BROKER_OUTAGE as err:
                log.warning("cannot send job %s to the broker %s (%s); it stays queued and a "
                            "worker's sweep sends it later", job_id, self.settings.broker_url,
                            err)
            except Exception:  # the sender must survive anything; the job stays queued
                log.exception("unexpected error sending job %s to the broker; it stays "
                              "queued and a worker's sweep sends it later", job_id)

    def request_stop(self, deadline: float | None = None) -> None:
        """Nothing runs here: jobs go on in the workers, which have their own shutdown."""

    def stop(self, timeout: float | None = None) -> None:
        """Send what is pending (for up to ``timeout`` s, default 10), then stop."""
        if self._sender is not None:
            self._pending.put(None)
            self._sender.join(10.0 if timeout is None else timeout)
            self._sender = None
        self.app.close()

    def abort(self) -> list[int]:
        """Stop sending now; unsent jobs stay queued in the database (a sweep sends them)."""
        self._pending.put(None)
        return []
