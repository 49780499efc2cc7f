"""Hostile-input defences of the web layer: a cross-site request check for cookie-authenticated
requests that change data, and a throttle for failed logins."""

from __future__ import annotations

import threading
import time
from collections import deque
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

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
    """Counts failed logins per client address and per account in a sliding window.

    In-process memory: with several web processes each keeps its own count (the limit per
    process still bounds a brute-force attempt and the hashing work it causes).
    """

    def __init__(self, *, max_failures: int = 5, window_s: float = 300.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def check(self, client: str, username: str) -> None:
        """Raise ``TooManyLoginsError`` when the client or the account is locked out."""
        now = time.monotonic()
        with self._lock:
            for key in (f"client:{client}", f"user:{username.lower()}"):
                times = self._recent(key, now)
                if len(times) >= self.max_failures:
                    wait = int(self.window_s - (now - times[0])) + 1
                    raise TooManyLoginsError(
                        f"too many failed logins; wait {wait} s before trying again"
                    )

    def failed(self, client: str, username: str) -> None:
        """Record one failed login."""
        now = time.monotonic()
        with self._lock:
            for key in (f"client:{client}", f"user:{username.lower()}"):
                self._recent(key, now).append(now)
            if len(self._failures) > 10000:  # bound memory under a spray of names
                stale = [k for k, v in self._failures.items() if not v]
                for k in stale:
                    del self._failures[k]

    def succeeded(self, client: str, username: str) -> None:
        """Forget the failures of a client and account that just logged in."""
        with self._lock:
            self._failures.pop(f"client:{client}", None)
            self._failures.pop(f"user:{username.lower()}", None)
