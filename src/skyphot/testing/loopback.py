"""One way to run the stand-in HTTP services of ``skyphot.testing`` on this machine only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def loopback_server(
    handler: type[BaseHTTPRequestHandler], *, stopping: threading.Event | None = None
) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 (a free port) in a thread for the duration of the
    block; yields the base URL. On exit ``stopping`` is set first, so that answers held back
    on purpose (a slow or hanging service) end instead of delaying the shutdown."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
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
