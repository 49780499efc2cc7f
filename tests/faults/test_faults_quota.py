"""The upload storage quota: an upload that would exceed it gets HTTP 507 with a message
naming the quota, and leaves no file, directory or job row behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from webtest_helpers import Instance, add_users, fits_bytes, make_settings

from skyphot.db.models import Job
from skyphot.web.app import create_app
from skyphot.web.uploads import storage_used

FRAME = fits_bytes(shape=(40, 40))  # 2880-byte header + 6400 data bytes padded: 11520 bytes
QUOTA_MB = 0.02  # room for one such upload, not two


@pytest.fixture
def full(tmp_path: Path) -> Iterator[Instance]:
    settings = make_settings(tmp_path, upload_quota_mb=QUOTA_MB)
    app = create_app(settings)  # jobs stay queued: only the upload side matters here
    admin, alice, bob = add_users(app)
    with TestClient(app) as client:
        r = client.post("/api/sources", json={"id": "s1", "ra": 1, "dec": 1}, headers=alice)
        assert r.status_code == 201
        yield Instance(settings, app, client, admin, alice, bob)


def snapshot(instance: Instance) -> tuple[int, list[Path]]:
    with instance.app.state.sessions() as session:
        jobs = session.scalar(select(func.count()).select_from(Job))
    files = sorted(instance.settings.upload_path.rglob("*"))
    return int(jobs or 0), files


def assert_quota_error(response: object) -> None:
    assert getattr(response, "status_code", None) == 507
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["type"] == "UploadQuotaError"
    assert error["message"].startswith(
        "the upload storage is full: keeping this upload would exceed the quota of 0.02 MB "
        "(upload_quota_mb; 0.01 MB in use)")
    assert error["message"].endswith("ask the administrator to free space or raise "
                                     "upload_quota_mb")


def test_upload_over_the_quota_is_refused_and_leaves_nothing(full: Instance) -> None:
    assert len(FRAME) == 11520
    first = full.client.post("/api/sources/s1/image_analysis", headers=full.alice,
                             files={"file": ("a.fits", FRAME)})
    assert first.status_code == 202, first.text
    used = storage_used(full.settings.upload_path)
    assert used == len(FRAME)  # what the quota counts: the kept files
    before = snapshot(full)
    refused = full.client.post("/api/sources/s1/image_analysis", headers=full.alice,
                               files={"file": ("b.fits", fits_bytes(shape=(40, 40), seed=1))})
    assert_quota_error(refused)
    assert snapshot(full) == before  # no partial file, directory or job row


def test_quota_is_enforced_while_streaming_a_body_of_unknown_length(full: Instance) -> None:
    assert full.client.post("/api/sources/s1/image_analysis", headers=full.alice,
                            files={"file": ("a.fits", FRAME)}).status_code == 202
    before = snapshot(full)
    boundary = "quota-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"b.fits\"\r\nContent-Type: application/fits\r\n\r\n").encode() \
        + fits_bytes(shape=(40, 40), seed=2) + f"\r\n--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold mid-stream
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    refused = full.client.post(
        "/api/sources/s1/image_analysis", content=chunks(),
        headers={**full.alice, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert_quota_error(refused)
    assert snapshot(full) == before


def test_without_a_quota_uploads_are_not_limited(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.upload_quota_mb is None and settings.upload_quota_bytes is None
    app = create_app(settings)
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        client.post("/api/sources", json={"id": "s1", "ra": 1, "dec": 1}, headers=alice)
        for seed in range(3):
            r = client.post("/api/sources/s1/image_analysis", headers=alice,
                            files={"file": ("a.fits", fits_bytes(shape=(40, 40), seed=seed))})
            assert r.status_code == 202
