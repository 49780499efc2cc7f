"""`skyphot skyportal import` and `skyphot skyportal push` against the stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyphot.db.models import Photometry, Source
from skyphot.db.session import make_engine, make_sessionmaker
from skyphot.testing.skyportal import FakeSkyPortal, serve_skyportal

OBJ = "ZTF22aayaehk"


@pytest.fixture
def portal() -> Iterator[FakeSkyPortal]:
    fake = FakeSkyPortal()
    fake.add_source(OBJ, 201.3655, -14.5316, redshift=0.031, aliases=["SN 2022xyz"])
    fake.add_instrument(7, "SIMCAM-SP")
    with serve_skyportal(fake) as running:
        yield running


def cli(data: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SKYPHOT_")}
    clean["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "skyphot.cli", "skyportal", *args,
                           "--data-dir", str(data)], capture_output=True, text=True,
                          env={**clean, **(env or {})}, timeout=120)


def test_import_and_push_from_the_command_line(tmp_path: Path, portal: FakeSkyPortal) -> None:
    data = tmp_path / "data"
    done = cli(data, "import", OBJ, "--server", portal.url, "--json",
               env={"SKYPHOT_SKYPORTAL_TOKEN": portal.token})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out == {"id": OBJ, "skyportal_id": OBJ, "ra": 201.3655, "dec": -14.5316,
                   "redshift": 0.031, "name": "SN 2022xyz"}
    engine = make_engine(f"sqlite:///{data / 'skyphot.db'}")
    with make_sessionmaker(engine)() as session:
        assert session.get(Source, OBJ) is not None
        point = Photometry(source_id=OBJ, mjd=60370.2, mag=None, magerr=None,
                           limiting_mag=20.9, filter="g", instrument="SIMCAM", magsys="AB",
                           origin="skyphot")
        session.add(point)
        session.commit()
        point_id = point.id
    engine.dispose()
    (data / "config.yaml").write_text(
        f"skyportal:\n  url: {portal.url}\n  instruments: {{SIMCAM: 7}}\n", encoding="utf-8")
    env = {"SKYPHOT_SKYPORTAL_TOKEN": portal.token}
    done = cli(data, "push", str(point_id), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"point {point_id}: pushed SkyPortal id 1"
    done = cli(data, "push", str(point_id), "--json", env=env)  # again: an update
    assert json.loads(done.stdout)["skyportal_id"] == 1 and len(portal.photometry) == 1
    assert portal.photometry[1]["limiting_mag"] == 20.9 and portal.photometry[1]["mag"] is None
    done = cli(data, "push", "999", env=env)
    assert done.returncode == 1 and "photometry point 999 not found" in done.stderr


def test_import_errors_on_the_command_line(tmp_path: Path, portal: FakeSkyPortal) -> None:
    data = tmp_path / "data"
    done = cli(data, "import", "ZTF00nothing", "--server", portal.url, "--token", portal.token)
    assert done.returncode == 3 and done.stdout == ""
    assert f"SkyPortal at {portal.url} has no source 'ZTF00nothing'" in done.stderr
    done = cli(data, "import", OBJ, "--server", portal.url, "--token", "wrong")
    assert done.returncode == 5 and "refused the token (HTTP 401" in done.stderr
    done = cli(data, "import", OBJ)
    assert done.returncode == 3
    assert "SkyPortal is not configured: set skyportal.url and skyportal.token" in done.stderr
    assert "wrong" not in done.stderr
