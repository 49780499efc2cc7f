"""The web tests' stub engine plus two ways to hang, for the time-limit tests (importable
by worker processes: the harness puts this directory on their PYTHONPATH).

Header keywords besides the stub's: STUBWAIT (seconds of sleep: a slow analysis the soft
time limit interrupts), STUBHANG (seconds of sleep with SIGALRM blocked: a hang the soft
limit cannot reach, so the worker process must be killed by the hard limit).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from astropy.io import fits
from stub_engine import measure as stub_measure

from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.result import PhotometryResult


def measure(
    image: str | Path,
    config: MeasureConfig,
    *,
    diagnostics: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> PhotometryResult:
    header = fits.getheader(image)
    if progress is not None:
        progress("fault engine")
    time.sleep(float(header.get("STUBWAIT", 0.0)))
    block = float(header.get("STUBHANG", 0.0))
    if block:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(block)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
    return stub_measure(image, config, diagnostics=diagnostics, progress=progress)

