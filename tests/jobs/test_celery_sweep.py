"""The sweep of a Celery worker, with the broker replaced by a recorder: which lost jobs it
re-queues and which queued jobs it sends again."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

import pytest
from webtest_helpers import make_settings

from skyphot.db import crud
from skyphot.db.models import Job, utcnow
from skyphot.db.session import make_engine, make_sessionmaker, migrate
from skyphot.jobs import store

celery_app = pytest.importorskip("skyphot.jobs.celery_app",
                                 reason="Celery is not installed (pip install 'skyphot[celery]')")


def test_sweep_requeues_stale_jobs_and_resends_what_the_broker_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path, queue="celery", job_heartbeat_s=1,
                             job_stale_after_s=10, job_max_attempts=2)
    engine = make_engine(settings.db_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        user = crud.create_user(s, "alice", "pw")
        crud.create_source(s, user, source_id="s1", ra=1.0, dec=1.0)
        ids = [store.create_job(s, source_id="s1", owner_id=user.id, upload_path="/x",
                                filename="x.fits", file_hash=f"{i:064d}", params={}).id
               for i in range(5)]
        s.commit()
        alive, orphan, tired, lost_in_broker, waiting = ids
        for job_id in (alive, orphan, tired):
            assert store.claim(s, job_id, f"node/{job_id}")
        long_ago = utcnow() - timedelta(seconds=60)
        for job_id in (orphan, tired, lost_in_broker):
            s.get(Job, job_id).updated_at = long_ago  # type: ignore[union-attr]
        s.get(Job, tired).attempts = 2  # type: ignore[union-attr]
        s.commit()
    sent: list[int] = []
    depth = {"n": 0}
    monkeypatch.setattr(celery_app, "send_job", lambda _app, _settings, job_id: sent.append(
        job_id))
    monkeypatch.setattr(celery_app, "broker_queue_length", lambda _app, _queue: depth["n"])
    app = celery_app.make_celery(settings)
    sweeper = celery_app.Sweeper(app, settings, lambda: sessions)

    depth["n"] = 3  # the broker still holds messages: only the orphan is re-sent
    assert sweeper.sweep() == [orphan] and sent == [orphan]
    with sessions() as s:
        states = {j.id: (j.state, j.attempts) for j in s.query(Job)}
    assert states[alive] == ("running", 1) and states[orphan] == ("queued", 1)
    assert states[tired] == ("failed", 2)  # its workers died twice: given up
    assert states[lost_in_broker] == ("queued", 0) and states[waiting] == ("queued", 0)

    depth["n"] = 0  # an empty broker queue while a job waited for a minute: it was lost
    sent.clear()
    assert sweeper.sweep() == [lost_in_broker] and sent == [lost_in_broker]
    sent.clear()
    assert sweeper.sweep() == [] and sent == []  # just sent: not again at once
    engine.dispose()


def test_sweeps_and_bookkeeping_outlive_outages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from kombu.exceptions import OperationalError as BrokerDown
    from sqlalchemy.exc import OperationalError

    settings = make_settings(tmp_path, queue="celery", job_heartbeat_s=1,
                             job_stale_after_s=10, job_sweep_interval_s=0.05,
                             database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
    app = celery_app.make_celery(settings)
    context = app.skyphot_context
    with caplog.at_level(logging.WARNING, logger="skyphot.jobs.celery_app"):
        # the database is away: a bookkeeping change is skipped, saying so
        assert context.record("re-queue job 7", lambda s: store.release(s, 7, "w")) is None
        assert "cannot re-queue job 7: database unreachable (OperationalError); a sweep " \
               "will catch up" in caplog.text
        failures = iter([OperationalError("SELECT", {}, Exception("down")),
                         BrokerDown("Connection refused")])

        def sweep(_self: object) -> list[int]:
            error = next(failures, None)
            if error is not None:
                raise error
            return []

        monkeypatch.setattr(celery_app.Sweeper, "sweep", sweep)
        sweeper = celery_app.Sweeper(app, settings, context.sessions)
        sweeper.start()
        time.sleep(0.3)
        sweeper.stop()
    assert "sweep skipped: database unreachable (OperationalError)" in caplog.text
    assert "sweep skipped: broker unreachable (Connection refused)" in caplog.text
