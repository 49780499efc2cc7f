"""A worker killed in the middle of a job: the job runs again and counts once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from harness import fits_with, pid_of, require_redis, stack, wait_until
from webtest_helpers import fits_bytes


def test_killed_worker_process_job_is_retried_and_completes_once(tmp_path: Path) -> None:
    broker = require_redis()
    # A long stale time: the job must come back through Celery's re-delivery, not a sweep.
    with stack(tmp_path, broker_url=broker, concurrency=2, job_stale_after_s=30) as s:
        job_id = s.upload(fits_with(fits_bytes(mag=16.5), STUBWAIT=2.0))
        running = s.wait_state(job_id, "running", timeout=20)
        wait_until(lambda: (s.jobs([job_id]) or {})[job_id].stage == "fault engine",
                   timeout=10, what="the job to be mid-analysis")
        assert running.worker is not None
        killed = pid_of(running.worker)
        os.kill(killed, signal.SIGKILL)
        job = s.wait_done([job_id], timeout=40)[job_id]
        assert job.state == "succeeded", s.describe([job_id])
        assert job.attempts == 2
        assert job.worker is not None and pid_of(job.worker) != killed
        assert s.points_per_job() == {job_id: 1}
        log = (s.settings.jobs_path / str(job_id) / "job.log").read_text()
        assert "attempt 1" in log and "attempt 2" in log
        log = s.worker.log()
        assert f"died running job {job_id}; re-queueing it" in log
        assert "stopped answering" not in log


def test_whole_worker_lost_its_job_is_swept_to_another_worker(tmp_path: Path) -> None:
    """The machine of a worker vanishes (main process and children killed at once): its
    job's heartbeat goes stale, a sweep of another worker re-queues and re-sends it."""
    broker = require_redis()
    with stack(tmp_path, broker_url=broker, concurrency=1) as s:
        job_id = s.upload(fits_with(fits_bytes(mag=16.0), STUBWAIT=1.5))
        wait_until(lambda: (s.jobs([job_id]) or {})[job_id].stage == "fault engine",
                   timeout=20, what="the job to be mid-analysis")
        assert s.worker.process is not None
        os.killpg(s.worker.process.pid, signal.SIGKILL)
        s.worker.process.wait(10)
        assert (s.jobs([job_id]) or {})[job_id].state == "running"  # orphaned
        s.worker.start()  # "another machine"
        job = s.wait_done([job_id], timeout=40)[job_id]
        assert job.state == "succeeded", s.describe([job_id])
        assert job.attempts == 2
        assert s.points_per_job() == {job_id: 1}
        assert "whose worker stopped answering" in s.worker.log()
