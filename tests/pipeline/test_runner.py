from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from skyphot.errors import CalibrationError, StageError
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.runner import run_stages
from skyphot.pipeline.state import FrameState, need


@dataclass(frozen=True)
class AddNote:
    name: str

    def run(self, state: FrameState) -> FrameState:
        return replace(state, notes=(*state.notes, self.name))


@dataclass(frozen=True)
class Fail:
    error: Exception
    name: str = "calibrate"

    def run(self, state: FrameState) -> FrameState:
        raise self.error


def _state() -> FrameState:
    return FrameState(image_path="x.fits", config=MeasureConfig(target={"ra": 1.0, "dec": 2.0}))


def test_stages_run_in_order_and_are_timed() -> None:
    seen: list[str] = []
    outcome = run_stages([AddNote("a"), AddNote("b")], _state(), progress=seen.append)
    assert outcome.state.notes == ("a", "b")
    assert seen == ["a", "b"]
    assert set(outcome.timings) == {"a", "b", "total"}
    assert outcome.timings["total"] >= outcome.timings["a"] + outcome.timings["b"]


def test_input_state_is_not_mutated() -> None:
    state = _state()
    run_stages([AddNote("a")], state)
    assert state.notes == ()


def test_skyphot_error_is_wrapped_with_the_stage_name() -> None:
    cause = CalibrationError("only 3 usable calibration stars")
    with pytest.raises(StageError) as info:
        run_stages([AddNote("a"), Fail(cause)], _state())
    assert info.value.stage == "calibrate"
    assert info.value.reason is cause
    assert str(info.value) == "calibrate: only 3 usable calibration stars"
    assert info.value.__cause__ is cause


def test_a_bug_is_wrapped_as_internal_error_not_swallowed() -> None:
    with pytest.raises(StageError, match=r"^calibrate: internal error \(ZeroDivisionError"):
        run_stages([Fail(ZeroDivisionError("division by zero"))], _state())


def test_need_names_the_missing_product() -> None:
    with pytest.raises(RuntimeError, match="the PSF is needed"):
        need(None, "the PSF")


def test_a_stage_reading_released_pixels_is_a_recipe_error() -> None:
    import numpy as np
    from astropy.io.fits import Header

    from skyphot.io.frame import Frame
    from skyphot.pipeline.state import frame_pixels

    frame = Frame(data=np.ones((6, 5), np.float32), header=Header(), path="x.fits",
                  hdu_index=0, hdu_name="PRIMARY")
    released = frame.without_pixels()
    assert released.shape == (6, 5) and released.released and released.data.nbytes == 4 * 30
    assert released.data.strides == (0, 0)  # a broadcast placeholder: no memory behind it
    assert frame_pixels(frame) is frame.data
    with pytest.raises(RuntimeError, match="the background stage released them"):
        frame_pixels(released)
