"""Start-up cost: `skyphot measure` imports only what measuring needs (issue 8, item 7)."""

from __future__ import annotations

import json
import subprocess
import sys

# Measuring needs none of these; each cost 0.2-0.75 s of import time before.
_NOT_FOR_MEASURE = ("scipy.stats", "sqlalchemy", "alembic", "skyphot.db.session", "fastapi")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_building_the_cli_and_the_pipeline_imports_no_database_or_statistics() -> None:
    loaded = _modules_after(
        "import skyphot.cli\nskyphot.cli.build_parser()\nimport skyphot.pipeline.api"
    )
    assert "skyphot.pipeline.api" in loaded
    assert not loaded & set(_NOT_FOR_MEASURE), sorted(loaded & set(_NOT_FOR_MEASURE))

