"""Helpers of the web tests: a fresh instance (SQLite in tmp) per test, users, FITS bytes."""

from __future__ import annotations

import io
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from fastapi import FastAPI
from fastapi.testclient import TestClient

from skyphot.db import crud
from skyphot.settings import Settings, load_settings
from skyphot.web.app import create_app

# The stub engine must be importable by spawned worker processes (they inherit sys.path).
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
STUB_ENGINE = "stub_engine:measure"


def fits_bytes(*, mag: float | None = 18.0, filt: str | None = "r",
               date: str | None = "2024-03-01T02:00:00", busy: float = 0.0,
               fail: bool = False, instrument: str = "SIMCAM", shape: tuple[int, int] = (16, 16),
               seed: int = 0, note: str | None = None) -> bytes:
    """A small FITS frame whose header drives the stub engine."""
    data = np.random.default_rng(seed).normal(100.0, 5.0, shape).astype(np.float32)
    header = fits.Header()
    if filt is not None:
        header["FILTER"] = filt
    if date is not None:
        header["DATE-OBS"] = date
        header["MJD-OBS"] = 60370.0 + 2.0 / 24
    header["EXPTIME"] = 60.0
    header["INSTRUME"] = instrument
    if mag is not None:
        header["STUBMAG"] = mag
    if busy:
        header["STUBBUSY"] = busy
    if fail:
        header["STUBFAIL"] = True
    if note is not None:
        header["STUBNOTE"] = note  # the stub reports it as a degradation (flag + note)
    out = io.BytesIO()
    fits.PrimaryHDU(data, header).writeto(out)
    return out.getvalue()


@dataclass
class Instance:
    """A running app with three users."""

    settings: Settings
    app: FastAPI
    client: TestClient
    admin: dict[str, str]
    alice: dict[str, str]
    bob: dict[str, str]


# With SKYPHOT_TEST_POSTGRES_URL (a URL of a PostgreSQL server whose role may create
# databases, e.g. postgresql+psycopg://skyphot:skyphot@127.0.0.1/postgres) every instance
# gets a fresh PostgreSQL database instead of SQLite; they are dropped at the end.
POSTGRES_URL = os.environ.get("SKYPHOT_TEST_POSTGRES_URL")
CREATED_DATABASES: list[str] = []


def fresh_database_url() -> str | None:
    """A new empty PostgreSQL database (when configured), else None (SQLite)."""
    if not POSTGRES_URL:
        return None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"skyphot_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    CREATED_DATABASES.append(name)
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def drop_test_databases() -> None:
    """Drop the PostgreSQL databases the tests made."""
    if not POSTGRES_URL or not CREATED_DATABASES:
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for name in CREATED_DATABASES:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
    CREATED_DATABASES.clear()


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"workers": 0, "job_poll_interval": 0.1, "worker_nice": 0,
                                 "database_url": fresh_database_url()}
    values.update(overrides)
    return load_settings(data_dir=tmp_path / "data", env={}, overrides=values)


def add_users(app: FastAPI) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Admin, alice (group 'ztf') and bob (group 'other'); header dicts with tokens."""
    with app.state.sessions() as session:
        admin = crud.create_user(session, "admin", "admin-pass", is_admin=True)
        alice = crud.create_user(session, "alice", "alice-pass", groups=["ztf"])
        bob = crud.create_user(session, "bob", "bob-pass", groups=["other"])
        tokens = [crud.create_token(session, u) for u in (admin, alice, bob)]
        session.commit()
    admin_h, alice_h, bob_h = ({"Authorization": f"token {t}"} for t in tokens)
    return admin_h, alice_h, bob_h


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    settings = make_settings(tmp_path)
    app = create_app(settings)
    admin, alice, bob = add_users(app)
    with TestClient(app) as client:
        yield Instance(settings, app, client, admin, alice, bob)


@pytest.fixture
def source(instance: Instance) -> str:
    """A source of alice's (group ztf)."""
    response = instance.client.post(
        "/api/sources", json={"id": "SN2024abc", "ra": 150.1, "dec": 2.2, "name": "test SN"},
        headers=instance.alice)
    assert response.status_code == 201, response.text
    return "SN2024abc"


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a random loopback port; yields its URL."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
