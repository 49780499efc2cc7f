"""Hostile uploads through a real worker process (issue 10, hostile items 2 and 8): a
decompression bomb is refused before decompressing, and failure messages name the file as
uploaded, never the server's storage path."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from fastapi.testclient import TestClient
from webtest_helpers import STUB_ENGINE, add_users, fits_bytes, make_settings

from skyphot.errors import FrameReadError
from skyphot.io.fits import read_frame
from skyphot.jobs.queue import EmbeddedQueue
from skyphot.web.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from test_fits_limits import fz_bomb

REAL_ENGINE = "skyphot.pipeline.api:measure"


def _run(tmp_path: Path, engine: str, name: str, content: bytes) -> tuple[dict[str, Any], Path]:
    settings = make_settings(tmp_path, workers=1)
    app = create_app(settings, queue=EmbeddedQueue(settings, engine=engine))
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        r = client.post("/api/sources", json={"id": "s1", "ra": 150.1, "dec": 2.2},
                        headers=alice)
        assert r.status_code == 201, r.text
        r = client.post("/api/sources/s1/image_analysis", files={"file": (name, content)},
                        headers=alice)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = client.get(f"/api/jobs/{job_id}", headers=alice).json()
            if job["state"] in ("succeeded", "failed"):
                return job, settings.upload_path
            time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end: {job}")


@pytest.fixture
def bomb(tmp_path: Path) -> Iterator[bytes]:
    yield fz_bomb(tmp_path / "bomb.fits.fz").read_bytes()


def test_fz_bomb_fails_with_the_reason_not_memory_error(tmp_path: Path, bomb: bytes) -> None:
    job, uploads = _run(tmp_path, STUB_ENGINE, "bomb.fits.fz", bomb)
    assert job["state"] == "failed"
    assert job["message"].startswith("'bomb.fits.fz': HDU 1 declares a 100000x100000 image "
                                     "(10,000,000,000 pixels), more than the 200,000,000")
    assert "max_image_pixels" in job["message"] and str(uploads) not in job["message"]


def test_truncated_frame_message_names_the_upload_not_the_server_path(tmp_path: Path) -> None:
    content = fits_bytes(shape=(64, 64))
    settings = make_settings(tmp_path, workers=1)
    app = create_app(settings, queue=EmbeddedQueue(settings, engine=REAL_ENGINE))
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        r = client.post("/api/sources", json={"id": "s1", "ra": 150.1, "dec": 2.2},
                        headers=alice)
        assert r.status_code == 201, r.text
        # Refused at upload (no job is made), in the user's words, never with the server path.
        r = client.post("/api/sources/s1/image_analysis", headers=alice,
                        files={"file": ("night1.fits", content[: len(content) - 4000])})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert message.startswith("'night1.fits' is incomplete"), message
    assert str(settings.upload_path) not in message and "/uploads/" not in message


def test_corrupt_tile_compressed_data_is_a_read_error(tmp_path: Path) -> None:
    out = io.BytesIO()
    data = np.random.default_rng(0).normal(100, 5, (64, 64)).astype(np.float32)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data)]).writeto(out)
    content = bytearray(out.getvalue())
    with fits.open(io.BytesIO(bytes(content))) as hdul:
        start = hdul.fileinfo(1)["datLoc"]
    content[start + 4:start + 8] = b"\x00\x00\x10\x00"  # a tile's byte count beyond the heap
    path = tmp_path / "corrupt.fits.fz"
    path.write_bytes(bytes(content))
    with pytest.raises(FrameReadError, match=r"corrupt\.fits\.fz: corrupt tile-compressed image "
                       r"data in HDU 1 \(COMPRESSED_IMAGE\) \(CfitsioException: decompression"):
        read_frame(path)


def test_old_uploads_are_pruned_and_retry_says_so(tmp_path: Path) -> None:
    from datetime import timedelta

    from skyphot.db.models import Job, utcnow
    from skyphot.jobs.queue import prune_old_uploads
    from skyphot.web.app import create_app as make_app

    settings = make_settings(tmp_path, upload_retention_days=2)
    app = make_app(settings)
    _, alice, _ = add_users(app)
    with TestClient(app) as client:
        assert client.post("/api/sources", json={"id": "s1", "ra": 1.0, "dec": 2.0},
                           headers=alice).status_code == 201
        ids = [client.post("/api/sources/s1/image_analysis", headers=alice,
                           files={"file": (f"f{i}.fits", fits_bytes(seed=i))}).json()["job_id"]
               for i in range(3)]
        now = utcnow()
        with app.state.sessions() as session:
            rows = [session.get(Job, i) for i in ids]
            # 0: failed 3 days ago (pruned); 1: failed 1 day ago (kept); 2: still queued.
            for row, age in zip(rows[:2], (3, 1), strict=True):
                row.state, row.finished_at = "failed", now - timedelta(days=age)
            session.commit()
            paths = [Path(r.upload_path) for r in rows]
            assert prune_old_uploads(session, settings) == 1
        assert [p.is_file() for p in paths] == [False, True, True]
        assert not paths[0].parent.parent.exists()  # its directory went too
        r = client.post(f"/api/jobs/{ids[0]}/retry", headers=alice)
        assert r.status_code == 409
        assert "upload is no longer kept" in r.json()["error"]["message"]
        assert client.post(f"/api/jobs/{ids[1]}/retry", headers=alice).status_code == 200
