"""Jobs run by real worker processes (EmbeddedQueue) with the stub engine."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from webtest_helpers import STUB_ENGINE, add_users, fits_bytes, make_settings

from skyphot.db.models import Job, Photometry
from skyphot.jobs.queue import EmbeddedQueue
from skyphot.web.app import create_app


def wait_for(client: TestClient, headers: dict[str, str], job_id: int, *,
             states: tuple[str, ...] = ("succeeded", "failed"), timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        if job["state"] in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach {states}: {job}")


class Served:
    def __init__(self, tmp_path: Path, workers: int = 1) -> None:
        self.settings = make_settings(tmp_path, workers=workers)
        self.queue = EmbeddedQueue(self.settings, engine=STUB_ENGINE)
        self.app = create_app(self.settings, queue=self.queue)
        self.admin, self.alice, self.bob = add_users(self.app)

    def upload(self, client: TestClient, content: bytes, name: str = "frame.fits",
               **fields: str) -> int:
        r = client.post("/api/sources/s1/image_analysis", files={"file": (name, content)},
                        data=fields, headers=self.alice)
        assert r.status_code == 202, r.text
        return int(r.json()["job_id"])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, TestClient]]:
    s = Served(tmp_path)
    with TestClient(s.app) as client:
        r = client.post("/api/sources", json={"id": "s1", "ra": 150.1, "dec": 2.2},
                        headers=s.alice)
        assert r.status_code == 201
        yield s, client


def test_job_succeeds_and_adds_one_point(served: tuple[Served, TestClient]) -> None:
    s, client = served
    job_id = s.upload(client, fits_bytes(mag=17.5), filter="r", target_color="0.3")
    job = wait_for(client, s.alice, job_id)
    assert job["state"] == "succeeded", job
    assert job["message"].startswith("r = 17.500 ± 0.021 at 2024-03-01 02:00")
    assert job["diagnostics_url"] == f"/api/jobs/{job_id}/diagnostics.png"
    png = client.get(job["diagnostics_url"], headers=s.alice)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    log = client.get(job["log_url"], headers=s.alice).text
    assert "stage: calibration" in log and "succeeded: r = 17.500" in log
    points = client.get("/api/sources/s1/photometry", headers=s.alice).json()
    assert len(points) == 1
    point = points[0]
    assert point["origin"] == "skyphot" and point["mag"] == 17.5 and point["job_id"] == job_id
    assert point["instrument"] == "SIMCAM" and point["limit_sigma"] == 5.0
    assert point["calibration"]["job_id"] == job_id
    assert point["calibration"]["zero_point"] == 25.0
    assert point["calibration"]["color_term"] == 0.08
    assert point["calibration"]["fwhm_arcsec"] == 2.1
    # the instrument from the header was created with its filter
    instruments = client.get("/api/instruments", headers=s.alice).json()
    assert instruments[0]["name"] == "SIMCAM" and instruments[0]["filters"] == ["r"]
    # identical re-upload: no second point
    again = wait_for(client, s.alice, s.upload(client, fits_bytes(mag=17.5), filter="r",
                                               target_color="0.3"))
    assert again["state"] == "succeeded"
    assert again["message"] == f"identical upload already measured (point {point['id']}); " \
                               "nothing added"
    assert len(client.get("/api/sources/s1/photometry", headers=s.alice).json()) == 1
    # different settings: a new point
    third = wait_for(client, s.alice, s.upload(client, fits_bytes(mag=17.5), filter="r",
                                               nsigma="3"))
    assert third["state"] == "succeeded"
    assert len(client.get("/api/sources/s1/photometry", headers=s.alice).json()) == 2


def test_not_fits_or_truncated_is_refused_before_any_job(
        served: tuple[Served, TestClient]) -> None:
    s, client = served
    r = client.post("/api/sources/s1/image_analysis", headers=s.alice,
                    files={"file": ("broken.fits", b"SIMPLE? no, this is a text file\n" * 10)})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert message.startswith("'broken.fits': not a FITS file")
    assert "skyphot reads FITS images (.fits, .fit, .fts, .fits.fz, .fits.gz)" in message
    whole = fits_bytes(shape=(64, 64))
    r = client.post("/api/sources/s1/image_analysis", headers=s.alice,
                    files={"file": ("cut.fits", whole[: len(whole) - 5000])})
    assert r.status_code == 400, r.text
    assert "'cut.fits' is incomplete" in r.json()["error"]["message"]
    assert "upload the complete file" in r.json()["error"]["message"]
    with s.app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    assert not [p for p in s.settings.upload_path.rglob("*") if p.is_file()]


def test_same_file_same_resolved_settings_is_one_point(
        served: tuple[Served, TestClient]) -> None:
    s, client = served
    first = wait_for(client, s.alice, s.upload(client, fits_bytes(mag=17.5)))
    assert first["state"] == "succeeded", first
    # the form pre-selects the header's instrument and filter on the second upload: the
    # resolved settings are the same, so is the measurement
    again = wait_for(client, s.alice, s.upload(client, fits_bytes(mag=17.5),
                                               instrument="SIMCAM", filter="r"))
    assert again["message"].startswith("identical upload already measured"), again
    start = wait_for(client, s.alice, s.upload(client, fits_bytes(mag=17.5),
                                               obstime="2024-03-01T02:00:00",
                                               obstime_ref="start"))
    # typed as the exposure start, as DATE-OBS is: the same mid-exposure, the same point
    assert start["message"].startswith("identical upload already measured"), start
    # engine and pixel scale change the result: new points
    other_engine = wait_for(client, s.alice, s.upload(client, fits_bytes(mag=17.5),
                                                      engine="stdpipe"))
    assert other_engine["state"] == "succeeded"
    assert not other_engine["message"].startswith("identical"), other_engine
    scale = wait_for(client, s.alice, s.upload(client, fits_bytes(mag=17.5), pixel_scale="0.6"))
    assert not scale["message"].startswith("identical"), scale
    points = client.get("/api/sources/s1/photometry", headers=s.alice).json()
    assert len(points) == 3


def test_engine_failure_and_missing_time(served: tuple[Served, TestClient]) -> None:
    s, client = served
    failed = wait_for(client, s.alice, s.upload(client, fits_bytes(fail=True)))
    assert failed["message"] == ("calibration: only 2 reference stars matched (5 needed); "
                                 "use a deeper catalog")
    assert failed["retryable"] is True
    log = client.get(failed["log_url"], headers=s.alice).text
    assert log.count("failed: calibration: only 2 reference stars") == 1  # said once
    no_time = wait_for(client, s.alice, s.upload(client, fits_bytes(date=None)))
    assert no_time["state"] == "failed"
    assert no_time["message"] == (
        "the image header has no observation time (no DATE-OBS or MJD-OBS); enter the "
        "observation time in the form and upload again")
    # a retry with the time given (as the exposure start) succeeds at mid-exposure
    r = client.post(f"/api/jobs/{no_time['id']}/retry",
                    json={"obstime": "60370.5", "obstime_ref": "start", "pixel_scale": 0.6},
                    headers=s.alice)
    assert r.status_code == 200
    assert r.json()["params"]["pixel_scale"] == 0.6
    job = wait_for(client, s.alice, no_time["id"])
    assert job["state"] == "succeeded", job
    points = client.get("/api/sources/s1/photometry", headers=s.alice).json()
    assert [p["mjd"] for p in points] == [pytest.approx(60370.5 + 30 / 86400, abs=1e-9)]


def test_queued_jobs_survive_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, workers=1)
    app = create_app(settings)  # no workers: jobs stay queued
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        client.post("/api/sources", json={"id": "s1", "ra": 1, "dec": 1}, headers=alice)
        ids = [client.post("/api/sources/s1/image_analysis",
                           files={"file": ("f.fits", fits_bytes(mag=17 + i, seed=i))},
                           headers=alice).json()["job_id"] for i in range(2)]
    with app.state.sessions() as session:  # pretend the server died mid-job
        job = session.get(Job, ids[1])
        assert job is not None
        job.state, job.stage, job.worker = "running", "photometry", "dead-worker"
        session.commit()
    app2 = create_app(settings, queue=EmbeddedQueue(settings, engine=STUB_ENGINE))
    with TestClient(app2) as client:
        for job_id in ids:
            assert wait_for(client, alice, job_id)["state"] == "succeeded"
    with app2.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Photometry)) == 2


def test_killed_worker_job_is_requeued(tmp_path: Path) -> None:
    s = Served(tmp_path)
    with TestClient(s.app) as client:
        client.post("/api/sources", json={"id": "s1", "ra": 1, "dec": 1}, headers=s.alice)
        job_id = s.upload(client, fits_bytes(busy=2.0))
        wait_for(client, s.alice, job_id, states=("running",))
        (pid,) = [p.pid for p in s.queue._processes.values()]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        job = wait_for(client, s.alice, job_id, timeout=40)
        assert job["state"] == "succeeded" and job["attempts"] == 2
        assert s.queue.alive == 1
        points = client.get("/api/sources/s1/photometry", headers=s.alice).json()
        assert len(points) == 1
