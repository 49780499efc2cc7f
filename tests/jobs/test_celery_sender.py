"""The web server's Celery sender thread survives any error and logs it (issue 10,
hygiene); a private Redis on loopback stands in for the broker."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))

from harness import RedisServer, wait_until
from webtest_helpers import make_settings


def test_sender_logs_an_unexpected_error_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("celery", reason="Celery is not installed (pip install 'skyphot[celery]')")
    from skyphot.jobs.celery_app import broker_queue_length
    from skyphot.jobs.celery_queue import CeleryQueue

    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        settings = make_settings(tmp_path, queue="celery", broker_url=redis.url,
                                 celery_queue="sender-test")
        queue = CeleryQueue(settings)
        queue.start()
        with caplog.at_level(logging.ERROR, logger="skyphot.jobs.celery_queue"):
            queue.submit(object())  # type: ignore[arg-type]  # not serialisable: a bug's stand-in
            queue.submit(7)
            wait_until(lambda: broker_queue_length(queue.app, "sender-test") == 1,
                       timeout=20, what="job 7 to reach the broker")
        assert queue._sender is not None and queue._sender.is_alive()
        assert any("unexpected error sending job" in r.getMessage() and r.exc_info
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
        start = time.monotonic()
        queue.stop(5)
        assert time.monotonic() - start < 5
    finally:
        redis.stop()
