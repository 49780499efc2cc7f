"""SQLite: concurrent uploads introducing new instruments (issue 10, hostile item 9)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from webtest_helpers import STUB_ENGINE, add_users, fits_bytes, make_settings

from skyphot.jobs.queue import EmbeddedQueue
from skyphot.web.app import create_app


@pytest.mark.slow
def test_concurrent_new_instruments_on_sqlite_run_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, workers=2, database_url=None)
    app = create_app(settings, queue=EmbeddedQueue(settings, engine=STUB_ENGINE))
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        r = client.post("/api/sources", json={"id": "s1", "ra": 150.1, "dec": 2.2},
                        headers=alice)
        assert r.status_code == 201
        ids = []
        for pair in range(8):
            for k in range(2):
                content = fits_bytes(instrument=f"CAM{pair}", seed=10 * pair + k)
                r = client.post("/api/sources/s1/image_analysis", headers=alice,
                                files={"file": (f"f{pair}{k}.fits", content)})
                assert r.status_code == 202, r.text
                ids.append(r.json()["job_id"])
        deadline = time.monotonic() + 90
        jobs = {}
        while time.monotonic() < deadline:
            jobs = {i: client.get(f"/api/jobs/{i}", headers=alice).json() for i in ids}
            if all(j["state"] in ("succeeded", "failed") for j in jobs.values()):
                break
            time.sleep(0.2)
    assert all(j["state"] == "succeeded" for j in jobs.values()), jobs
    assert [j["attempts"] for j in jobs.values()] == [1] * len(ids)
    logs = "".join((settings.jobs_path / str(i) / "job.log").read_text() for i in ids)
    assert "handing the job back" not in logs
