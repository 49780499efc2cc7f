"""Photometric systems per band and every degradation reported (issue 8, items 1 and 3).

Each degradation is produced on a small simulated frame; the result must carry its flag
bit and a note saying what happened, and the measurement must still match the truth within
its reported error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from skyphot.core.units import VEGA_TO_AB
from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.result import PhotometryResult, QualityFlag
from skyphot.testing import SimulationParams, simulate_frame

DEGRADATIONS = (
    QualityFlag.COLOR_TERM_DROPPED
    | QualityFlag.SPATIAL_ORDER_LOWERED
    | QualityFlag.DETECTION_THRESHOLD_RAISED
    | QualityFlag.FRAME_DEGRADED
)


def _measure(
    tmp_path: Path, params: SimulationParams, seed: int, *, catalog_edit: object = None,
    **extra: object,
) -> tuple[object, PhotometryResult]:
    sim = simulate_frame(params, seed=seed)
    paths = sim.write(tmp_path, stem=f"sim{seed}")
    if callable(catalog_edit):
        table = Table.read(paths.catalog)
        catalog_edit(table)
        table.write(paths.catalog, overwrite=True)
    catalog = {"path": str(paths.catalog), **extra.pop("catalog", {})}  # type: ignore[dict-item]
    config = MeasureConfig.model_validate(
        {"target": {"ra": sim.truth.ra, "dec": sim.truth.dec}, "catalog": catalog, **extra}
    )
    return sim, measure(paths.image, config)


def _close_to_truth(sim: object, result: PhotometryResult) -> None:
    assert result.mag is not None and result.magerr is not None
    assert abs(result.mag - sim.truth.mag) < 4 * result.magerr  # type: ignore[attr-defined]


def test_clean_frame_has_no_degradation(small_frame) -> None:  # type: ignore[no-untyped-def]
    config = MeasureConfig.model_validate({
        "target": {"ra": small_frame.sim.truth.ra, "dec": small_frame.sim.truth.dec},
        "catalog": {"path": str(small_frame.catalog)},
    })
    result = measure(small_frame.image, config)
    assert result.flags & DEGRADATIONS == 0
    assert result.notes == []
    assert result.magsys == "AB"
    assert result.flux == pytest.approx(10 ** (-0.4 * (result.mag - 23.9)), rel=1e-6)  # type: ignore[operator]


def test_vega_band_gives_vega_magsys_and_offset_flux(tmp_path: Path) -> None:
    params = SimulationParams(shape=(400, 500), target_mag=16.5, bands=("B", "V"), filter="V")
    sim, result = _measure(tmp_path, params, seed=12, catalog={"magsys": "Vega"},
                           target_color=0.5)
    assert result.band == "V" and result.magsys == "Vega"
    _close_to_truth(sim, result)
    assert result.mag is not None
    expected = 10 ** (-0.4 * (result.mag + VEGA_TO_AB["V"] - 23.9))
    assert result.flux == pytest.approx(expected, rel=1e-6)
    assert result.aperture.flux > 0


def test_colour_term_dropped_is_flagged_and_noted(tmp_path: Path) -> None:
    def one_colour_for_all(table: Table) -> None:
        # every catalog star gets g-r = 0.5: no colour spread to fit a colour term on
        table["g"] = np.array(table["r"], dtype=float) + 0.5

    params = SimulationParams(shape=(400, 500), target_mag=17.0)
    sim, result = _measure(tmp_path, params, seed=13, catalog_edit=one_colour_for_all)
    assert "COLOR_TERM_DROPPED" in result.flag_names
    assert result.flags & QualityFlag.COLOR_TERM_DROPPED
    assert result.color_term is None and result.color_source == "none"
    assert any(n.startswith("colour term not fitted: colour spread") for n in result.notes)
    # the simulated colour term (0.08 x g-r) is absorbed into the zero point for a typical
    # colour; the error budget says how well
    assert result.mag is not None and result.magerr is not None
    assert abs(result.mag - sim.truth.mag) < 4 * result.magerr + 0.08 * 0.5  # type: ignore[attr-defined]


def test_spatial_order_lowered_is_flagged_and_noted(tmp_path: Path) -> None:
    params = SimulationParams(shape=(300, 400), target_mag=17.0, n_stars=60)
    sim, result = _measure(tmp_path, params, seed=3, calibration={"spatial_order": 3},
                           target_color=0.5)
    assert "SPATIAL_ORDER_LOWERED" in result.flag_names
    assert any(n.startswith("spatial order lowered from 3 to") for n in result.notes)
    _close_to_truth(sim, result)


def test_raised_detection_threshold_is_flagged_and_noted(tmp_path: Path) -> None:
    # bright, crowded stars and a small extractor buffer: SEP overflows at 5 sigma
    params = SimulationParams(shape=(300, 400), target_mag=17.0, n_stars=400, mag_bright=11.0)
    sim, result = _measure(tmp_path, params, seed=3, detection={"max_pixstack": 1000},
                           target_color=0.5)
    assert "DETECTION_THRESHOLD_RAISED" in result.flag_names
    assert any(n.startswith("detection threshold raised from 5 to") for n in result.notes)
    _close_to_truth(sim, result)


def test_notes_reach_the_json(small_frame, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    params = SimulationParams(shape=(300, 400), target_mag=17.0, n_stars=60)
    _, result = _measure(tmp_path, params, seed=3, calibration={"spatial_order": 3})
    data = result.model_dump(mode="json")
    assert data["notes"] == result.notes and data["notes"]
    assert data["flags"] & int(QualityFlag.SPATIAL_ORDER_LOWERED)
