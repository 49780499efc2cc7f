"""The bookkeeping behind fault recovery, without servers: guarded job updates, lost-job
re-queueing with attempt and time limits, the soft time limit and the heartbeat."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from skyphot.db import crud
from skyphot.db.models import Job, utcnow
from skyphot.db.session import make_engine, make_sessionmaker, migrate
from skyphot.jobs import runner, store
from skyphot.jobs.limits import (
    Heartbeat,
    JobTimeLimitError,
    is_database_outage,
    soft_limit_s,
    soft_time_limit,
    time_limit_message,
)
from skyphot.jobs.states import JobState


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")
    migrate(engine)
    factory = make_sessionmaker(engine)
    with factory() as s:
        user = crud.create_user(s, "alice", "pw")
        crud.create_source(s, user, source_id="s1", ra=1.0, dec=1.0)
        s.commit()
    yield factory
    engine.dispose()


def new_job(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        user = crud.get_user(s, "alice")
        assert user is not None
        job = store.create_job(s, source_id="s1", owner_id=user.id, upload_path="/x.fits",
                               filename="x.fits", file_hash="a" * 64, params={})
        s.commit()
        return job.id


def get(sessions: sessionmaker[Session], job_id: int) -> Job:
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def age(sessions: sessionmaker[Session], job_id: int, *, seconds: float) -> None:
    """Pretend the job started and was last stamped ``seconds`` ago."""
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.updated_at = job.started_at = utcnow() - timedelta(seconds=seconds)
        s.commit()


def test_updates_of_a_running_job_are_guarded_by_its_worker(
        sessions: sessionmaker[Session]) -> None:
    job_id = new_job(sessions)
    with sessions() as s:
        assert store.claim(s, job_id, "w1")
        assert not store.claim(s, job_id, "w2")  # delivered twice: runs once
        assert store.touch(s, job_id, "w1") and not store.touch(s, job_id, "w2")
        assert not store.finish(s, job_id, JobState.SUCCEEDED, message="x", worker="w2")
        assert store.release(s, job_id, "w1")  # database trouble: back to the queue
    job = get(sessions, job_id)
    assert job.state == "queued" and job.worker is None and job.attempts == 0
    with sessions() as s:
        assert store.claim(s, job_id, "w2")
        assert store.finish(s, job_id, JobState.SUCCEEDED, message="ok", worker="w2")
        assert not store.touch(s, job_id, "w2")  # ended jobs are not stamped
    job = get(sessions, job_id)
    assert (job.state, job.message, job.attempts) == ("succeeded", "ok", 1)


def test_requeue_lost_counts_attempts_and_respects_limits(
        sessions: sessionmaker[Session]) -> None:
    fresh, stale, tired, overdue = (new_job(sessions) for _ in range(4))
    with sessions() as s:
        for job_id in (fresh, stale, tired, overdue):
            assert store.claim(s, job_id, f"w{job_id}")
    age(sessions, stale, seconds=30)
    age(sessions, tired, seconds=30)
    age(sessions, overdue, seconds=200)
    with sessions() as s:  # 'tired' already had its 2 runs
        s.get(Job, tired).attempts = 2  # type: ignore[union-attr]
        s.commit()
    with sessions() as s:
        requeued = store.requeue_lost(s, stale_before=utcnow() - timedelta(seconds=10),
                                      max_attempts=2, time_limit_s=100)
    assert requeued == [stale]
    assert get(sessions, fresh).state == "running"  # recently stamped: alive
    assert get(sessions, stale).state == "queued" and get(sessions, stale).attempts == 1
    assert get(sessions, tired).state == "failed"
    assert get(sessions, tired).message == store.lost_message(2)
    assert store.lost_message(2).startswith(
        "the worker running this analysis stopped unexpectedly 2 time(s)")
    assert get(sessions, overdue).state == "failed"
    assert get(sessions, overdue).message == time_limit_message(100)
    # a specific dead worker's job, regardless of its stamp
    with sessions() as s:
        assert store.requeue_lost(s, worker=f"w{fresh}", max_attempts=3) == [fresh]
        assert store.requeue_lost(s, worker=f"w{fresh}", max_attempts=3) == []


def test_overdue_fail_running_and_stale_queued(sessions: sessionmaker[Session]) -> None:
    running, waiting = new_job(sessions), new_job(sessions)
    with sessions() as s:
        store.claim(s, running, "w1")
    age(sessions, running, seconds=50)
    age(sessions, waiting, seconds=50)
    with sessions() as s:
        assert store.overdue(s, started_before=utcnow() - timedelta(seconds=40)) == [
            (running, "w1")]
        assert store.overdue(s, started_before=utcnow() - timedelta(seconds=60)) == []
        assert not store.fail_running(s, running, worker="w2", message="no")
        assert store.fail_running(s, running, worker="w1", message=time_limit_message(40))
        cutoff = utcnow() - timedelta(seconds=10)
        assert store.stale_queued(s, updated_before=cutoff) == [waiting]
        store.mark_sent(s, [waiting])
        assert store.stale_queued(s, updated_before=cutoff) == []
    assert get(sessions, running).message == (
        "analysis exceeded the 40 s time limit (job_time_limit_s); check that the frame is "
        "sensible (size, catalog) or ask the administrator to raise the limit")


def test_soft_time_limit_interrupts_with_the_message() -> None:
    assert soft_limit_s(2) == 1.0 and soft_limit_s(100) == 90.0 and soft_limit_s(1800) == 1770
    started = time.monotonic()
    with pytest.raises(JobTimeLimitError, match=r"^analysis exceeded the 2 s time limit"), \
            soft_time_limit(2.0):
        time.sleep(5)
    assert 0.9 < time.monotonic() - started < 1.5  # the soft limit: 1 s before the hard one
    before = signal.getsignal(signal.SIGALRM)
    with soft_time_limit(2.0):
        time.sleep(0.1)  # within the limit: nothing happens, and the timer is disarmed
    time.sleep(1.1)  # past the soft limit: no late alarm
    assert signal.getsignal(signal.SIGALRM) == before
    with soft_time_limit(None):
        pass


def test_heartbeat_stamps_and_survives_an_outage() -> None:
    stamps: list[float] = []

    def stamp(_session: Session, _job_id: int, _worker: str) -> bool:
        stamps.append(time.monotonic())
        if len(stamps) == 2:
            raise OperationalError("UPDATE", {}, Exception("server closed the connection"))
        return True

    class NoSession:
        def __call__(self) -> NoSession:
            return self

        def __enter__(self) -> None:
            return None

        def __exit__(self, *_exc: object) -> None:
            return None

    with Heartbeat(NoSession(), 1, "w", 0.05, stamp=stamp):  # type: ignore[arg-type]
        time.sleep(0.4)
    count = len(stamps)
    assert count >= 4  # went on after the failed second stamp
    time.sleep(0.15)
    assert len(stamps) == count  # stopped with the job
    assert is_database_outage(OperationalError("x", {}, Exception("down")))
    assert not is_database_outage(ValueError("x"))



def test_hand_back_gives_up_on_a_database_that_stays_away(
        caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Session:
        raise OperationalError("UPDATE", {}, Exception("connection refused"))

    with caplog.at_level(logging.ERROR, logger="skyphot.jobs.runner"):
        runner._hand_back(broken, 7, "w", patience_s=0,  # type: ignore[arg-type]
                          reason="the database connection was lost")
    assert ("job 7: the database is still unreachable; a sweep will re-queue it once its "
            "heartbeat is stale") in caplog.text
