"""A non-linear (plate-like) response on a small simulated frame: the zero point taken on the
fitted response curve at the target's instrumental magnitude recovers its truth, the linear
model does not (issue 8, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.result import PhotometryResult, QualityFlag
from skyphot.testing import SimulatedFrame, SimulationParams, simulate_frame

# 0.06 mag per mag^2 about r = 17: the 14-20.5 mag calibrators span ~0.7 mag of response
PLATE = SimulationParams(shape=(400, 500), target_mag=19.5, response=0.06, response_pivot=17.0)


def _measure(
    tmp_path: Path, sim: SimulatedFrame, seed: int, order: int | str
) -> PhotometryResult:
    paths = sim.write(tmp_path, stem=f"sim{seed}")
    config = MeasureConfig.model_validate({
        "target": {"ra": sim.truth.ra, "dec": sim.truth.dec},
        "catalog": {"path": str(paths.catalog)},
        "calibration": {"response_order": order},
    })
    return measure(paths.image, config)


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_order_two_recovers_the_truth_where_order_zero_is_biased(
    tmp_path: Path, seed: int
) -> None:
    sim = simulate_frame(PLATE, seed=seed)
    linear = _measure(tmp_path, sim, seed, 0)
    curved = _measure(tmp_path, sim, seed, 2)
    assert linear.mag is not None and linear.magerr is not None
    assert curved.mag is not None and curved.magerr is not None
    assert abs(linear.mag - sim.truth.mag) > linear.magerr
    assert abs(curved.mag - sim.truth.mag) < 2 * curved.magerr
    assert curved.flags & QualityFlag.RESPONSE_FITTED
    assert not curved.flags & QualityFlag.EXTRAPOLATED_RESPONSE
    assert not linear.flags & QualityFlag.RESPONSE_FITTED
    assert any(n.startswith("non-linear response: zero point of order 2") for n in curved.notes)


def test_auto_fits_the_curve_on_a_plate_and_none_on_a_linear_frame(tmp_path: Path) -> None:
    plate = _measure(tmp_path / "plate", simulate_frame(PLATE, seed=1), 1, "auto")
    assert plate.flags & QualityFlag.RESPONSE_FITTED
    assert any("response order 2 chosen automatically" in n for n in plate.notes)
    linear_params = SimulationParams(shape=(400, 500), target_mag=19.5)
    linear = _measure(tmp_path / "linear", simulate_frame(linear_params, seed=1), 1, "auto")
    assert not linear.flags & (QualityFlag.RESPONSE_FITTED | QualityFlag.EXTRAPOLATED_RESPONSE)
    assert not any("response" in n for n in linear.notes)


def test_a_target_fainter_than_every_calibrator_is_flagged_extrapolated(tmp_path: Path) -> None:
    # calibrators reach r ~ 20.5 (the catalog depth); a 21 mag target is off their range
    params = SimulationParams(shape=(400, 500), target_mag=21.0, response=0.06,
                              response_pivot=17.0)
    result = _measure(tmp_path, simulate_frame(params, seed=1), 1, 2)
    assert result.flags & QualityFlag.EXTRAPOLATED_RESPONSE
    assert any(n.startswith("response extrapolated") for n in result.notes)
