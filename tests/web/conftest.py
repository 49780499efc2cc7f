"""Fixtures of the web tests (defined in ``webtest_helpers``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from webtest_helpers import instance, source  # noqa: F401
