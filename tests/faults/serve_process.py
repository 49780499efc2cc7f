"""`skyphot serve` as a real subprocess in its own session (as Docker or systemd run it),
with the fault engine, for the signal and orphan-worker tests."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from harness import FAULT_ENGINE, TESTS, wait_until
from webtest_helpers import free_port


def _live_processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every live (not zombie) process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            yield int(entry.name), int(fields[1]), int(fields[2])


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    return [pid for pid, _, group in _live_processes() if group == pgid]


def children_of(pid: int) -> list[int]:
    """Live direct children of ``pid``."""
    return [child for child, parent, _ in _live_processes() if parent == pid]


class ServeProcess:
    """`skyphot serve --data-dir D` on a free loopback port."""

    def __init__(self, data_dir: Path, **config: Any) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        values: dict[str, Any] = {"workers": 1, "worker_nice": 0, "job_poll_interval": 0.2,
                                  "job_heartbeat_s": 0.5, "job_stale_after_s": 3}
        values.update(config)
        (data_dir / "config.yaml").write_text(yaml.safe_dump(values), encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""

    def start(self, *, timeout: float = 60) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPHOT_")}
        paths = [str(TESTS / "web"), str(TESTS / "faults"), os.environ.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "skyphot.cli", "serve", "--data-dir",
                 str(self.data_dir), "--port", str(self.port), "--engine", FAULT_ENGINE],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited ({self.process.returncode}):\n{self.log()}")
            match = re.search(r"API token: (\S+)", self.log()[offset:])
            if match is None:
                return False
            self.token = match.group(1)
            try:
                return self.request("GET", "/api/info")[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=timeout, what="skyphot serve to answer", interval=0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str | None = None, timeout: float = 10) -> tuple[int, Any]:
        headers = {"Authorization": f"token {self.token}"}
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")

    def create_source(self, source_id: str = "s1") -> None:
        body = json.dumps({"id": source_id, "ra": 150.1, "dec": 2.2}).encode()
        status, answer = self.request("POST", "/api/sources", body, "application/json")
        assert status == 201, answer

    def upload(self, content: bytes, source_id: str = "s1") -> int:
        boundary = "skyphot-test-boundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"frame.fits\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
        status, answer = self.request("POST", f"/api/sources/{source_id}/image_analysis", body,
                                      f"multipart/form-data; boundary={boundary}")
        assert status == 202, answer
        return int(answer["job_id"])

    def job(self, job_id: int) -> dict[str, Any]:
        status, answer = self.request("GET", f"/api/jobs/{job_id}")
        assert status == 200, answer
        return dict(answer)

    def signal_group(self, signum: int) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signum)

    def wait_exit(self, timeout: float) -> tuple[int, float]:
        """(exit status, seconds waited)."""
        assert self.process is not None
        start = time.monotonic()
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired as err:
            raise AssertionError(f"serve still running {timeout:g} s after the signal:\n"
                                 f"{self.log()[-3000:]}") from err
        return code, time.monotonic() - start

    def kill(self) -> None:
        """Leave nothing behind, whatever happened."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        for pid in group_members(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
