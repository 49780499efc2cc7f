"""The per-run alternatives behind the same result: SExtractor detection, SCAMP astrometry."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyphot.adapters._process import available
from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig


def _config(frame, **extra: object) -> MeasureConfig:  # type: ignore[no-untyped-def]
    truth = frame.sim.truth
    return MeasureConfig.model_validate(
        {
            "target": {"ra": truth.ra, "dec": truth.dec},
            "catalog": {"path": str(frame.catalog)},
            "target_color": truth.color,
            **extra,
        }
    )


@pytest.mark.tools
@pytest.mark.skipif(not available("source-extractor"), reason="apt-get install source-extractor")
def test_sextractor_detection_gives_the_same_answer(small_frame) -> None:  # type: ignore[no-untyped-def]
    sep_result = measure(small_frame.image, _config(small_frame))
    sex_result = measure(
        small_frame.image, _config(small_frame, detection={"method": "sextractor"})
    )
    truth = small_frame.sim.truth
    assert sex_result.mag is not None and sex_result.magerr is not None
    assert abs(sex_result.mag - truth.mag) < 4 * sex_result.magerr
    # Detection only feeds astrometry and the PSF stars: the photometry barely moves.
    assert sex_result.mag == pytest.approx(sep_result.mag, abs=0.01)
    assert sex_result.fwhm_px == pytest.approx(sep_result.fwhm_px, rel=0.05)


@pytest.mark.tools
@pytest.mark.skipif(not available("scamp"), reason="apt-get install scamp")
def test_scamp_astrometry(small_frame, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = measure(small_frame.image, _config(small_frame, astrometry={"method": "scamp"}))
    truth = small_frame.sim.truth
    assert result.astrometry_method == "scamp"
    assert abs(result.x - truth.x) < 0.5 and abs(result.y - truth.y) < 0.5
    assert result.mag is not None and result.magerr is not None
    assert abs(result.mag - truth.mag) < 4 * result.magerr


@pytest.mark.tools
@pytest.mark.skipif(not available("scamp"), reason="apt-get install scamp")
def test_scamp_astrometry_on_a_galactic_frame(tmp_path: Path) -> None:
    """SCAMP matches in ICRS: a galactic header WCS is re-expressed in ICRS first."""
    from skyphot.testing import SimulationParams, simulate_frame

    sim = simulate_frame(
        SimulationParams(shape=(400, 500), target_mag=17.0, wcs_frame="galactic"), seed=5
    )
    paths = sim.write(tmp_path)
    config = MeasureConfig.model_validate({
        "target": {"ra": sim.truth.ra, "dec": sim.truth.dec},
        "catalog": {"path": str(paths.catalog)}, "target_color": sim.truth.color,
        "astrometry": {"method": "scamp"},
    })
    result = measure(paths.image, config)
    assert result.astrometry_method == "scamp"
    assert abs(result.x - sim.truth.x) < 0.5 and abs(result.y - sim.truth.y) < 0.5
    assert result.mag is not None and result.magerr is not None
    assert abs(result.mag - sim.truth.mag) < 4 * result.magerr
