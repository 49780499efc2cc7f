"""`skyphot admin-token` and `skyphot serve --demo` through the `skyphot` command."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from skyphot.cli import EXIT_BAD_INPUT, main


def test_admin_token_is_created_once_and_works(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin-token", "--data-dir", str(tmp_path)]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["admin-token", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == first and len(first) > 30
    assert (tmp_path / "admin_token").stat().st_mode & 0o077 == 0


def test_admin_token_reports_bad_config(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.yaml").write_text("workers: -3\n")
    assert main(["admin-token", "--data-dir", str(tmp_path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "skyphot: error: configuration value 'workers' is invalid" in err


def test_serve_refuses_an_unknown_setting_by_name(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.yaml").write_text("portt: 5001\n")
    assert main(["serve", "--data-dir", str(tmp_path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "skyphot: error: unknown key(s) 'portt' in configuration file" in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_demo_starts_and_prints_credentials(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SKYPHOT_WORKERS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "skyphot.cli", "serve", "--demo", "--port", str(port),
         "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines: list[str] = []
        assert process.stdout is not None
        while not any("demo source" in line for line in lines):
            line = process.stdout.readline()
            assert line, "serve exited early:\n" + "".join(lines)
            lines.append(line)
        text = "".join(lines)
        assert f"http://localhost:{port}" in text
        token = re.search(r"API token: (\S+)", text).group(1)  # type: ignore[union-attr]
        password = re.search(r"log in as: admin / (\S+)", text).group(1)  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/sources/demo-transient",
                              headers={"Authorization": f"token {token}"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert r.status_code == 200, r.text
        # the demo source starts with a light curve: two filters and upper limits (AB)
        points = httpx.get(f"http://127.0.0.1:{port}/api/sources/demo-transient/photometry",
                           headers={"Authorization": f"token {token}"}).json()
        assert {p["filter"] for p in points} == {"g", "r"}
        limits = [p for p in points if p["mag"] is None]
        assert limits and all(p["limiting_mag"] and p["limit_sigma"] == 5 for p in limits)
        assert all(p["magsys"] == "AB" for p in points)
        for p in points:  # fluxes in µJy follow AB: 23.9 mag = 1 µJy
            if p["mag"] is not None:
                assert p["flux"] == pytest.approx(10 ** (-0.4 * (p["mag"] - 23.9)), rel=1e-9)
            else:  # the limit is 5 sigma of the flux error
                assert 23.9 - 2.5 * np.log10(5 * p["fluxerr"]) == pytest.approx(
                    p["limiting_mag"], abs=1e-9)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            login = client.post("/login", data={"username": "admin", "password": password})
            assert login.status_code == 303
            assert client.get("/source/demo-transient").status_code == 200
        frame = re.search(r"demo frame: +(\S+)", text)
        if frame is not None:  # the simulator is present
            assert Path(frame.group(1)).is_file()
    finally:
        process.terminate()
        process.wait(20)
