"""Issue 12 for `skyphot worker` (Celery): SIGTERM to its process group is a warm shutdown
bounded by ``shutdown_grace_s``: a short job finishes, a long one goes back to the queue
(and its message to the broker), the worker exits 0 within the grace period and leaves no
process behind. Uses a private Redis on loopback."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import RedisServer, Stack, fits_with, stack, wait_until
from serve_process import children_of, group_members
from webtest_helpers import fits_bytes

pytestmark = pytest.mark.slow

GRACE_S = 8.0


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("celery", reason="Celery is not installed (pip install 'skyphot[celery]')")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _sigterm_and_wait(s: Stack) -> tuple[int, float]:
    process = s.worker.process
    assert process is not None
    pool = children_of(process.pid)
    assert pool, "no pool process found"
    start = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    code = process.wait(GRACE_S + 15)
    waited = time.monotonic() - start
    # Pool processes run in process groups of their own: check them by pid.
    wait_until(lambda: not group_members(process.pid) and not any(
        Path(f"/proc/{pid}").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()
        for pid in pool), timeout=5, what="every process of the worker to be gone")
    return code, waited


@pytest.mark.parametrize(("wait_s", "expected"), [(1.5, "succeeded"), (15.0, "queued")])
def test_sigterm_warm_shutdown_within_grace(tmp_path: Path, redis_url: str, wait_s: float,
                                            expected: str) -> None:
    with stack(tmp_path, broker_url=redis_url, concurrency=1, shutdown_grace_s=GRACE_S,
               job_stale_after_s=30) as s:
        job_id = s.upload(fits_with(fits_bytes(mag=16.5), STUBWAIT=wait_s))
        wait_until(lambda: (s.jobs([job_id]) or {})[job_id].stage == "fault engine",
                   timeout=30, what="the job to be mid-analysis")
        code, waited = _sigterm_and_wait(s)
        assert code == 0, s.worker.log()[-3000:]
        assert waited < GRACE_S, f"took {waited:.1f} s, grace {GRACE_S} s"
        job = (s.jobs([job_id]) or {})[job_id]
        assert job.state == expected, (s.describe([job_id]), s.worker.log()[-3000:])
        if expected == "queued":
            assert job.attempts == 0 and job.worker is None
            assert s.points_per_job() == {}
            # Not lost: a new worker runs it (the message went back to the broker), once.
            s.worker.start()
            done = s.wait_done([job_id], timeout=45)[job_id]
            assert done.state == "succeeded", s.describe([job_id])
        assert s.points_per_job() == {job_id: 1}
