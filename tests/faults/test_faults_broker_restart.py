"""Redis restarts during a run: jobs resume, every job ends once, nothing is duplicated."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from harness import RedisServer, fits_with, require_redis, stack, wait_until
from webtest_helpers import fits_bytes


def test_redis_restart_during_a_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    require_redis()  # the Redis tests are on (this one restarts a private server)
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        with stack(tmp_path, broker_url=redis.url, concurrency=2) as s:
            ids = [s.upload(fits_with(fits_bytes(mag=15.0 + 0.1 * i, seed=i), STUBWAIT=0.7))
                   for i in range(6)]
            wait_until(lambda: any(r.state == "running" for r in (s.jobs(ids) or {}).values()),
                       timeout=20, what="a job to run")
            redis.stop()
            # uploads while the broker is away are accepted and kept queued; the web server
            # gives up sending them and a worker's sweep sends them once Redis is back
            with caplog.at_level(logging.WARNING, logger="skyphot.jobs.celery_queue"):
                away = [s.upload(fits_with(fits_bytes(mag=16.0 + 0.1 * i, seed=10 + i),
                                           STUBWAIT=0.2)) for i in range(2)]
                wait_until(lambda: caplog.text.count("stays queued") == 2, timeout=20,
                           what="the web server to give up sending")
            ids += away
            redis.start()
            ids += [s.upload(fits_bytes(mag=17.0, seed=20))]
            rows = s.wait_done(ids, timeout=60)
            assert all(r.state == "succeeded" for r in rows.values()), s.describe(ids)
            assert s.points_per_job() == {job_id: 1 for job_id in ids}
            # each job was measured once (a re-delivered duplicate finds the job taken)
            assert max(r.attempts for r in rows.values()) <= 2, s.describe(ids)
            assert "queued job(s) the broker does not hold" in s.worker.log()
    finally:
        redis.stop()
