"""The login throttle is shared by every web process (issue 10): failed logins are counted
in the database, so two servers on one database share one budget per client and account."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from webtest_helpers import add_users, fresh_database_url, live_server, make_settings

from skyphot.db.models import LoginFailure
from skyphot.web.app import create_app
from skyphot.web.security import LoginThrottle, TooManyLoginsError

BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(
        not os.environ.get("SKYPHOT_TEST_POSTGRES_URL"),
        reason="SKYPHOT_TEST_POSTGRES_URL is not set")),
]


class Clock:
    """A naive-UTC clock both servers read; tests move it instead of waiting."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 5, 9, 0, 0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=BACKENDS)
def two_servers(request: pytest.FixtureRequest, tmp_path: Path
                ) -> Iterator[tuple[list[str], list[LoginThrottle], Clock]]:
    """Two applications (as two server processes would be) on one database, each served on
    its own loopback port, with one shared clock."""
    if request.param == "sqlite":
        url: str | None = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        url = fresh_database_url()
    clock = Clock()
    apps = [create_app(make_settings(tmp_path / name, database_url=url)) for name in "ab"]
    add_users(apps[0])
    throttles = []
    for app in apps:
        app.state.login_throttle.clock = clock
        throttles.append(app.state.login_throttle)
    with ExitStack() as stack:
        urls = [stack.enter_context(live_server(app)) for app in apps]
        yield urls, throttles, clock


def login(url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/login", data={"username": username, "password": password},
                      follow_redirects=False, timeout=60)


def rows(throttle: LoginThrottle) -> int:
    with throttle.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(LoginFailure)) or 0)


def test_failures_on_one_server_count_on_the_other(
    two_servers: tuple[list[str], list[LoginThrottle], Clock]
) -> None:
    (a, b), throttles, clock = two_servers
    for url in (a, b, a, b, a):
        r = login(url, "alice", "wrong")
        assert r.status_code == 401 and "wrong user name or password" in r.text
    # Five failures, spread over both servers: the sixth attempt is refused on either, even
    # with the right password (the budget is one, not one per process).
    for url in (b, a):
        r = login(url, "alice", "alice-pass")
        assert r.status_code == 429
        assert "too many failed logins; wait 300 s before trying again" in r.text
    clock.now += timedelta(seconds=120)
    r = login(a, "bob", "bob-pass")  # the client address is locked out too
    assert r.status_code == 429 and "wait 180 s" in r.text

    # The window passes: logins work again (t = 301 s).
    clock.now += timedelta(seconds=181)
    r = login(b, "alice", "wrong")
    assert r.status_code == 401
    assert rows(throttles[0]) == 3  # the client and alice restarted; bob's began at 120 s
    r = login(a, "alice", "alice-pass")
    assert r.status_code == 303 and r.headers["location"] == "/sources"
    # Windows that have passed are pruned by the next failure (t = 602 s).
    clock.now += timedelta(seconds=301)
    assert login(b, "carol", "wrong").status_code == 401
    assert rows(throttles[1]) == 2  # the client and carol; bob and alice are gone


def test_a_burst_across_both_servers_gets_exactly_the_budget(
    two_servers: tuple[list[str], list[LoginThrottle], Clock]
) -> None:
    (a, b), _, _ = two_servers
    codes: list[int] = []

    def attempt(url: str) -> None:
        codes.append(login(url, "alice", "wrong").status_code)

    threads = [threading.Thread(target=attempt, args=(a if i % 2 else b,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Each attempt is counted before its password is checked, atomically in the database:
    # simultaneous attempts cannot all slip through a check none of them has failed yet.
    assert sorted(codes) == [401] * 5 + [429] * 7


def test_client_and_account_budgets_are_separate(
    two_servers: tuple[list[str], list[LoginThrottle], Clock]
) -> None:
    _, (one, two), clock = two_servers
    # One account guessed at from five addresses (through both processes) is locked out...
    for i in range(5):
        (one if i % 2 else two).attempt(f"10.0.0.{i}", "Alice")
        (one if i % 2 else two).failed(f"10.0.0.{i}", "Alice")
    with pytest.raises(TooManyLoginsError, match="too many failed logins; wait 300 s"):
        two.attempt("10.0.0.99", " alice")  # account names compare case-insensitively
    # ...while other accounts from a fresh address are not.
    one.attempt("10.0.0.99", "bob")
    one.succeeded("10.0.0.99", "bob")
    # One address guessing at many accounts is locked out whatever the account.
    for i in range(5):
        one.attempt("10.9.9.9", f"user{i}")
        one.failed("10.9.9.9", f"user{i}")
    with pytest.raises(TooManyLoginsError):
        two.attempt("10.9.9.9", "carol")
    # A success gives back only its own attempt: the address keeps its earlier failures.
    clock.now += timedelta(seconds=300)
    for _ in range(4):
        one.attempt("10.1.1.1", "dave")
        one.failed("10.1.1.1", "dave")
    two.attempt("10.1.1.1", "erin")
    two.succeeded("10.1.1.1", "erin")
    one.attempt("10.1.1.1", "frank")  # the fifth failure of the window
    one.failed("10.1.1.1", "frank")
    with pytest.raises(TooManyLoginsError):
        two.attempt("10.1.1.1", "erin")
    # Nothing typed is stored: buckets are hashes.
    with one.sessions() as session:
        keys = session.scalars(select(LoginFailure.bucket)).all()
    assert keys and all(len(k) == 64 and "alice" not in k for k in keys)
