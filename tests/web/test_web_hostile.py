"""Hostile requests against a real server on loopback (issue 10, hostile items 6-8, 10)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from webtest_helpers import add_users, fits_bytes, live_server, make_settings

from skyphot.db.models import Job, Photometry
from skyphot.web.app import create_app
from skyphot.web.uploads import safe_filename


@dataclass
class Live:
    url: str
    http: httpx.Client
    alice: dict[str, str]
    bob: dict[str, str]
    app: object


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    app = create_app(make_settings(tmp_path))
    _, alice, bob = add_users(app)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/api/sources", json={"id": "s1", "ra": 150.1, "dec": 2.2},
                      headers=alice)
        assert r.status_code == 201, r.text
        yield Live(url, http, alice, bob, app)


def _error(r: httpx.Response, status: int) -> dict[str, str]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.text
    return dict(r.json()["error"])


@pytest.mark.parametrize("path", ["/api/jobs/{}", "/api/jobs/{}/log",
                                  "/api/jobs/{}/diagnostics.png"])
def test_huge_ids_give_json_422_not_plain_500(live: Live, path: str) -> None:
    for value in (2**31, 2**63, 2**64 + 5):
        error = _error(live.http.get(path.format(value), headers=live.alice), 422)
        assert error["field"] == "job_id"
    error = _error(live.http.post(f"/api/jobs/{2**63}/retry", headers=live.alice), 422)
    assert error["field"] == "job_id"
    error = _error(live.http.delete(f"/api/photometry/{2**63}", headers=live.alice), 422)
    assert error["field"] == "photometry_id"
    # The largest valid id is simply not found.
    assert _error(live.http.get(f"/api/jobs/{2**31 - 1}", headers=live.alice), 404)


def _failed_job(live: Live) -> int:
    r = live.http.post("/api/sources/s1/image_analysis", headers=live.alice,
                       files={"file": ("frame.fits", fits_bytes())})
    assert r.status_code == 202, r.text
    job_id = int(r.json()["job_id"])
    with live.app.state.sessions() as session:  # type: ignore[attr-defined]
        job = session.get(Job, job_id)
        job.state, job.message, job.attempts = "failed", "stub failure", 3
        session.commit()
    return job_id


@pytest.mark.parametrize(("body", "message"), [
    ('{"nsigma": 7}', "detection threshold must be 3 or 5"),
    ('{"nsigma": -1}', "detection threshold must be 3 or 5"),
    ('{"nsigma": NaN}', "nsigma must be a number"),
    ('{"nsigma": Infinity}', "nsigma must be a number"),
    ('{"obstime": "yesterday"}', "is neither ISO UTC"),
])
def test_retry_is_validated_like_an_upload(live: Live, body: str, message: str) -> None:
    job_id = _failed_job(live)
    r = live.http.post(f"/api/jobs/{job_id}/retry", content=body,
                       headers={**live.alice, "Content-Type": "application/json"})
    error = _error(r, 422)
    assert message in error["message"]
    assert live.http.get(f"/api/jobs/{job_id}", headers=live.alice).json()["state"] == "failed"


def test_valid_retry_starts_a_new_series_of_attempts(live: Live) -> None:
    job_id = _failed_job(live)
    r = live.http.post(f"/api/jobs/{job_id}/retry", json={"nsigma": 3},
                       headers=live.alice)
    assert r.status_code == 200, r.text
    job = r.json()
    assert (job["state"], job["attempts"], job["params"]["nsigma"]) == ("queued", 0, 3.0)


def test_deleting_a_hidden_point_does_not_name_its_source(live: Live) -> None:
    with live.app.state.sessions() as session:  # type: ignore[attr-defined]
        point = Photometry(source_id="s1", mjd=60000.0, mag=18.0, magerr=0.1, filter="r",
                           magsys="AB", origin="test", owner_id=1)
        session.add(point)
        session.commit()
        point_id = point.id
    error = _error(live.http.delete(f"/api/photometry/{point_id}", headers=live.bob), 404)
    assert error["message"] == f"photometry point {point_id} not found"
    missing = _error(live.http.delete("/api/photometry/999999", headers=live.bob), 404)
    assert missing["message"] == "photometry point 999999 not found"


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN"])
def test_infinite_redshift_is_refused(live: Live, value: str) -> None:
    body = f'{{"id": "s2", "ra": 1.0, "dec": 2.0, "redshift": {value}}}'
    r = live.http.post("/api/sources", content=body,
                       headers={**live.alice, "Content-Type": "application/json"})
    error = _error(r, 422)
    assert error["field"] == "redshift"
    assert live.http.get("/api/sources/s2", headers=live.alice).status_code == 404


def test_long_file_names_keep_their_type(live: Live) -> None:
    name = "x" * 300 + ".fits.fz"
    assert safe_filename(name) == "x" * 192 + ".fits.fz"
    assert safe_filename("y" * 300 + ".FITS") == "y" * 195 + ".FITS"
    r = live.http.post("/api/sources/s1/image_analysis", headers=live.alice,
                       files={"file": ("z" * 300 + ".fits", fits_bytes())})
    assert r.status_code == 202, r.text
    job = live.http.get(f"/api/jobs/{r.json()['job_id']}", headers=live.alice).json()
    assert job["filename"] == "z" * 195 + ".fits"
    assert json.dumps(job)  # plain JSON all the way


def test_identical_uploads_are_kept_once(live: Live, tmp_path: Path) -> None:
    content = fits_bytes(seed=42)
    ids = []
    for name in ("a.fits", "b.fits", "a.fits"):
        r = live.http.post("/api/sources/s1/image_analysis", headers=live.alice,
                           files={"file": (name, content)})
        assert r.status_code == 202, r.text
        ids.append(r.json()["job_id"])
    r = live.http.post("/api/sources/s1/image_analysis", headers=live.alice,
                       files={"file": ("c.fits", fits_bytes(seed=43))})
    assert r.status_code == 202, r.text
    with live.app.state.sessions() as session:  # type: ignore[attr-defined]
        paths = [session.get(Job, i).upload_path for i in ids]
        other = session.get(Job, r.json()["job_id"]).upload_path
    assert len(set(paths)) == 1 and other != paths[0]
    uploads = live.app.state.settings.upload_path  # type: ignore[attr-defined]
    stored = sorted(p for p in uploads.rglob("*.fits") if "inspect" not in p.parts)
    assert stored == sorted({Path(paths[0]), Path(other)})
    assert [d for d in uploads.iterdir() if d.is_dir() and not any(d.iterdir())] == []
    names = [live.http.get(f"/api/jobs/{i}", headers=live.alice).json()["filename"]
             for i in ids]
    assert names == ["a.fits", "b.fits", "a.fits"]  # each job keeps the name it was given


def test_inspect_refuses_an_oversized_header_quickly(live: Live) -> None:
    import io
    import time

    from astropy.io import fits

    from skyphot.io.fits_limits import MAX_HEADER_CARDS

    header = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0)])
    for i in range(MAX_HEADER_CARDS + 5000):
        header.append(("HISTORY", f"step {i}"), end=True)
    out = io.BytesIO()
    fits.PrimaryHDU(header=header).writeto(out)
    start = time.monotonic()
    r = live.http.post("/api/fits/inspect", headers=live.alice,
                       files={"file": ("long.fits", out.getvalue())})
    elapsed = time.monotonic() - start
    assert r.status_code in (400, 422), r.text
    assert f"more than {MAX_HEADER_CARDS} cards" in r.json()["error"]["message"]
    assert elapsed < 5, elapsed  # refused before astropy parses it
