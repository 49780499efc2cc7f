"""Hostile-input defences of the web layer: a cross-site request check for cookie-authenticated
requests that change data, and a throttle for failed logins."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from skyphot.db import logins
from skyphot.db.models import utcnow
from skyphot.errors import SkyphotError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class CrossSiteRequestError(SkyphotError):
    """A request that changes data came from a page of another origin (HTTP 403)."""


class TooManyLoginsError(SkyphotError):
    """Too many failed logins from one client or for one account (HTTP 429)."""


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.lower()


def cross_site_reason(method: str, headers: dict[str, str]) -> str | None:
    """Why a request must be refused as cross-site, or None when it may go on.

    Only requests that a browser sends on its own with the login cookie need the check:
    API-token requests (``Authorization``) cannot be forged by another page. A browser always
    sends ``Origin`` (or at least ``Referer``) with a cross-origin POST; both must name this
    server's host. SameSite=Lax cookies alone do not suffice: another port on the same host
    is the same *site*.
    """
    if method.upper() in SAFE_METHODS or "authorization" in headers:
        return None
    if "cookie" not in headers:
        return None
    # A reverse proxy may rewrite Host and pass the public one as X-Forwarded-Host (a page in
    # a browser cannot set that header on a form post).
    hosts = {headers.get("host", "").lower(), headers.get("x-forwarded-host", "").lower()} - {""}
    origin = headers.get("origin")
    if origin is not None and origin != "null":
        if _host_of(origin) not in hosts:
            return (f"refused: this request came from a page of another site ({origin}); "
                    "use skyphot's own pages")
        return None
    if origin == "null":
        return "refused: this request came from a page without an origin; use skyphot's pages"
    referer = headers.get("referer")
    if referer is not None and _host_of(referer) not in hosts:
        return "refused: this request came from a page of another site; use skyphot's pages"
    return None


class CrossSiteGuard:
    """ASGI middleware answering 403 to cookie-authenticated cross-origin writes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        reason = cross_site_reason(scope["method"], headers)
        if reason is None:
            await self.app(scope, receive, send)
            return
        # Imported here: errors imports this module's exception classes.
        from skyphot.web.errors import error_response

        response = error_response(CrossSiteRequestError(reason))
        await response(scope, receive, send)


class LoginThrottle:
    """Counts login attempts per client address and per account in fixed windows kept in the
    database, so every web process shares them.

    An attempt is counted *before* its password is checked: simultaneous attempts cannot all
    pass a check made before any of them failed, so the limit holds under a burst and across
    processes. A success takes its attempt back from the client and forgets the account's
    failures. Every method touches the database: call them from the thread pool.
    """

    def __init__(self, sessions: sessionmaker[Session], *, max_failures: int = 5,
                 window_s: float = 300.0, clock: Callable[[], datetime] = utcnow) -> None:
        self.sessions = sessions
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock  # naive UTC; tests move it instead of waiting

    @staticmethod
    def _buckets(client: str, username: str) -> tuple[str, str]:
        return logins.bucket("client", client), logins.bucket("user", username.strip().lower())

    def attempt(self, client: str, username: str) -> None:
        """Count a login attempt; ``TooManyLoginsError`` when the client or the account has
        used up its attempts in the current window (the password is then not checked)."""
        now = self.clock()
        with self.sessions.begin() as session:
            # Sorted: two requests sharing both buckets take their row locks in one order.
            windows = [logins.count_attempt(session, key, now, self.window_s)
                       for key in sorted(self._buckets(client, username))]
        over = [w for w in windows if w.attempts > self.max_failures]
        if over:
            ends = max(w.start for w in over) + timedelta(seconds=self.window_s)
            wait = max(1, math.ceil((ends - now).total_seconds()))
            raise TooManyLoginsError(f"too many failed logins; wait {wait} s before trying again")

    def failed(self, client: str, username: str) -> None:
        """A counted attempt failed: it stays counted; expired windows are pruned."""
        del client, username  # the attempt was counted by attempt()
        with self.sessions.begin() as session:
            logins.prune(session, self.clock(), self.window_s)

    def succeeded(self, client: str, username: str) -> None:
        """A counted attempt succeeded: the client gets it back, the account starts afresh.
        The client keeps its other failures, so logging in to one's own account does not
        reset the budget for guessing at others."""
        client_key, user_key = self._buckets(client, username)
        with self.sessions.begin() as session:
            logins.uncount_attempt(session, client_key)
            logins.forget(session, user_key)
