"""Server hygiene (issue 10): what the live-notification loop catches is logged, and a
login costs the same for an unknown account as for a wrong password."""

from __future__ import annotations

import logging
import statistics
import time

import pytest
from sqlalchemy import text
from webtest_helpers import Instance

from skyphot.db import crud


def test_event_stream_logs_and_survives_a_failing_poll(
    instance: Instance, source: str, caplog: pytest.LogCaptureFixture
) -> None:
    instance.app.state.event_interval = 0.05
    with instance.app.state.engine.begin() as connection:  # the poll now fails in SQL
        connection.execute(text("ALTER TABLE jobs RENAME TO jobs_away"))
    with caplog.at_level(logging.WARNING, logger="skyphot.web.routes.api"), \
            instance.client.stream("GET", "/api/events?max_seconds=0.4",
                                   headers=instance.alice) as r:
        body = "".join(r.iter_text())
    assert r.status_code == 200 and ": connected" in body
    logged = [rec.getMessage() for rec in caplog.records]
    # SQLite: OperationalError "no such table: jobs"; PostgreSQL: ProgrammingError
    # 'relation "jobs" does not exist'.
    assert any("live notifications of user" in m and
               ("no such table: jobs" in m or 'relation "jobs" does not exist' in m)
               for m in logged), logged
    assert len(logged) >= 2  # it went on polling after the first failure


def test_login_time_does_not_tell_whether_an_account_exists(instance: Instance) -> None:
    def timed(username: str) -> float:
        times = []
        for _ in range(5):
            with instance.app.state.sessions() as session:
                start = time.perf_counter()
                assert crud.authenticate(session, username, "wrong-password") is None
                times.append(time.perf_counter() - start)
        return statistics.median(times)

    timed("nobody")  # the decoy hash is made once, on first use
    wrong_password, unknown_user = timed("alice"), timed("nobody")
    # Both pay one scrypt check (tens of ms); without the decoy the unknown user took
    # well under 1 ms. Generous bounds: the machine is shared.
    assert unknown_user > 0.4 * wrong_password, (unknown_user, wrong_password)
    assert unknown_user < 2.5 * wrong_password, (unknown_user, wrong_password)
