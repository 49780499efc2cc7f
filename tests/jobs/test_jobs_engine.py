"""End to end with the real engine: a simulated frame uploaded with its reference catalog
is measured by a real worker process; the point lands within the errors of the truth."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient
from webtest_helpers import add_users, make_settings

from skyphot.jobs.queue import EmbeddedQueue
from skyphot.testing import SimulationParams, simulate_frame
from skyphot.web.app import create_app


def test_real_job_end_to_end(tmp_path: Path) -> None:
    frame = simulate_frame(SimulationParams(target_mag=17.0), seed=3)
    paths = frame.write(tmp_path / "sim", stem="frame")
    truth = frame.truth
    assert truth is not None
    settings = make_settings(tmp_path, workers=1)
    app = create_app(settings, queue=EmbeddedQueue(settings))
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        client.post("/api/sources", json={"id": "sim", "ra": truth.ra, "dec": truth.dec},
                    headers=alice)
        with Path(paths.image).open("rb") as image, Path(paths.catalog).open("rb") as cat:
            r = client.post("/api/sources/sim/image_analysis", headers=alice,
                            files={"file": ("frame.fits", image),
                                   "catalog_file": ("frame_catalog.ecsv", cat)},
                            data={"target_color": str(truth.color)})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = client.get(f"/api/jobs/{job_id}", headers=alice).json()
            if job["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.2)
        assert job["state"] == "succeeded", job
        (point,) = client.get("/api/sources/sim/photometry", headers=alice).json()
        assert point["origin"] == "skyphot" and point["job_id"] == job_id
        assert abs(point["mag"] - truth.mag) < 4 * point["magerr"] + 0.01
        assert abs(point["mjd"] - truth.mjd_mid) < 1e-5
        assert point["calibration"]["zero_point"] is not None
        assert client.get(f"/api/jobs/{job_id}/diagnostics.png", headers=alice).status_code == 200


def _wait(client: TestClient, job_id: str, headers: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 120
    job: dict[str, object] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    return job


def test_real_job_with_an_uploaded_template(tmp_path: Path) -> None:
    from skyphot.testing.galaxy import HostComponent
    from skyphot.testing.template import simulate_template

    hosts = (HostComponent(mag=16.8, r_eff_arcsec=3.0, offset_arcsec=(1.0, 1.0)),)
    frame = simulate_frame(
        SimulationParams(target_mag=19.0, hosts=hosts, target_xy=(400.0, 300.0)), seed=5
    )
    paths = frame.write(tmp_path / "sim", stem="frame")
    template = simulate_template(frame, seed=6).write(tmp_path / "sim", stem="ref").image
    truth = frame.truth
    settings = make_settings(tmp_path, workers=1)
    app = create_app(settings, queue=EmbeddedQueue(settings))
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        client.post("/api/sources", json={"id": "sn", "ra": truth.ra, "dec": truth.dec},
                    headers=alice)
        with Path(paths.image).open("rb") as image, Path(paths.catalog).open("rb") as cat, \
                Path(template).open("rb") as ref:
            r = client.post("/api/sources/sn/image_analysis", headers=alice,
                            files={"file": ("frame.fits", image),
                                   "catalog_file": ("frame_catalog.ecsv", cat),
                                   "template_file": ("ref.fits", ref)},
                            data={"target_color": str(truth.color)})
        assert r.status_code == 202, r.text
        job = _wait(client, r.json()["job_id"], alice)
        assert job["state"] == "succeeded", job
        (point,) = client.get("/api/sources/sn/photometry", headers=alice).json()
        # measured on the difference image: the host's light is gone
        assert abs(point["mag"] - truth.mag) < 4 * point["magerr"] + 0.01


def test_job_with_a_template_off_the_field_fails_with_the_reason_and_keeps_files(
    tmp_path: Path,
) -> None:
    from skyphot.testing.template import TemplateParams, simulate_template

    frame = simulate_frame(SimulationParams(target_mag=18.0, target_xy=(400.0, 300.0)), seed=7)
    paths = frame.write(tmp_path / "sim", stem="frame")
    far = simulate_template(frame, TemplateParams(pointing_offset_arcsec=(1500.0, 0.0)), seed=8)
    template = far.write(tmp_path / "sim", stem="far").image
    truth = frame.truth
    settings = make_settings(tmp_path, workers=1)
    app = create_app(settings, queue=EmbeddedQueue(settings))
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        client.post("/api/sources", json={"id": "sn", "ra": truth.ra, "dec": truth.dec},
                    headers=alice)
        with Path(paths.image).open("rb") as image, Path(paths.catalog).open("rb") as cat, \
                Path(template).open("rb") as ref:
            r = client.post("/api/sources/sn/image_analysis", headers=alice,
                            files={"file": ("frame.fits", image),
                                   "catalog_file": ("frame_catalog.ecsv", cat),
                                   "template_file": ("far.fits", ref)})
        assert r.status_code == 202, r.text
        job = _wait(client, r.json()["job_id"], alice)
        assert job["state"] == "failed", job
        assert "does not cover the target" in str(job["message"])
        # both files stay for a retry with another template or settings
        kept = {p.name for p in settings.upload_path.rglob("*") if p.is_file()}
        assert any(name.endswith("frame.fits") for name in kept), kept
        assert any(name.endswith("far.fits") for name in kept), kept
