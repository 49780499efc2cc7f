"""PostgreSQL restarts during a run: workers recover, every job ends succeeded or failed
with a reason, and no photometry point is duplicated (Celery and the embedded pool)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from harness import (
    FAULT_ENGINE,
    POSTGRES_URL,
    PostgresServer,
    fits_with,
    require_redis,
    stack,
    wait_until,
)
from sqlalchemy import func, select
from webtest_helpers import add_users, fits_bytes, make_settings

from skyphot.db.models import Job, Photometry
from skyphot.jobs.queue import EmbeddedQueue
from skyphot.web.app import create_app


@pytest.fixture
def postgres() -> PostgresServer:
    if not POSTGRES_URL:
        pytest.skip("SKYPHOT_TEST_POSTGRES_URL is not set (PostgreSQL tests are off; "
                    "'.ci/services.sh start' and 'eval \"$(.ci/services.sh env)\"')")
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def check_outcome(rows: dict[int, Job], points: dict[int, int]) -> None:
    for job_id, job in rows.items():
        assert job.state in ("succeeded", "failed"), (job_id, job.state)
        if job.state == "failed":
            assert job.message, f"job {job_id} failed without a reason"
        else:
            assert points.get(job_id) == 1, (job_id, points)
    assert all(count == 1 for count in points.values()), points


def test_postgres_restart_with_celery_workers(tmp_path: Path, postgres: PostgresServer
                                              ) -> None:
    broker = require_redis()
    with stack(tmp_path, broker_url=broker, database_url=postgres.create_database(),
               concurrency=2) as s:
        ids = [s.upload(fits_with(fits_bytes(mag=15.0 + 0.1 * i, seed=i), STUBWAIT=0.7))
               for i in range(6)]
        wait_until(lambda: any(r.state == "running" for r in (s.jobs(ids) or {}).values()),
                   timeout=20, what="a job to run")
        postgres.restart()
        rows = s.wait_done(ids, timeout=90)
        check_outcome(rows, s.points_per_job())
        assert sum(r.state == "succeeded" for r in rows.values()) == len(ids), s.describe(ids)


def test_postgres_restart_with_the_embedded_pool(tmp_path: Path, postgres: PostgresServer
                                                 ) -> None:
    settings = make_settings(tmp_path, workers=2, database_url=postgres.create_database(),
                             job_heartbeat_s=0.5, job_stale_after_s=3)
    app = create_app(settings, queue=EmbeddedQueue(settings, engine=FAULT_ENGINE))
    _, alice, _ = add_users(app)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/api/sources", json={"id": "s1", "ra": 1, "dec": 1},
                           headers=alice).status_code == 201
        ids = []
        for i in range(6):
            r = client.post("/api/sources/s1/image_analysis", headers=alice, files={
                "file": ("f.fits", fits_with(fits_bytes(mag=15 + 0.1 * i, seed=i),
                                             STUBWAIT=0.7))})
            assert r.status_code == 202
            ids.append(r.json()["job_id"])
        time.sleep(0.5)
        postgres.restart()

        def ended() -> bool:
            r = client.get("/api/sources/s1/jobs", headers=alice)
            return r.status_code == 200 and all(
                j["state"] in ("succeeded", "failed") for j in r.json())

        wait_until(ended, timeout=90, what="the jobs to end", interval=0.3)
        with app.state.sessions() as session:
            rows = {j.id: j for j in session.scalars(select(Job))}
            points = dict(session.execute(
                select(Photometry.job_id, func.count()).group_by(Photometry.job_id)).all())
        check_outcome(rows, points)
        assert all(j.state == "succeeded" for j in rows.values()), [
            (j.id, j.state, j.message) for j in rows.values()]
