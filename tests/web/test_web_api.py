"""The JSON API against a fresh SQLite instance; no workers (jobs stay queued)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from webtest_helpers import Instance, fits_bytes, make_settings

from skyphot.db.models import Job, Photometry
from skyphot.web.app import create_app


def error_of(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"type", "message"} <= set(body["error"]), body
    return body["error"]


def upload(instance: Instance, source: str, content: bytes, *, name: str = "frame.fits",
           headers: dict[str, str] | None = None, **fields: str):  # type: ignore[no-untyped-def]
    return instance.client.post(
        f"/api/sources/{source}/image_analysis", files={"file": (name, content)},
        data=fields, headers=headers if headers is not None else instance.alice)


def count(instance: Instance, model: type) -> int:
    with instance.app.state.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def upload_files(instance: Instance) -> list[Path]:
    return [p for p in instance.settings.upload_path.rglob("*") if p.is_file()]


def test_create_and_get_source(instance: Instance, source: str) -> None:
    r = instance.client.get(f"/api/sources/{source}", headers=instance.alice)
    assert r.status_code == 200
    body = r.json()
    assert body["ra"] == 150.1 and body["dec"] == 2.2 and body["name"] == "test SN"
    assert "ztf" in body["groups"]
    listed = instance.client.get("/api/sources?q=2024", headers=instance.alice).json()
    assert [s["id"] for s in listed] == [source]


def test_duplicate_source_is_409(instance: Instance, source: str) -> None:
    r = instance.client.post("/api/sources", json={"id": source, "ra": 1, "dec": 1},
                             headers=instance.alice)
    assert r.status_code == 409
    assert "already exists" in error_of(r)["message"]


def test_invalid_source_body_names_the_field(instance: Instance) -> None:
    r = instance.client.post("/api/sources", json={"id": "x", "ra": 400, "dec": 0},
                             headers=instance.alice)
    assert r.status_code == 422
    err = error_of(r)
    assert err["field"] == "ra" and "less than 360" in err["message"]


def test_no_token_is_401(instance: Instance, source: str) -> None:
    r = instance.client.get(f"/api/sources/{source}")
    assert r.status_code == 401
    assert "authentication required" in error_of(r)["message"]
    r = instance.client.get(f"/api/sources/{source}", headers={"Authorization": "token nope"})
    assert r.status_code == 401
    assert "not valid" in error_of(r)["message"]
    r = instance.client.get(f"/api/sources/{source}", headers={"Authorization": "Bearer x"})
    assert r.status_code == 401
    assert "malformed Authorization header" in error_of(r)["message"]


def test_unknown_source_is_404(instance: Instance) -> None:
    r = instance.client.get("/api/sources/nothing", headers=instance.alice)
    assert r.status_code == 404
    assert error_of(r)["message"] == "source 'nothing' not found (or not shared with you)"
    r = upload(instance, "nothing", fits_bytes())
    assert r.status_code == 404
    assert upload_files(instance) == []


def test_other_groups_source_is_hidden(instance: Instance, source: str) -> None:
    for path in (f"/api/sources/{source}", f"/api/sources/{source}/photometry"):
        r = instance.client.get(path, headers=instance.bob)
        assert r.status_code == 404
        assert "not shared with you" in error_of(r)["message"]
    assert instance.client.get("/api/sources", headers=instance.bob).json() == []
    r = upload(instance, source, fits_bytes(), headers=instance.bob)
    assert r.status_code == 404
    # the admin sees everything
    assert instance.client.get(f"/api/sources/{source}", headers=instance.admin).status_code == 200


def test_source_in_a_foreign_group_is_403(instance: Instance) -> None:
    r = instance.client.post("/api/sources", json={"id": "x1", "ra": 1, "dec": 1,
                                                   "groups": ["other"]}, headers=instance.alice)
    assert r.status_code == 403
    assert error_of(r)["message"] == "you are not a member of group(s) other"


def test_upload_creates_a_queued_job(instance: Instance, source: str) -> None:
    r = upload(instance, source, fits_bytes(), filter="r", nsigma="3", target_color="0.4",
               obstime="2024-03-01T02:00:30")
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    job = instance.client.get(f"/api/jobs/{job_id}", headers=instance.alice).json()
    assert job["state"] == "queued" and job["filename"] == "frame.fits"
    assert job["params"]["nsigma"] == 3.0 and job["params"]["target_color"] == 0.4
    assert job["params"]["engine"] == "skyphot"
    assert abs(job["params"]["mjd"] - 60370.0836806) < 1e-6
    assert len(upload_files(instance)) == 1
    # another group cannot see the job
    r = instance.client.get(f"/api/jobs/{job_id}", headers=instance.bob)
    assert r.status_code == 404
    assert error_of(r)["message"] == f"job {job_id} not found"


def test_oversized_upload_is_413_and_leaves_nothing(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from webtest_helpers import add_users

    settings = make_settings(tmp_path, max_body_size=0.01)  # 10 kB
    app = create_app(settings)
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        client.post("/api/sources", json={"id": "s1", "ra": 1, "dec": 1}, headers=alice)
        big = fits_bytes(shape=(64, 64))  # ~20 kB
        r = client.post("/api/sources/s1/image_analysis", files={"file": ("big.fits", big)},
                        headers=alice)
        assert r.status_code == 413
        assert error_of(r)["message"].startswith(
            "the upload is larger than the limit of 0.01 MB (max_body_size)")
        assert [p for p in settings.upload_path.rglob("*") if p.is_file()] == []
        with app.state.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_oversized_streamed_upload_without_length_is_413(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from webtest_helpers import add_users

    settings = make_settings(tmp_path, max_body_size=0.01)
    app = create_app(settings)
    _, alice, _ = add_users(app)
    boundary = "XyZ"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.fits\"\r\n\r\n").encode()

    def body():  # type: ignore[no-untyped-def]
        yield head
        for _ in range(40):
            yield b"\0" * 1000  # 40 kB of "file", no Content-Length header: chunked
        yield f"\r\n--{boundary}--\r\n".encode()

    with TestClient(app) as client:
        client.post("/api/sources", json={"id": "s1", "ra": 1, "dec": 1}, headers=alice)
        r = client.post("/api/sources/s1/image_analysis", content=body(),
                        headers={**alice,
                                 "Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 413
        assert "max_body_size" in error_of(r)["message"]
        assert [p for p in settings.upload_path.rglob("*") if p.is_file()] == []


def test_upload_field_errors(instance: Instance, source: str) -> None:
    r = upload(instance, source, fits_bytes(), name="frame.png")
    assert r.status_code == 422
    err = error_of(r)
    assert err["field"] == "file" and "unsupported type" in err["message"]
    r = upload(instance, source, fits_bytes(), nsigma="4")
    assert r.status_code == 422
    assert error_of(r) == {"type": "FieldError", "field": "nsigma",
                           "message": "detection threshold must be 3 or 5 (sigma)"}
    r = upload(instance, source, fits_bytes(), obstime="yesterday")
    assert error_of(r)["field"] == "obstime"
    assert "neither ISO UTC" in error_of(r)["message"]
    r = upload(instance, source, fits_bytes(), gain="-2")
    assert error_of(r) == {"type": "FieldError", "field": "gain",
                           "message": "gain must be a positive number"}
    r = instance.client.post(f"/api/sources/{source}/image_analysis", data={"filter": "r"},
                             files={"other": ("x.txt", b"abc")}, headers=instance.alice)
    assert r.status_code == 422
    assert error_of(r)["message"] == "field 'other' does not take a file"
    r = instance.client.post(f"/api/sources/{source}/image_analysis", data={"filter": "r"},
                             headers=instance.alice)
    assert r.status_code == 400
    assert "multipart/form-data" in error_of(r)["message"]
    assert upload_files(instance) == [] and count(instance, Job) == 0


def test_filter_must_belong_to_the_chosen_instrument(instance: Instance, source: str) -> None:
    r = instance.client.post("/api/instruments", json={"name": "LCO-1m", "filters": ["g", "r"]},
                             headers=instance.alice)
    assert r.status_code == 201
    r = upload(instance, source, fits_bytes(), instrument="LCO-1m", filter="Ha")
    assert r.status_code == 422
    assert error_of(r)["message"].startswith("filter 'Ha' is not one of LCO-1m's filters (g, r)")
    r = instance.client.post("/api/instruments", json={"name": "lco-1m"}, headers=instance.alice)
    assert r.status_code == 409
    assert error_of(r)["message"] == "instrument 'lco-1m' already exists"


def test_fits_inspect_reads_the_header(instance: Instance) -> None:
    r = instance.client.post("/api/fits/inspect", files={"file": ("f.fits", fits_bytes())},
                             headers=instance.alice)
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["filter"] == "r" and info["instrument"] == "SIMCAM"
    assert info["obstime"] == "2024-03-01T02:00:00.000"
    assert abs(info["mjd_mid"] - (60370.0833333 + 30 / 86400)) < 1e-6
    r = instance.client.post("/api/fits/inspect", files={"file": ("f.fits", b"not a fits")},
                             headers=instance.alice)
    assert r.status_code == 400
    assert "'f.fits': not a FITS file" in error_of(r)["message"]
    assert upload_files(instance) == []


def test_photometry_listing_csv_and_delete(instance: Instance, source: str) -> None:
    with instance.app.state.sessions() as session:
        alice_id = instance.client.get("/api/sources", headers=instance.alice)  # warm
        del alice_id
        from skyphot.db.crud import get_user

        owner = get_user(session, "alice")
        assert owner is not None
        session.add_all([
            Photometry(source_id=source, mjd=60000.5, mag=18.2, magerr=0.05, limiting_mag=21.0,
                       limit_sigma=5, flux=190.5, fluxerr=8.8, snr=21.7, filter="r",
                       instrument="SIMCAM", origin="skyphot", owner_id=owner.id, job_id=7,
                       calibration={"catalog": "ps1", "zero_point": 25.1, "color_term": 0.08,
                                    "fwhm_arcsec": 1.9}),
            Photometry(source_id=source, mjd=60001.5, mag=None, magerr=None, limiting_mag=20.5,
                       limit_sigma=3, flux=1.0, fluxerr=2.0, snr=0.5, filter="g",
                       origin="manual", owner_id=None),
        ])
        session.commit()
    points = instance.client.get(f"/api/sources/{source}/photometry",
                                 headers=instance.alice).json()
    assert [p["mjd"] for p in points] == [60000.5, 60001.5]
    assert points[0]["iso"] == "2023-02-25T12:00:00"
    assert points[1]["mag"] is None and points[1]["limiting_mag"] == 20.5
    assert points[0]["can_delete"] and not points[1]["can_delete"]
    csv = instance.client.get(f"/api/sources/{source}/photometry?format=csv",
                              headers=instance.alice)
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("id,mjd,iso,mag,magerr,limiting_mag")
    assert ",ps1,25.1,0.08,1.9" in lines[1]
    r = instance.client.delete(f"/api/photometry/{points[1]['id']}", headers=instance.alice)
    assert r.status_code == 403
    assert error_of(r)["message"] == (
        "only the owner of a photometry point or an admin may delete it")
    r = instance.client.delete(f"/api/photometry/{points[0]['id']}", headers=instance.bob)
    assert r.status_code == 404
    r = instance.client.delete(f"/api/photometry/{points[0]['id']}", headers=instance.alice)
    assert r.status_code == 200 and r.json() == {"deleted": points[0]["id"]}
    r = instance.client.delete(f"/api/photometry/{points[1]['id']}", headers=instance.admin)
    assert r.status_code == 200
    r = instance.client.delete("/api/photometry/999", headers=instance.admin)
    assert r.status_code == 404
    assert error_of(r)["message"] == "photometry point 999 not found"


def test_retry_only_failed_jobs(instance: Instance, source: str) -> None:
    job_id = upload(instance, source, fits_bytes()).json()["job_id"]
    r = instance.client.post(f"/api/jobs/{job_id}/retry", headers=instance.alice)
    assert r.status_code == 409
    assert error_of(r)["message"] == f"job {job_id} is queued; only failed jobs can be retried"


def test_feature_flag_off_removes_endpoint_and_page(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from webtest_helpers import add_users

    app = create_app(make_settings(tmp_path, image_analysis=False))
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        client.post("/api/sources", json={"id": "s1", "ra": 1, "dec": 1}, headers=alice)
        r = client.post("/api/sources/s1/image_analysis", files={"file": ("f.fits", b"x")},
                        headers=alice)
        assert r.status_code == 404
        assert error_of(r) == {"type": "HTTPError", "message": "Not Found"}
        client.post("/login", data={"username": "alice", "password": "alice-pass"})
        page = client.get("/source/s1")
        assert page.status_code == 200 and "Image Analysis" not in page.text
        assert client.get("/source/s1/image_analysis").status_code == 404


def test_events_stream_reports_job_changes(instance: Instance, source: str) -> None:
    job_id = upload(instance, source, fits_bytes()).json()["job_id"]
    instance.app.state.event_interval = 0.05
    with instance.client.stream("GET", "/api/events?max_seconds=0.3",
                                headers=instance.alice) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    assert "event: job" in text and f'"id": {job_id}' in text and '"state": "queued"' in text
    with instance.client.stream("GET", "/api/events?max_seconds=0.2", headers=instance.bob) as r:
        assert "event: job" not in "".join(r.iter_text())


def test_admin_creates_accounts(instance: Instance, source: str) -> None:
    body = {"username": "dave", "password": "long-password", "groups": ["ztf"]}
    r = instance.client.post("/api/users", json=body, headers=instance.alice)
    assert r.status_code == 403
    assert error_of(r)["message"] == "only an admin may create accounts"
    r = instance.client.post("/api/users", json={**body, "password": "short"},
                             headers=instance.admin)
    assert r.status_code == 422 and error_of(r)["field"] == "password"
    r = instance.client.post("/api/users", json=body, headers=instance.admin)
    assert r.status_code == 201
    created = r.json()
    assert created["groups"] == ["user:dave", "ztf"]
    dave = {"Authorization": f"token {created['token']}"}
    assert instance.client.get(f"/api/sources/{source}", headers=dave).status_code == 200
    r = instance.client.post("/api/users", json=body, headers=instance.admin)
    assert r.status_code == 409
    assert error_of(r)["message"] == "user 'dave' already exists"


def test_engine_choice_is_validated_and_kept(instance: Instance, source: str) -> None:
    r = upload(instance, source, fits_bytes(), engine="stdpipe", pixel_scale="0.6")
    assert r.status_code == 202, r.text
    job = instance.client.get(f"/api/jobs/{r.json()['job_id']}", headers=instance.alice).json()
    assert job["params"]["engine"] == "stdpipe"
    assert job["params"]["pixel_scale"] == 0.6
    r = upload(instance, source, fits_bytes(), engine="magic")
    assert r.status_code == 422
    assert error_of(r)["field"] == "engine"
    assert "engine must be one of skyphot, stdpipe" in error_of(r)["message"]


def test_start_page_redirects_to_the_sources(instance: Instance) -> None:
    r = instance.client.get("/", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/sources"


def test_info_needs_no_login_and_reports_the_upload_limit(instance: Instance) -> None:
    from skyphot import __version__

    r = instance.client.get("/api/info")
    assert r.status_code == 200
    body = r.json()
    assert body["version"] == __version__
    assert body["image_analysis"] is True
    assert body["max_body_size"] > 0
    assert body["database"] == "ok"


def test_template_choice_and_uploaded_template_are_kept(instance: Instance, source: str) -> None:
    from skyphot.db.models import Job as JobModel
    from skyphot.db.models import Source
    from skyphot.jobs.runner import build_config

    r = upload(instance, source, fits_bytes(), template="auto")
    assert r.status_code == 202, r.text
    job = instance.client.get(f"/api/jobs/{r.json()['job_id']}", headers=instance.alice).json()
    assert job["params"]["template"] == "auto"
    r = instance.client.post(
        f"/api/sources/{source}/image_analysis",
        files={"file": ("frame.fits", fits_bytes()), "template_file": ("ref.fits.gz", b"x" * 99)},
        headers=instance.alice,
    )
    assert r.status_code == 202, r.text
    with instance.app.state.sessions() as session:
        stored = session.get(JobModel, r.json()["job_id"])
        assert stored is not None
        params = stored.params
        assert params["template"] == "file" and Path(params["template_file"]).is_file()
        src = session.get(Source, stored.source_id)
        assert src is not None
        config = build_config(stored, src, instance.settings, gain=None, saturation=None)
    assert config.subtraction.template == params["template_file"]


def test_template_field_errors(instance: Instance, source: str) -> None:
    before = upload_files(instance)
    r = upload(instance, source, fits_bytes(), template="sometimes")
    assert r.status_code == 422
    err = error_of(r)
    assert err["field"] == "template" and "must be one of none, auto" in err["message"]
    r = instance.client.post(
        f"/api/sources/{source}/image_analysis", data={"template": "auto"},
        files={"file": ("frame.fits", fits_bytes()), "template_file": ("ref.fits", b"x" * 99)},
        headers=instance.alice,
    )
    assert r.status_code == 422
    assert error_of(r)["field"] == "template"
    assert upload_files(instance) == before  # a refused upload keeps no file


def test_settings_hash_tells_subtracted_from_plain() -> None:
    from skyphot.jobs.store import settings_hash

    plain = {"filter": "r", "nsigma": 5.0}
    assert settings_hash(plain) == settings_hash({**plain, "template": "none"})
    assert settings_hash(plain) != settings_hash({**plain, "template": "auto"})
    a = {**plain, "template": "file", "template_file_hash": "a" * 64}
    b = {**plain, "template": "file", "template_file_hash": "b" * 64}
    assert settings_hash(a) != settings_hash(b)
