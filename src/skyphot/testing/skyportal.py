"""A local stand-in for a SkyPortal server, for tests and demos that must not reach the
internet.

``serve_skyportal`` runs an HTTP server on 127.0.0.1 implementing the subset of SkyPortal's
API skyphot uses (``GET /api/sources/{obj_id}``, ``GET /api/sources/{obj_id}/photometry``,
``GET /api/instrument``, ``POST /api/photometry``, ``PATCH``/``DELETE
/api/photometry/{id}``). It checks the token header and validates every photometry payload
the way SkyPortal does (required fields, known bandpass and magnitude system, ``mag`` and
``magerr`` both given or both null with ``limiting_mag`` set, known ``obj_id`` and
instrument), records every accepted payload, and can be told to fail: ``faults`` is a list
of what the next requests meet, each one of ``401``, ``404``, ``500``, ``503`` (answer that
status without doing anything) or ``"timeout"`` (do the work, then answer only after
``delay_s``: the client gives up, as when an answer is lost on the way back); a
``(method, fault)`` pair waits for the next request of that method (e.g. ``("POST",
"timeout")``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from skyphot.adapters.skyportal import BANDPASSES
from skyphot.testing.loopback import StandInHandler, loopback_server

# SkyPortal accepts any sncosmo bandpass; these are the ones its users meet most.
ALLOWED_BANDPASSES = frozenset(BANDPASSES | {"atlasc", "atlaso", "swiftu", "uvot::b",
                                             "cspb", "cspv3014", "ztfg", "ztfr", "ztfi"})
ALLOWED_MAGSYS = frozenset({"ab", "vega", "bd17", "csp", "ab-b12"})
REQUIRED = ("obj_id", "instrument_id", "mjd", "filter", "magsys")


@dataclass
class FakeSkyPortal:
    """State of the stand-in: what it knows, what it accepted, and how to fail."""

    token: str = "sp-test-token"
    url: str = ""
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    instruments: list[dict[str, Any]] = field(default_factory=list)
    photometry: dict[int, dict[str, Any]] = field(default_factory=dict)
    accepted: list[dict[str, Any]] = field(default_factory=list)  # every accepted payload
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    faults: list[int | str | tuple[str, int | str]] = field(default_factory=list)
    delay_s: float = 2.0
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_source(self, obj_id: str, ra: float, dec: float, *, redshift: float | None = None,
                   aliases: list[str] | None = None) -> None:
        """Make a source known."""
        self.sources[obj_id] = {"id": obj_id, "ra": ra, "dec": dec, "redshift": redshift,
                                "alias": aliases or []}

    def add_instrument(self, instrument_id: int, name: str) -> None:
        """Make an instrument known."""
        self.instruments.append({"id": instrument_id, "name": name})

    def take_fault(self, method: str) -> int | str | None:
        """The first fault waiting for a request of this method (removed), or None."""
        for index, fault in enumerate(self.faults):
            if isinstance(fault, tuple):
                if fault[0] == method:
                    del self.faults[index]
                    return fault[1]
                continue
            del self.faults[index]
            return fault
        return None

    def points_of(self, obj_id: str) -> list[dict[str, Any]]:
        """The stored points of a source (with their ids)."""
        return [{"id": k, **v} for k, v in self.photometry.items() if v["obj_id"] == obj_id]


def validate_photometry(state: FakeSkyPortal, body: Any) -> str | None:
    """Why SkyPortal would refuse this photometry payload, or None."""
    if not isinstance(body, dict):
        return "Invalid/missing parameters: body must be a JSON object"
    missing = [k for k in REQUIRED if body.get(k) is None]
    if missing:
        return f"Invalid/missing parameters: {', '.join(missing)}"
    if body["obj_id"] not in state.sources:
        return f"Invalid obj_id: {body['obj_id']}"
    if body["instrument_id"] not in {i["id"] for i in state.instruments}:
        return f"Invalid instrument_id: {body['instrument_id']}"
    if body["filter"] not in ALLOWED_BANDPASSES:
        return f"Invalid filter: {body['filter']!r} is not an allowed bandpass"
    if body["magsys"] not in ALLOWED_MAGSYS:
        return f"Invalid magsys: {body['magsys']!r}"
    if not isinstance(body["mjd"], int | float):
        return "Invalid mjd: must be a number"
    mag, magerr, limit = body.get("mag"), body.get("magerr"), body.get("limiting_mag")
    if (mag is None) != (magerr is None):
        return "Invalid/missing parameters: mag and magerr must both be null or both be set"
    if mag is None and limit is None:
        return "Invalid/missing parameters: limiting_mag is required when mag is null"
    for name, value in (("mag", mag), ("magerr", magerr), ("limiting_mag", limit)):
        if value is not None and not isinstance(value, int | float):
            return f"Invalid {name}: must be a number or null"
    groups = body.get("group_ids", [])
    if groups != "all" and not (isinstance(groups, list)
                                and all(isinstance(g, int) for g in groups)):
        return "Invalid group_ids: a list of integers or 'all'"
    if "altdata" in body and not isinstance(body["altdata"], dict | type(None)):
        return "Invalid altdata: must be an object"
    return None


@contextmanager
def serve_skyportal(state: FakeSkyPortal | None = None) -> Iterator[FakeSkyPortal]:
    """Run the stand-in on 127.0.0.1 (a free port) for the duration of the block."""
    fake = state if state is not None else FakeSkyPortal()
    done = threading.Event()

    class Handler(StandInHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            # a client that gave up (a "timeout" fault) is dropped by the loopback server
            self.reply(status, raw, "application/json")

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"status": "error", "message": message})

        def _ok(self, data: Any) -> None:
            self._send(200, {"status": "success", "data": data})

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length", "0"))
            try:
                return json.loads(self.rfile.read(length) or b"null")
            except ValueError:
                return None

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            body = self._body() if method in ("POST", "PATCH", "PUT") else None
            with fake._lock:
                fake.requests.append((method, path))
                fault = fake.take_fault(method)
            if isinstance(fault, int):
                self._error(fault, f"stand-in fault {fault}")
                return
            if self.headers.get("Authorization") != f"token {fake.token}":
                self._error(401, "Credentials malformed" if not self.headers.get(
                    "Authorization") else "Invalid token")
                return
            with fake._lock:
                status, answer = self._route(method, path, parts.query, body)
            if fault == "timeout":
                done.wait(fake.delay_s)  # the work is done; the answer comes too late
            self._send(status, answer)

        def _route(self, method: str, path: str, query: str,
                   body: Any) -> tuple[int, dict[str, Any]]:
            segments = [s for s in path.split("/") if s]
            ok: dict[str, Any] = {"status": "success"}

            def error(status: int, message: str) -> tuple[int, dict[str, Any]]:
                return status, {"status": "error", "message": message}

            if segments[:2] == ["api", "sources"] and len(segments) in (3, 4) \
                    and method == "GET":
                obj_id = segments[2]
                if obj_id not in fake.sources:
                    return error(404, f"Cannot find source with id {obj_id}")
                if len(segments) == 3:
                    return 200, {**ok, "data": fake.sources[obj_id]}
                if segments[3] == "photometry":
                    return 200, {**ok, "data": fake.points_of(obj_id)}
            if segments == ["api", "instrument"] and method == "GET":
                name = parse_qs(query).get("name", [None])[0]
                rows = [i for i in fake.instruments if name is None or i["name"] == name]
                return 200, {**ok, "data": rows}
            if segments == ["api", "photometry"] and method == "POST":
                reason = validate_photometry(fake, body)
                if reason is not None:
                    return error(400, reason)
                new_id = fake._next_id
                fake._next_id += 1
                fake.photometry[new_id] = dict(body)
                fake.accepted.append(dict(body))
                return 200, {**ok, "data": {"ids": [new_id], "upload_id": f"u{new_id}"}}
            if segments[:2] == ["api", "photometry"] and len(segments) == 3:
                try:
                    point_id = int(segments[2])
                except ValueError:
                    return error(400, "Invalid photometry id")
                if point_id not in fake.photometry:
                    return error(400, f"Cannot find photometry point with ID: {point_id}")
                if method == "PATCH":
                    merged = {**fake.photometry[point_id], **(body or {})}
                    reason = validate_photometry(fake, merged)
                    if reason is not None:
                        return error(400, reason)
                    fake.photometry[point_id] = merged
                    fake.accepted.append(dict(body or {}))
                    return 200, {**ok, "data": {}}
                if method == "DELETE":
                    del fake.photometry[point_id]
                    return 200, {**ok, "data": {}}
            return error(404, f"no route {method} {path} in the SkyPortal stand-in")

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    with loopback_server(Handler, stopping=done) as url:
        fake.url = url
        yield fake
