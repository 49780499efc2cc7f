"""A job that hangs: the time limit ends it as failed with a clear message, on the
embedded pool and on Celery, whether the job can be interrupted (STUBWAIT: the soft limit)
or its process must be killed (STUBHANG: the hard limit); the workers carry on."""

from __future__ import annotations

import time
from pathlib import Path

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


def test_embedded_pool_time_limit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, workers=2, job_time_limit_s=LIMIT_S)
    queue = EmbeddedQueue(settings, engine=FAULT_ENGINE)
    app = create_app(settings, queue=queue)
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        assert client.post("/api/sources", json={"id": "s1", "ra": 1, "dec": 1},
                           headers=alice).status_code == 201

        def upload(content: bytes) -> int:
            r = client.post("/api/sources/s1/image_analysis", headers=alice,
                            files={"file": ("f.fits", content)})
            assert r.status_code == 202, r.text
            return int(r.json()["job_id"])

        before = {p.pid for p in queue._processes.values()}
        started = time.monotonic()
        slow = upload(fits_with(fits_bytes(seed=1), STUBWAIT=60))
        stuck = upload(fits_with(fits_bytes(seed=2), STUBHANG=60))
        for job_id in (slow, stuck):
            job = wait_job(client, alice, job_id, timeout=20)
            assert job["state"] == "failed", job
            assert str(job["message"]).startswith(MESSAGE)
        assert time.monotonic() - started < LIMIT_S + 8  # not the 60 s the jobs wanted
        assert client.get("/api/sources/s1/photometry", headers=alice).json() == []
        # the pool goes on: a normal job succeeds
        assert wait_job(client, alice, upload(fits_bytes(seed=5)), timeout=20)[
            "state"] == "succeeded"
        after = {p.pid for p in queue._processes.values()}
        # the interrupted worker lives on, the stuck one was replaced
        assert len(after) == 2 and len(before & after) == 1


def test_celery_time_limit(tmp_path: Path) -> None:
    broker = require_redis()
    with stack(tmp_path, broker_url=broker, concurrency=2, job_time_limit_s=LIMIT_S) as s:
        slow = s.upload(fits_with(fits_bytes(seed=1), STUBWAIT=60))
        stuck = s.upload(fits_with(fits_bytes(seed=2), STUBHANG=60))
        rows = s.wait_done([slow, stuck], timeout=25)
        for job in rows.values():
            assert job.state == "failed", s.describe([slow, stuck])
            assert job.message is not None and job.message.startswith(MESSAGE)
            assert job.finished_at is not None and job.started_at is not None
            assert (job.finished_at - job.started_at).total_seconds() < LIMIT_S + 5
        assert "Hard time limit (2.0s) exceeded" in s.worker.log()  # the stuck one
        ok = s.upload(fits_bytes(seed=7))
        assert s.wait_done([ok], timeout=25)[ok].state == "succeeded"
        assert s.points_per_job() == {ok: 1}
