"""Run an explicit list of stages: time each, tag the log, and name the stage that failed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from skyphot.errors import StageError
from skyphot.pipeline.state import FrameState

logger = logging.getLogger("skyphot.pipeline")


class Stage(Protocol):
    """One step of a recipe. ``name`` tags the log, the timings and any failure."""

    @property
    def name(self) -> str:
        """Short stage name: tags the log, the timings and any failure."""
        ...

    def run(self, state: FrameState) -> FrameState:
        """Return a new state with this stage's products added."""
        ...


@dataclass(frozen=True)
class RunOutcome:
    """The final state and the seconds each stage took (plus ``total``)."""

    state: FrameState
    timings: dict[str, float]


def run_stages(
    stages: Sequence[Stage],
    state: FrameState,
    *,
    progress: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run ``stages`` in order.

    Any exception in a stage — a ``SkyphotError`` or a bug — becomes a ``StageError`` naming
    the stage, chained to the original. Nothing is swallowed.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    for stage in stages:
        if progress is not None:
            progress(stage.name)
        t0 = time.perf_counter()
        try:
            state = stage.run(state)
        except StageError:
            raise
        except Exception as err:
            logger.debug("[%s] failed", stage.name, exc_info=True)
            raise StageError(stage.name, err) from err
        timings[stage.name] = time.perf_counter() - t0
        logger.info("[%s] %.3f s", stage.name, timings[stage.name])
    timings["total"] = time.perf_counter() - start
    return RunOutcome(state=state, timings=timings)
