"""The job tests reuse the web helpers (instance fixtures, stub engine)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))

from webtest_helpers import instance, source  # noqa: F401
