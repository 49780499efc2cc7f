"""`skyphot worker`: run analysis jobs from the Celery broker (``queue: celery``).

Start one on any machine that reaches the database, the broker and the upload storage; it
runs ``worker_concurrency`` jobs at a time. The lead's CLI calls ``add_parsers(subparsers)``;
the sub-command sets ``handler`` (and ``func``) to a callable returning the exit status.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skyphot.errors import ConfigError, ToolNotFoundError
from skyphot.jobs.lifeline import die_with_parent

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from skyphot.settings import Settings

log = logging.getLogger(__name__)

DATABASE_WAIT_S = 60.0  # how long a starting worker waits for its database (e.g. in compose)


def worker_settings(args: argparse.Namespace) -> Settings:
    """Settings of a worker: the usual layers plus ``--concurrency`` and ``--queue``."""
    from skyphot.settings import load_settings

    settings = load_settings(
        config_file=args.config, data_dir=args.data_dir,
        overrides={"worker_concurrency": args.concurrency, "celery_queue": args.queue},
    )
    if settings.queue != "celery":
        raise ConfigError(
            f"the configuration says queue: {settings.queue}, but workers serve the Celery "
            "queue: set 'queue: celery' (and broker_url) in the config.yaml of the web server "
            "and of every worker (the embedded queue's workers run inside skyphot serve)"
        )
    return settings


def prepare_database(settings: Settings, *, wait_s: float = DATABASE_WAIT_S) -> None:
    """Wait up to ``wait_s`` s for the database and bring its schema up to date.

    Raises ``ConfigError`` naming the URL when it stays unreachable.
    """
    # Imported here: every `skyphot` command builds this parser, few need a database.
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from skyphot.db.session import make_engine, migrate

    deadline = time.monotonic() + wait_s
    try:
        engine = make_engine(settings.db_url)
    except (SQLAlchemyError, ImportError) as err:
        raise ConfigError(f"database_url is unusable ({type(err).__name__}: {err})") from err
    shown = engine.url.render_as_string(hide_password=True)
    try:
        while True:
            try:
                migrate(engine)
                return
            except DBAPIError as err:
                # Not up yet, or the web server is migrating at this very moment: try again.
                if time.monotonic() > deadline:
                    first_line = str(err.orig).strip().splitlines()[0] if err.orig else err
                    raise ConfigError(
                        f"cannot use the database {shown} ({first_line}); check "
                        "database_url and that the database server is running"
                    ) from err
                log.warning("database %s not ready (%s); retrying", shown, type(err).__name__)
                time.sleep(min(2.0, max(wait_s, 0.1)))
    finally:
        engine.dispose()


def warm_shutdown_s(grace_s: float) -> float:
    """Of the grace period, the time running jobs get: the rest (up to 5 s, measured at
    2-3 s on a loaded machine) is kept for Celery's cold shutdown and the bookkeeping."""
    return max(0.5, grace_s - min(5.0, grace_s / 2))


def _pool_process_init(**_kwargs: Any) -> None:
    """In each pool process: leave the worker's process group, so that a SIGTERM sent to
    the group (Docker, systemd, Ctrl-C) reaches the main process alone, which finishes or
    stops the jobs itself; and exit should the main process die (its pool thread, which
    forks replacements, may end first: no kernel parent-death signal)."""
    os.setpgid(0, 0)
    die_with_parent(os.getppid(), kernel=False)


class WarmShutdownLimit:
    """Bounds Celery's warm shutdown (SIGTERM: finish the running jobs) by
    ``shutdown_grace_s``: past it, a cold shutdown (SIGQUIT) stops the jobs still running,
    whose messages go back to the broker; ``hand_back`` then puts their rows back in the
    queue (the attempt does not count)."""

    def __init__(self, settings: Settings, node: str,
                 sessions: Callable[[], sessionmaker[Session]]) -> None:
        self.settings = settings
        self.node = node
        self._sessions = sessions
        self._timer: threading.Timer | None = None

    def on_shutting_down(self, sig: str = "", how: str = "", **_kwargs: Any) -> None:
        """Celery's ``worker_shutting_down`` signal (in the main process)."""
        if how != "Warm" or self._timer is not None:
            return
        wait_s = warm_shutdown_s(self.settings.shutdown_grace_s)
        log.warning("%s: running jobs get %.0f s to finish", sig or "shutdown", wait_s)
        self._timer = threading.Timer(wait_s, self._expire)
        self._timer.daemon = True
        self._timer.start()

    @staticmethod
    def _expire() -> None:
        log.warning("the grace period is over: stopping the jobs still running")
        os.kill(os.getpid(), signal.SIGQUIT)

    def hand_back(self) -> None:
        """Re-queue the jobs this worker's processes still hold (after they stopped)."""
        from skyphot.jobs import store
        from skyphot.jobs.limits import DATABASE_OUTAGE

        if self._timer is not None:
            self._timer.cancel()
        try:
            with self._sessions()() as session:
                released = store.release_worker(session, f"{self.node}/", prefix=True)
        except DATABASE_OUTAGE as err:
            log.error("cannot hand running jobs back to the queue (%s); a sweep re-queues "
                      "them once their heartbeat is stale", type(err).__name__)
            return
        if released:
            log.warning("handed job(s) %s back to the queue: the worker is shutting down",
                        ", ".join(map(str, released)))


def run_worker(args: argparse.Namespace) -> int:
    """Start a Celery worker in this process (blocks until it is stopped)."""
    settings = worker_settings(args)
    try:
        from celery import signals as celery_signals

        from skyphot.jobs.celery_app import Sweeper, make_celery
    except ModuleNotFoundError as err:
        raise ToolNotFoundError(
            f"skyphot worker needs Celery ({err.name} is not installed): "
            "pip install 'skyphot[celery]'"
        ) from err
    prepare_database(settings, wait_s=args.database_wait)
    # We keep running jobs through a broker blip on purpose (their result goes to the
    # database, and a re-delivered duplicate finds the job taken): no reminder needed.
    warnings.filterwarnings(
        "ignore", message=r"(?s).*worker_cancel_long_running_tasks_on_connection_loss")
    from skyphot.jobs.runner import DEFAULT_ENGINE

    app = make_celery(settings, engine_path=args.engine or DEFAULT_ENGINE)
    sweeper = Sweeper(app, settings, app.skyphot_context.sessions)
    sweeper.start()
    node = f"skyphot-{os.getpid()}@{socket.gethostname()}"
    print(f"skyphot worker {node}: {settings.worker_concurrency} process(es), queue "
          f"{settings.celery_queue!r} on {settings.broker_url}, time limit "
          f"{settings.job_time_limit_s:g} s", flush=True)
    shutdown = WarmShutdownLimit(settings, node, app.skyphot_context.sessions)
    celery_signals.worker_shutting_down.connect(shutdown.on_shutting_down, weak=False)
    celery_signals.worker_process_init.connect(_pool_process_init, weak=False)
    try:
        worker = app.Worker(
            hostname=node, concurrency=settings.worker_concurrency,
            queues=[settings.celery_queue], loglevel=args.loglevel.upper(), pool="prefork",
            # Job state lives in the database: no need to sync revokes or clocks with peers.
            without_mingle=True, without_gossip=True,
        )
        worker.start()
        return int(worker.exitcode or 0)
    finally:
        sweeper.stop()
        shutdown.hand_back()


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add `worker` to the CLI."""
    worker = subparsers.add_parser(
        "worker", help="run analysis jobs from the Celery queue (queue: celery)",
        description="Run image-analysis jobs sent through the Celery broker. Start as many as "
        "needed, on any machine that reaches the database, the broker and the upload storage.",
    )
    worker.add_argument("--config", default=None, help="config.yaml to use")
    worker.add_argument("--data-dir", default=None,
                        help="instance directory (uploads, job logs; as the web server's)")
    worker.add_argument("--concurrency", type=int, default=None,
                        help="jobs run at the same time (default: worker_concurrency, 2)")
    worker.add_argument("--queue", default=None,
                        help="broker queue to consume (default: celery_queue, 'skyphot')")
    worker.add_argument("--loglevel", default="info",
                        choices=["debug", "info", "warning", "error"], help="log level")
    worker.add_argument("--engine", default=None,
                        help="analysis function as module:function (default: the skyphot "
                        "engine, skyphot.pipeline.api:measure)")
    worker.add_argument("--database-wait", type=float, default=DATABASE_WAIT_S,
                        help="seconds to wait for the database at start (default 60)")
    worker.set_defaults(handler=run_worker, func=run_worker)
