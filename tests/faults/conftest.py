"""The fault tests use the web helpers (instances, FITS bytes) and ``harness``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from collections.abc import Iterator

import pytest
from webtest_helpers import drop_test_databases


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_databases() -> Iterator[None]:
    yield
    drop_test_databases()
