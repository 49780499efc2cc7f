"""The one entry point the CLI, the web workers and users' scripts call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.result import PhotometryResult

ProgressCallback = Callable[[str], None]
"""Called with a stage name when that stage starts."""


def measure(
    image: str | Path,
    config: MeasureConfig,
    *,
    diagnostics: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> PhotometryResult:
    """Measure the target of ``config`` on the FITS frame ``image``.

    Writes a diagnostic PNG to ``diagnostics`` when given. Raises ``StageError`` (a
    ``SkyphotError``) naming the failing stage; the original error is its ``reason``.
    """
    raise NotImplementedError("pipeline integration in progress")
