"""The one entry point the CLI, the web workers and users' scripts call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.recipe import recipe_for
from skyphot.pipeline.report import build_result
from skyphot.pipeline.result import PhotometryResult
from skyphot.pipeline.runner import run_stages
from skyphot.pipeline.state import FrameState

ProgressCallback = Callable[[str], None]
"""Called with a stage name when that stage starts (and with "diagnostics", "done")."""


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
    state = FrameState(image_path=str(image), config=config)
    outcome = run_stages(recipe_for(config), state, progress=progress)
    result = build_result(outcome.state, outcome.timings)
    if diagnostics is not None:
        from skyphot.pipeline.diagnostics import WriteDiagnostics

        run_stages(
            [WriteDiagnostics(result=result, path=Path(diagnostics))],
            outcome.state,
            progress=progress,
        )
    return result
