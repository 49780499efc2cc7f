"""Fixtures of the web tests (defined in ``webtest_helpers``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from collections.abc import Iterator

import pytest
from webtest_helpers import drop_test_databases, instance, source  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_databases() -> Iterator[None]:
    yield
    drop_test_databases()
