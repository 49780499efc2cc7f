"""Real components on loopback for the Celery and fault tests: private Redis and PostgreSQL
servers that a test may restart, a `skyphot worker` subprocess, and an application instance
wired to Celery. Everything is bounded in time and cleaned up even when a test fails."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

TESTS = Path(__file__).resolve().parents[1]
for _sub in ("web", "faults"):
    if str(TESTS / _sub) not in sys.path:
        sys.path.insert(0, str(TESTS / _sub))

from astropy.io import fits  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.exc import DBAPIError  # noqa: E402
from webtest_helpers import add_users, free_port, fresh_database_url  # noqa: E402

from skyphot.db.models import Job, Photometry  # noqa: E402
from skyphot.db.session import make_engine, make_sessionmaker  # noqa: E402
from skyphot.settings import Settings, load_settings  # noqa: E402
from skyphot.web.app import create_app  # noqa: E402

REDIS_URL = os.environ.get("SKYPHOT_TEST_REDIS_URL")
POSTGRES_URL = os.environ.get("SKYPHOT_TEST_POSTGRES_URL")
FAULT_ENGINE = "fault_engine:measure"
REAL_ENGINE = "skyphot.pipeline.api:measure"
T = TypeVar("T")


def require_redis() -> str:
    """The test Redis URL, or skip (with how to get one)."""
    pytest.importorskip("celery", reason="Celery is not installed (pip install 'skyphot[celery]')")
    if not REDIS_URL:
        pytest.skip("SKYPHOT_TEST_REDIS_URL is not set: start a local Redis with "
                    "'.ci/services.sh start' and 'eval \"$(.ci/services.sh env)\"'")
    return REDIS_URL


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str,
               interval: float = 0.1) -> T:
    """Poll ``check`` until it returns a true value; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def fits_with(content: bytes, **cards: float) -> bytes:
    """``content`` (a FITS file's bytes) with extra header cards."""
    with fits.open(io.BytesIO(content)) as hdul:
        for key, value in cards.items():
            hdul[0].header[key] = value
        out = io.BytesIO()
        hdul.writeto(out)
    return out.getvalue()


# --- private servers ------------------------------------------------------------------------


class RedisServer:
    """A Redis on a free loopback port with an append-only file, so it can be restarted
    without losing queued messages (as production should run it)."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (.ci/services.sh install)")
        self.binary = binary
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)

        def ping() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            wait_until(ping, timeout=15, what="redis-server to answer")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # SIGTERM: Redis flushes its append-only file, then exits
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


class PostgresServer:
    """A PostgreSQL cluster of its own in a temp dir (initdb/pg_ctl, as the postgres user when
    running as root), on a free loopback port; it can be restarted."""

    def __init__(self) -> None:
        bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        found = shutil.which("pg_ctl")
        bindir = bindirs[-1] if bindirs else (Path(found).parent if found else None)
        if bindir is None or not (bindir / "initdb").exists():
            pytest.skip("PostgreSQL server binaries are not installed (.ci/services.sh install)")
        self.bindir = bindir
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.skip("running as root without runuser: cannot start PostgreSQL")
            self.as_postgres = [runuser, "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="skyphot-pg-"))
        if self.as_postgres:
            shutil.chown(self.root, "postgres")
        self.data = self.root / "data"
        self.port = free_port()

    @property
    def url(self) -> str:
        """Admin URL (role postgres, trusted on loopback)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run([*self.as_postgres, *args], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                      "-E", "UTF8", "--auth=trust", "--no-sync")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "-o", options, "start")

    def restart(self) -> None:
        """A fast restart: every open connection is cut."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                  "-t", "60", "restart")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "-t", "30", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        name = f"skyphot_fault_{uuid.uuid4().hex[:8]}"
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)


# --- a worker process -----------------------------------------------------------------------


class WorkerProcess:
    """`skyphot worker` in a subprocess (its own process group, killed as a whole)."""

    def __init__(self, data_dir: Path, *, engine: str = FAULT_ENGINE, concurrency: int = 2
                 ) -> None:
        self.data_dir = data_dir
        self.engine = engine
        self.concurrency = concurrency
        self.log_path = data_dir / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, ready_timeout: float = 40) -> None:
        env = dict(os.environ)
        paths = [str(TESTS / "web"), str(TESTS / "faults"), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        env = {k: v for k, v in env.items() if not k.startswith("SKYPHOT_") or
               k.startswith("SKYPHOT_TEST_")}
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "skyphot.cli", "worker", "--data-dir",
                 str(self.data_dir), "--concurrency", str(self.concurrency), "--engine",
                 self.engine, "--loglevel", "info", "--database-wait", "20"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n"
                                     + self.log())
            return " ready." in self.log()[start:]

        wait_until(ready, timeout=ready_timeout, what="the worker to be ready", interval=0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGQUIT)  # cold shutdown: do not wait for jobs
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # pool children left behind, if any
        if self.process.poll() is None:
            self.process.wait(5)
        self.process = None


def pid_of(worker: str) -> int:
    """The process id in a job's ``worker`` column (``node/pid``)."""
    match = re.fullmatch(r".*/(\d+)", worker)
    assert match, worker
    return int(match.group(1))


# --- an instance: app + worker ----------------------------------------------------------------


class Stack:
    """config.yaml shared by an app (TestClient, CeleryQueue) and a `skyphot worker`."""

    def __init__(self, tmp_path: Path, *, broker_url: str, database_url: str | None = None,
                 engine: str = FAULT_ENGINE, concurrency: int = 2, **config: Any) -> None:
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        values: dict[str, Any] = {
            "queue": "celery", "broker_url": broker_url,
            "celery_queue": f"test-{uuid.uuid4().hex[:10]}", "workers": 0, "worker_nice": 0,
            "job_heartbeat_s": 0.5, "job_stale_after_s": 3, "job_sweep_interval_s": 1,
            "job_time_limit_s": 60,
        }
        if database_url is not None:
            values["database_url"] = database_url
        values.update(config)
        (self.data_dir / "config.yaml").write_text(yaml.safe_dump(values), encoding="utf-8")
        self.settings: Settings = load_settings(data_dir=self.data_dir, env={})
        self.worker = WorkerProcess(self.data_dir, engine=engine, concurrency=concurrency)
        self.client: TestClient | None = None
        self._engine = make_engine(self.settings.db_url)
        self.sessions = make_sessionmaker(self._engine)

    def open(self) -> None:
        from skyphot.jobs.celery_queue import CeleryQueue

        self.app = create_app(self.settings, queue=CeleryQueue(self.settings))
        self.admin, self.alice, _ = add_users(self.app)
        self.client = TestClient(self.app)
        self.client.__enter__()
        r = self.client.post("/api/sources", json={"id": "s1", "ra": 150.1, "dec": 2.2},
                             headers=self.alice)
        assert r.status_code == 201, r.text

    def close(self) -> None:
        self.worker.stop()
        if self.client is not None:
            self.client.__exit__(None, None, None)
            self.client = None
        self._engine.dispose()

    def upload(self, content: bytes, name: str = "frame.fits", **fields: str) -> int:
        assert self.client is not None
        r = self.client.post("/api/sources/s1/image_analysis", files={"file": (name, content)},
                             data=fields, headers=self.alice)
        assert r.status_code == 202, r.text
        return int(r.json()["job_id"])

    def jobs(self, ids: list[int]) -> dict[int, Job] | None:
        """The job rows (None while the database is unreachable)."""
        try:
            with self.sessions() as session:
                rows = session.scalars(select(Job).where(Job.id.in_(ids))).all()
                return {row.id: row for row in rows}
        except DBAPIError:
            return None

    def wait_done(self, ids: list[int], *, timeout: float) -> dict[int, Job]:
        """Wait until every job ended (succeeded or failed)."""
        def done() -> dict[int, Job] | None:
            rows = self.jobs(ids)
            if rows is None or len(rows) < len(ids):
                return None
            return rows if all(r.state in ("succeeded", "failed") for r in rows.values()) \
                else None

        try:
            return wait_until(done, timeout=timeout, what=f"jobs {ids} to end", interval=0.2)
        except AssertionError as err:
            raise AssertionError(f"{err}; jobs: {self.describe(ids)}\nworker log tail:\n"
                                 f"{self.worker.log()[-4000:]}") from err

    def wait_state(self, job_id: int, state: str, *, timeout: float) -> Job:
        def reached() -> Job | None:
            rows = self.jobs([job_id])
            return rows[job_id] if rows and rows[job_id].state == state else None

        try:
            return wait_until(reached, timeout=timeout, what=f"job {job_id} to be {state}")
        except AssertionError as err:
            raise AssertionError(f"{err}; {self.describe([job_id])}\nworker log tail:\n"
                                 f"{self.worker.log()[-4000:]}") from err

    def describe(self, ids: list[int]) -> str:
        rows = self.jobs(ids) or {}
        return "; ".join(f"{i}: {r.state} {r.stage or ''} attempts={r.attempts} {r.message}"
                         for i, r in sorted(rows.items()))

    def points_per_job(self) -> dict[int, int]:
        with self.sessions() as session:
            rows = session.execute(
                select(Photometry.job_id, func.count()).group_by(Photometry.job_id)).all()
        return {int(job_id): int(count) for job_id, count in rows}


@contextmanager
def stack(tmp_path: Path, *, broker_url: str, database_url: str | None = None,
          start_worker: bool = True, **options: Any) -> Iterator[Stack]:
    """An app and (unless told otherwise) a ready worker; both stopped afterwards."""
    if database_url is None:
        database_url = fresh_database_url()
    instance = Stack(tmp_path, broker_url=broker_url, database_url=database_url, **options)
    try:
        instance.open()
        if start_worker:
            instance.worker.start()
        yield instance
    finally:
        instance.close()
