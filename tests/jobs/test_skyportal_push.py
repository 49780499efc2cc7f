"""The SkyPortal push queue against a real database and the local SkyPortal stand-in:
states, retries with back-off, and exactly one SkyPortal point under retries and faults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from skyphot.db import crud
from skyphot.db.models import Photometry, utcnow
from skyphot.db.session import make_engine, make_sessionmaker, migrate
from skyphot.jobs import push
from skyphot.settings import Settings, load_settings
from skyphot.testing.skyportal import FakeSkyPortal, serve_skyportal

OBJ = "ZTF22aayaehk"


@pytest.fixture
def portal() -> Iterator[FakeSkyPortal]:
    fake = FakeSkyPortal(delay_s=1.2)
    fake.add_source(OBJ, 201.3655, -14.5316, redshift=0.031)
    fake.add_instrument(7, "KPED")
    with serve_skyportal(fake) as running:
        yield running


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'push.db'}")
    migrate(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def settings_for(tmp_path: Path, portal: FakeSkyPortal, **changes: Any) -> Settings:
    skyportal: dict[str, Any] = {"url": portal.url, "token": portal.token, "group_ids": [3],
                                 "instruments": {"SIMCAM": "KPED"}, "push": "manual",
                                 "timeout_s": 0.5, "backoff_s": 0.0, "max_attempts": 4}
    skyportal.update(changes)
    return load_settings(data_dir=tmp_path, env={}, overrides={"skyportal": skyportal})


def add_point(sessions: sessionmaker[Session], *, linked: bool = True,
              instrument: str = "SIMCAM", mag: float | None = 18.25) -> int:
    with sessions() as session:
        user = crud.create_user(session, "alice", "pw")
        source = crud.create_source(session, user, source_id=OBJ, ra=201.3655, dec=-14.5316)
        source.skyportal_id = OBJ if linked else None
        point = Photometry(
            source_id=OBJ, mjd=60370.25, mag=mag, magerr=0.04 if mag else None,
            limiting_mag=21.1, limit_sigma=5.0, filter="ztfr", instrument=instrument,
            magsys="AB", origin="skyphot", owner_id=user.id, job_id=5,
            calibration={"catalog": "ps1", "zero_point": 26.0, "zero_point_err": 0.012,
                         "color_term": 0.03, "target_color": 0.45,
                         "color_source": "calibrators_median", "fwhm_arcsec": 2.2,
                         "flags": 16, "flag_names": ["COLOR_ASSUMED"]})
        session.add(point)
        session.flush()
        push.mark_pending(point)
        session.commit()
        return point.id


def state(sessions: sessionmaker[Session], point_id: int) -> Photometry:
    with sessions() as session:
        point = session.get(Photometry, point_id)
        assert point is not None
        session.expunge(point)
        return point


def test_push_sends_the_point_with_its_calibration(
        tmp_path: Path, portal: FakeSkyPortal, sessions: sessionmaker[Session]) -> None:
    settings = settings_for(tmp_path, portal)
    point_id = add_point(sessions)
    assert push.run_due_pushes(sessions, settings) == 1
    point = state(sessions, point_id)
    assert point.skyportal_state == "pushed" and point.skyportal_error is None
    [body] = portal.accepted
    assert point.skyportal_id in portal.photometry
    assert body["obj_id"] == OBJ and body["instrument_id"] == 7 and body["filter"] == "ztfr"
    assert (body["mag"], body["magerr"], body["limiting_mag"]) == (18.25, 0.04, 21.1)
    assert body["magsys"] == "ab" and body["origin"] == "skyphot" and body["group_ids"] == [3]
    alt = body["altdata"]
    assert alt["zero_point"] == 26.0 and alt["zero_point_err"] == 0.012
    assert alt["color_term"] == 0.03 and alt["color_used"] == 0.45
    assert alt["flag_names"] == ["COLOR_ASSUMED"] and alt["skyphot_job_id"] == 5
    assert alt["skyphot_uid"] == point.skyportal_uid and alt["skyphot_version"]
    assert push.run_due_pushes(sessions, settings) == 0  # nothing due any more


def test_repush_updates_instead_of_posting_again(
        tmp_path: Path, portal: FakeSkyPortal, sessions: sessionmaker[Session]) -> None:
    settings = settings_for(tmp_path, portal)
    point_id = add_point(sessions)
    push.run_due_pushes(sessions, settings)
    first = state(sessions, point_id).skyportal_id
    with sessions() as session:
        point = session.get(Photometry, point_id)
        assert point is not None
        point.mag = 18.31
        push.mark_pending(point)
        session.commit()
    push.run_due_pushes(sessions, settings)
    assert state(sessions, point_id).skyportal_id == first
    assert len(portal.photometry) == 1 and portal.photometry[first]["mag"] == 18.31
    assert ("PATCH", f"/api/photometry/{first}") in portal.requests


def test_lost_answer_is_retried_without_a_second_point(
        tmp_path: Path, portal: FakeSkyPortal, sessions: sessionmaker[Session]) -> None:
    settings = settings_for(tmp_path, portal)
    point_id = add_point(sessions)
    # The first POST is stored by SkyPortal but its answer comes after the client gave up.
    portal.faults = [("POST", "timeout")]
    push.run_due_pushes(sessions, settings)
    point = state(sessions, point_id)
    assert point.skyportal_state == "pending" and point.skyportal_id is None
    assert "did not answer within 0.5 s" in (point.skyportal_error or "")
    assert len(portal.photometry) == 1
    push.run_due_pushes(sessions, settings)
    point = state(sessions, point_id)
    assert point.skyportal_state == "pushed" and point.skyportal_attempts == 2
    assert list(portal.photometry) == [point.skyportal_id]  # adopted, not posted twice
    assert [m for m, _ in portal.requests].count("POST") == 1


def test_server_errors_are_retried_with_back_off(
        tmp_path: Path, portal: FakeSkyPortal, sessions: sessionmaker[Session]) -> None:
    settings = settings_for(tmp_path, portal, backoff_s=30.0)
    point_id = add_point(sessions)
    portal.faults = [("POST", 500), ("POST", 503)]
    before = utcnow()
    push.run_due_pushes(sessions, settings)
    point = state(sessions, point_id)
    assert point.skyportal_state == "pending" and "HTTP 500" in (point.skyportal_error or "")
    assert point.skyportal_next_at is not None
    assert timedelta(seconds=29) < point.skyportal_next_at - before < timedelta(seconds=32)
    assert push.run_due_pushes(sessions, settings) == 0  # not due yet
    for expected_wait in (60.0, None):
        with sessions() as session:  # let the back-off pass
            row = session.get(Photometry, point_id)
            assert row is not None
            row.skyportal_next_at = utcnow() - timedelta(seconds=1)
            session.commit()
        before = utcnow()
        push.run_due_pushes(sessions, settings)
        point = state(sessions, point_id)
        if expected_wait is not None:  # second 5xx: the wait doubled
            assert point.skyportal_next_at is not None
            wait = (point.skyportal_next_at - before).total_seconds()
            assert expected_wait - 1 < wait < expected_wait + 2
    assert point.skyportal_state == "pushed" and point.skyportal_attempts == 3
    assert len(portal.photometry) == 1


def test_gives_up_after_max_attempts(
        tmp_path: Path, portal: FakeSkyPortal, sessions: sessionmaker[Session]) -> None:
    settings = settings_for(tmp_path, portal, max_attempts=2)
    point_id = add_point(sessions)
    portal.faults = [("POST", 502)] * 3
    push.run_due_pushes(sessions, settings)
    push.run_due_pushes(sessions, settings)
    point = state(sessions, point_id)
    assert point.skyportal_state == "failed" and "HTTP 502" in (point.skyportal_error or "")
    assert portal.photometry == {}


@pytest.mark.parametrize(("setup", "message"), [
    ("token", "refused the token (HTTP 401"),
    ("instrument", "instrument 'OTHERCAM' has no SkyPortal instrument: add it to "
                   "skyportal.instruments"),
    ("unlinked", f"source '{OBJ}' is not linked to a SkyPortal source"),
    ("unconfigured", "SkyPortal is not configured: set skyportal.url and skyportal.token"),
    ("unknown_instrument", "has no instrument named 'Nowhere'"),
])
def test_permanent_failures_are_not_retried(
        tmp_path: Path, portal: FakeSkyPortal, sessions: sessionmaker[Session], setup: str,
        message: str) -> None:
    changes: dict[str, Any] = {
        "token": {"token": "wrong"}, "unconfigured": {"url": None},
        "unknown_instrument": {"instruments": {"SIMCAM": "Nowhere"}},
    }.get(setup, {})
    settings = settings_for(tmp_path, portal, **changes)
    point_id = add_point(sessions, linked=setup != "unlinked",
                         instrument="OTHERCAM" if setup == "instrument" else "SIMCAM")
    push.run_due_pushes(sessions, settings)
    point = state(sessions, point_id)
    assert point.skyportal_state == "failed" and point.skyportal_attempts == 1
    assert message in (point.skyportal_error or ""), point.skyportal_error
    assert portal.accepted == []


def test_a_limit_goes_as_a_limit(
        tmp_path: Path, portal: FakeSkyPortal, sessions: sessionmaker[Session]) -> None:
    settings = settings_for(tmp_path, portal)
    add_point(sessions, mag=None)
    push.run_due_pushes(sessions, settings)
    [body] = portal.accepted
    assert body["mag"] is None and body["magerr"] is None and body["limiting_mag"] == 21.1


def test_a_claimed_point_is_not_pushed_twice(
        tmp_path: Path, portal: FakeSkyPortal, sessions: sessionmaker[Session]) -> None:
    settings = settings_for(tmp_path, portal)
    point_id = add_point(sessions)
    with sessions() as session:
        assert push.claim(session, point_id, stale_after_s=60)
        assert not push.claim(session, point_id, stale_after_s=60)
    assert push.run_push(sessions, point_id, settings) is None  # another worker holds it
    assert portal.accepted == []


def test_celery_sweeper_sends_due_pushes(
        tmp_path: Path, portal: FakeSkyPortal, sessions: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    celery_app = pytest.importorskip("skyphot.jobs.celery_app",
                                     reason="Celery is not installed")
    settings = settings_for(tmp_path, portal)
    point_id = add_point(sessions)
    monkeypatch.setattr(celery_app, "broker_queue_length", lambda _app, _queue: 0)
    monkeypatch.setattr(celery_app, "send_job", lambda _app, _settings, _job: None)
    sweeper = celery_app.Sweeper(celery_app.make_celery(settings), settings, lambda: sessions)
    sweeper.start()
    try:
        deadline = time.monotonic() + 20
        while state(sessions, point_id).skyportal_state != "pushed":
            assert time.monotonic() < deadline, state(sessions, point_id).skyportal_error
            time.sleep(0.1)
    finally:
        sweeper.stop()
    assert len(portal.photometry) == 1


def test_a_bug_fails_the_push_without_killing_the_worker(
        tmp_path: Path, portal: FakeSkyPortal, sessions: sessionmaker[Session],
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(tmp_path, portal)
    point_id = add_point(sessions)

    def broken(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        raise KeyError("zero_point")

    monkeypatch.setattr(push, "build_payload", broken)
    assert push.run_due_pushes(sessions, settings) == 1
    point = state(sessions, point_id)
    assert point.skyportal_state == "failed"
    assert point.skyportal_error == "internal error while pushing (KeyError: 'zero_point')"
