"""Fixtures for the catalog tests: a local VizieR stand-in and a port where nothing listens."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from fake_vizier_server import FakeVizier, serve_vizier


@pytest.fixture
def fake_vizier() -> Iterator[FakeVizier]:
    with serve_vizier() as state:
        yield state


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
