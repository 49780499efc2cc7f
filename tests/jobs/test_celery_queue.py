"""Celery end to end: a real Redis, a real `skyphot worker` process (2 processes) and the
real application; the stub engine stands in for the analysis except in one test."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))

from harness import REAL_ENGINE, fits_with, require_redis, stack
from webtest_helpers import fits_bytes

from skyphot.testing import SimulationParams, simulate_frame


def test_uploads_run_on_a_celery_worker_two_at_a_time(tmp_path: Path) -> None:
    broker = require_redis()
    with stack(tmp_path, broker_url=broker, concurrency=2) as s:
        ids = [s.upload(fits_with(fits_bytes(mag=17.0 + i, seed=i), STUBWAIT=1.0))
               for i in range(3)]
        running_together = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = s.jobs(ids) or {}
            states = [r.state for r in rows.values()]
            running_together = max(running_together, states.count("running"))
            assert states.count("running") <= 2, s.describe(ids)  # the concurrency limit
            if all(state in ("succeeded", "failed") for state in states) and len(states) == 3:
                break
            time.sleep(0.05)
        rows = s.wait_done(ids, timeout=5)
        assert running_together == 2, "two worker processes should run jobs side by side"
        for i, job_id in enumerate(ids):
            job = rows[job_id]
            assert job.state == "succeeded", s.describe(ids)
            assert job.message is not None and job.message.startswith(f"r = {17.0 + i:.3f}")
            assert job.attempts == 1 and job.worker is not None
            assert job.worker.startswith("skyphot-")
        assert s.points_per_job() == {job_id: 1 for job_id in ids}
        assert s.client is not None
        points = s.client.get("/api/sources/s1/photometry", headers=s.alice).json()
        assert sorted(p["mag"] for p in points) == [17.0, 18.0, 19.0]
        # the job's log and state come through the API as with the embedded queue
        api_job = s.client.get(f"/api/jobs/{ids[0]}", headers=s.alice).json()
        assert api_job["state"] == "succeeded" and api_job["photometry_id"] is not None
        log = s.client.get(f"/api/jobs/{ids[0]}/log", headers=s.alice).text
        assert "stage: fault engine" in log and "succeeded: r = 17.000" in log


def test_real_engine_on_a_celery_worker(tmp_path: Path) -> None:
    broker = require_redis()
    frame = simulate_frame(SimulationParams(target_mag=17.0), seed=3)
    paths = frame.write(tmp_path / "sim", stem="frame")
    truth = frame.truth
    assert truth is not None
    with stack(tmp_path, broker_url=broker, engine=REAL_ENGINE, concurrency=1) as s:
        assert s.client is not None
        r = s.client.post("/api/sources", json={"id": "sim", "ra": truth.ra, "dec": truth.dec},
                          headers=s.alice)
        assert r.status_code == 201
        r = s.client.post(
            "/api/sources/sim/image_analysis", headers=s.alice,
            files={"file": ("frame.fits", Path(paths.image).read_bytes()),
                   "catalog_file": ("frame_catalog.ecsv", Path(paths.catalog).read_bytes())},
            data={"target_color": str(truth.color)})
        assert r.status_code == 202, r.text
        job = s.wait_done([r.json()["job_id"]], timeout=120)[r.json()["job_id"]]
        assert job.state == "succeeded", job.message
        (point,) = s.client.get("/api/sources/sim/photometry", headers=s.alice).json()
        assert point["job_id"] == job.id and point["origin"] == "skyphot"
        assert abs(point["mag"] - truth.mag) < 4 * point["magerr"] + 0.01
        assert abs(point["mjd"] - truth.mjd_mid) < 1e-5
