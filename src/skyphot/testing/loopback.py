"""One way to run the stand-in HTTP services of ``skyphot.testing`` on this machine only."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StandInHandler(BaseHTTPRequestHandler):
    """Request handler base of the stand-ins: one way to answer, and no request log (test
    and benchmark output stays clean)."""

    def reply(self, code: int, body: bytes, content_type: str) -> None:
        """Answer with ``body``. A client that hung up meanwhile (a time-out test) raises a
        ``ConnectionError`` that the server drops (see ``_StandInServer.handle_error``)."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class _StandInServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (a time-out test gave up on a slow answer) is expected here;
        # anything else is printed as usual.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@contextmanager
def loopback_server(
    handler: type[BaseHTTPRequestHandler], *, stopping: threading.Event | None = None
) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (a free port) in a thread for the duration of the
    block; yields the base URL. On exit ``stopping`` is set first, so that answers held back
    on purpose (a slow or hanging service) end instead of delaying the shutdown."""
    server = _StandInServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        if stopping is not None:
            stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
