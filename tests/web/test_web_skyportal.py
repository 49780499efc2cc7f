"""SkyPortal through the web application: import (API, page), push state and push route,
delete in SkyPortal, settings from the environment, and `skyphot batch --push-skyportal`
end to end (real server, real worker process, the local SkyPortal stand-in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from webtest_helpers import Instance, add_users, fits_bytes, live_server, make_settings

from skyphot.db.models import Photometry
from skyphot.jobs import push
from skyphot.jobs.queue import EmbeddedQueue
from skyphot.settings import load_settings
from skyphot.testing.skyportal import FakeSkyPortal, serve_skyportal
from skyphot.web.app import create_app

OBJ = "ZTF22aayaehk"


@pytest.fixture
def portal() -> Iterator[FakeSkyPortal]:
    fake = FakeSkyPortal(delay_s=1.0)
    fake.add_source(OBJ, 201.3655, -14.5316, redshift=0.031, aliases=["SN 2022xyz"])
    fake.add_instrument(7, "SIMCAM-SP")
    with serve_skyportal(fake) as running:
        yield running


def portal_settings(portal: FakeSkyPortal, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"url": portal.url, "token": portal.token, "group_ids": [4],
                              "instruments": {"SIMCAM": "SIMCAM-SP"}, "push": "manual",
                              "timeout_s": 0.5, "backoff_s": 0.0}
    values.update(changes)
    return values


@pytest.fixture
def sp_instance(tmp_path: Path, portal: FakeSkyPortal) -> Iterator[Instance]:
    settings = make_settings(tmp_path, skyportal=portal_settings(portal))
    app = create_app(settings)
    admin, alice, bob = add_users(app)
    with TestClient(app) as client:
        yield Instance(settings, app, client, admin, alice, bob)


def add_point(instance: Instance, source: str, owner_headers: dict[str, str]) -> int:
    with instance.app.state.sessions() as session:
        point = Photometry(source_id=source, mjd=60370.2, mag=18.4, magerr=0.05,
                           limiting_mag=21.0, limit_sigma=5.0, filter="r", instrument="SIMCAM",
                           magsys="AB", origin="skyphot", owner_id=2,
                           calibration={"catalog": "ps1", "zero_point": 25.0})
        session.add(point)
        session.commit()
        return point.id


def test_import_by_skyportal_id(sp_instance: Instance, portal: FakeSkyPortal) -> None:
    r = sp_instance.client.post("/api/sources", json={"skyportal_id": OBJ},
                                headers=sp_instance.alice)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"] == OBJ and body["skyportal_id"] == OBJ
    assert (body["ra"], body["dec"], body["redshift"]) == (201.3655, -14.5316, 0.031)
    assert body["name"] == "SN 2022xyz"
    # the seed's URL works for it
    page = sp_instance.client.get(f"/source/{OBJ}/image_analysis", headers=sp_instance.alice)
    assert page.status_code == 200
    other = sp_instance.client.post("/api/sources", json={"skyportal_id": OBJ, "id": "mine"},
                                    headers=sp_instance.alice)
    assert other.status_code == 201 and other.json()["skyportal_id"] == OBJ


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"skyportal_id": "ZTF00nothing"}, 404, "has no source 'ZTF00nothing'"),
    ({"skyportal_id": OBJ, "ra": 1.0, "dec": 2.0}, 422, "give either skyportal_id or ra/dec"),
    ({"id": "x"}, 422,
     "give ra and dec, or a name to resolve (or skyportal_id to import from SkyPortal)"),
])
def test_import_errors(sp_instance: Instance, body: dict[str, Any], status: int,
                       message: str) -> None:
    r = sp_instance.client.post("/api/sources", json=body, headers=sp_instance.alice)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]


def test_import_when_skyportal_fails(sp_instance: Instance, portal: FakeSkyPortal) -> None:
    portal.faults = [503]
    r = sp_instance.client.post("/api/sources", json={"skyportal_id": OBJ},
                                headers=sp_instance.alice)
    assert r.status_code == 502
    assert "answered HTTP 503" in r.json()["error"]["message"]


def test_import_without_configuration(instance: Instance) -> None:
    r = instance.client.post("/api/sources", json={"skyportal_id": OBJ}, headers=instance.alice)
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("SkyPortal is not configured")


def test_import_from_the_new_source_page(sp_instance: Instance, portal: FakeSkyPortal) -> None:
    client = sp_instance.client
    r = client.post("/login", data={"username": "alice", "password": "alice-pass"},
                    follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/sources")
    assert 'name="skyportal_id"' in page.text
    r = client.post("/sources", data={"skyportal_id": OBJ}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/source/{OBJ}"
    r = client.post("/sources", data={"skyportal_id": "ZTF00nothing"})
    assert r.status_code == 422 and "has no source" in r.text


def test_push_state_route_and_delete(sp_instance: Instance, portal: FakeSkyPortal) -> None:
    client, alice = sp_instance.client, sp_instance.alice
    client.post("/api/sources", json={"skyportal_id": OBJ}, headers=alice)
    point_id = add_point(sp_instance, OBJ, alice)
    [row] = client.get(f"/api/sources/{OBJ}/photometry", headers=alice).json()
    assert row["skyportal"] == {"state": "off", "id": None, "error": None}
    r = client.post(f"/api/photometry/{point_id}/push", headers=alice)
    assert r.status_code == 202 and r.json()["skyportal"]["state"] == "pending"
    # the queue's workers do this in `skyphot serve`
    assert push.run_due_pushes(sp_instance.app.state.sessions, sp_instance.settings) == 1
    [row] = client.get(f"/api/sources/{OBJ}/photometry", headers=alice).json()
    assert row["skyportal"]["state"] == "pushed" and row["skyportal"]["id"] in portal.photometry
    remote = row["skyportal"]["id"]
    r = client.delete(f"/api/photometry/{point_id}?skyportal=true", headers=alice)
    assert r.status_code == 200 and r.json() == {"deleted": point_id,
                                                 "skyportal_deleted": remote}
    assert portal.photometry == {}
    r = client.post("/api/photometry/999/push", headers=alice)
    assert r.status_code == 404


def test_push_refused_for_an_unlinked_source(sp_instance: Instance) -> None:
    r = sp_instance.client.post("/api/sources", json={"id": "plain", "ra": 10.0, "dec": 1.0},
                                headers=sp_instance.alice)
    assert r.status_code == 201
    point_id = add_point(sp_instance, "plain", sp_instance.alice)
    r = sp_instance.client.post(f"/api/photometry/{point_id}/push", headers=sp_instance.alice)
    assert r.status_code == 409
    assert "is not linked to a SkyPortal source" in r.json()["error"]["message"]


def test_settings_from_environment_keep_the_token_secret(tmp_path: Path) -> None:
    env = {"SKYPHOT_SKYPORTAL_URL": "https://portal.example/", "SKYPHOT_SKYPORTAL_TOKEN": "s3",
           "SKYPHOT_SKYPORTAL_PUSH": "auto", "SKYPHOT_SKYPORTAL_GROUP_IDS": "3,7"}
    settings = load_settings(data_dir=tmp_path, env=env)
    portal = settings.skyportal
    assert portal.url == "https://portal.example" and portal.push == "auto"
    assert portal.group_ids == [3, 7] and portal.token is not None
    assert portal.token.get_secret_value() == "s3"
    assert "s3" not in repr(settings) and "s3" not in settings.model_dump_json()
    assert settings.for_process()["skyportal"]["token"] == "s3"
    from skyphot.errors import ConfigError
    with pytest.raises(ConfigError, match=r"'skyportal\.push' is invalid"):
        load_settings(data_dir=tmp_path, env={"SKYPHOT_SKYPORTAL_PUSH": "sometimes"})
    with pytest.raises(ConfigError, match="must start with http"):
        load_settings(data_dir=tmp_path, env={"SKYPHOT_SKYPORTAL_URL": "portal.example"})


# --- end to end ---------------------------------------------------------------------------


def test_batch_push_skyportal_end_to_end(tmp_path: Path, portal: FakeSkyPortal) -> None:
    """Auto push after each job, then `batch --push-skyportal` re-pushes: SkyPortal ends with
    exactly one point per frame, with full altdata, despite a 503 and a lost answer."""
    settings = make_settings(tmp_path, workers=1,
                             skyportal=portal_settings(portal, push="auto"))
    app = create_app(settings, queue=EmbeddedQueue(settings, engine="stub_engine:measure"))
    _, alice, _ = add_users(app)
    frames = tmp_path / "night"
    frames.mkdir()
    (frames / "a.fits").write_bytes(fits_bytes(mag=18.3, seed=1))
    (frames / "b.fits").write_bytes(fits_bytes(mag=-1.0, seed=2, date="2024-03-02T02:00:00"))
    portal.faults = [("POST", 503), ("POST", "timeout")]
    with live_server(app) as url:
        r = httpx.post(f"{url}/api/sources", json={"skyportal_id": OBJ}, headers=alice)
        assert r.status_code == 201, r.text
        env = {**os.environ, "SKYPHOT_TOKEN": alice["Authorization"].split()[1]}
        done = subprocess.run(
            [sys.executable, "-m", "skyphot.cli", "batch", str(frames), "--source", OBJ,
             "--url", url, "--push-skyportal", "--json", "--poll-interval", "0.3",
             "--timeout", "60"],
            capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    states = {Path(f["file"]).name: f for f in report["files"]}
    assert {f["skyportal_state"] for f in states.values()} == {"pushed"}
    assert len(portal.photometry) == 2  # one per frame, whatever the retries
    assert {f["skyportal_id"] for f in states.values()} == set(portal.photometry)
    posts = [m for m, p in portal.requests if m == "POST" and p == "/api/photometry"]
    # the 503, the lost answer (stored, then found and adopted), the other frame's point
    assert len(posts) == 3
    patches = [p for m, p in portal.requests if m == "PATCH"]
    # the adopted point is updated, never posted again (how many more updates depends on
    # whether the auto push had ended when batch asked again)
    assert patches and all(p.removeprefix("/api/photometry/").isdigit() for p in patches)
    by_mag = {bool(v["mag"]): v for v in portal.photometry.values()}
    detection, limit = by_mag[True], by_mag[False]
    assert detection["mag"] == 18.3 and detection["magerr"] == 0.021
    assert limit["mag"] is None and limit["magerr"] is None and limit["limiting_mag"] == 21.5
    for body in (detection, limit):
        assert body["filter"] == "sdssr" and body["magsys"] == "ab"
        assert body["instrument_id"] == 7 and body["group_ids"] == [4]
        alt = body["altdata"]
        assert alt["zero_point"] == 25.0 and alt["zero_point_err"] == 0.01
        assert alt["color_term"] == 0.08 and alt["fwhm_arcsec"] == 2.1
        assert alt["catalog"] == "auto" and alt["skyphot_job_id"] is not None
    assert "SkyPortal: pushed" in done.stderr or "SkyPortal:" in done.stderr
