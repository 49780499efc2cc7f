"""A job that hangs: the time limit ends it as failed with a clear message, on the
embedded pool and on Celery, whether or not the job can be interrupted (soft limit) or
its process must be killed (hard limit); the worker carries on with the next job."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from harness import FAULT_ENGINE, fits_with, require_redis, stack
from webtest_helpers import add_users, fits_bytes, make_settings

from skyphot.jobs.queue import EmbeddedQueue
from skyphot.web.app import create_app

LIMIT_S = 2.0
MESSAGE = "analysis exceeded the 2 s time limit (job_time_limit_s)"


def wait_job(client: TestClient, headers: dict[str, str], job_id: int, timeout: float
             ) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, object] = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end within {timeout} s: {job}")


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], EmbeddedQueue]]:
    settings = make_settings(tmp_path, workers=1, job_time_limit_s=LIMIT_S)
    queue = EmbeddedQueue(settings, engine=FAULT_ENGINE)
    app = create_app(settings, queue=queue)
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        assert client.post("/api/sources", json={"id": "s1", "ra": 1, "dec": 1},
                           headers=alice).status_code == 201
        yield client, alice, queue


def upload(client: TestClient, headers: dict[str, str], content: bytes) -> int:
    r = client.post("/api/sources/s1/image_analysis", files={"file": ("f.fits", content)},
                    headers=headers)
    assert r.status_code == 202, r.text
    return int(r.json()["job_id"])


@pytest.mark.parametrize("card", ["STUBWAIT", "STUBHANG"])
def test_embedded_pool_time_limit(embedded: tuple[TestClient, dict[str, str], EmbeddedQueue],
                                  card: str) -> None:
    client, alice, queue = embedded
    (before,) = [p.pid for p in queue._processes.values()]
    started = time.monotonic()
    job = wait_job(client, alice, upload(client, alice, fits_with(fits_bytes(), **{card: 60})),
                   timeout=20)
    elapsed = time.monotonic() - started
    assert job["state"] == "failed"
    assert str(job["message"]).startswith(MESSAGE)
    assert elapsed < LIMIT_S + 8  # not the 60 s the job wanted
    points = client.get("/api/sources/s1/photometry", headers=alice).json()
    assert points == []
    # the pool goes on: a normal job succeeds (on a new process when the old one was killed)
    job = wait_job(client, alice, upload(client, alice, fits_bytes(seed=5)), timeout=20)
    assert job["state"] == "succeeded", job
    (after,) = [p.pid for p in queue._processes.values()]
    assert (after == before) == (card == "STUBWAIT")  # soft limit: same process lives on


@pytest.mark.parametrize("card", ["STUBWAIT", "STUBHANG"])
def test_celery_time_limit(tmp_path: Path, card: str) -> None:
    broker = require_redis()
    with stack(tmp_path, broker_url=broker, concurrency=1, job_time_limit_s=LIMIT_S) as s:
        hung = s.upload(fits_with(fits_bytes(), **{card: 60}))
        job = s.wait_done([hung], timeout=25)[hung]
        assert job.state == "failed", s.describe([hung])
        assert job.message is not None and job.message.startswith(MESSAGE)
        assert job.finished_at is not None and job.started_at is not None
        assert (job.finished_at - job.started_at).total_seconds() < LIMIT_S + 5
        ok = s.upload(fits_bytes(seed=7))
        assert s.wait_done([ok], timeout=25)[ok].state == "succeeded"
        assert s.points_per_job() == {ok: 1}
        if card == "STUBHANG":
            assert "Hard time limit" in s.worker.log()
