"""What a job's form parameters become in the engine configuration."""

from __future__ import annotations

from pathlib import Path

from webtest_helpers import make_settings

from skyphot.db.models import Job, Source
from skyphot.jobs.runner import build_config


def test_form_parameters_reach_the_engine(tmp_path: Path) -> None:
    job = Job(
        params={
            "filter": "r", "mjd": 60370.5, "nsigma": 3.0, "target_color": 0.4,
            "engine": "stdpipe", "pixel_scale": 0.6, "catalog": "ps1",
        }
    )
    source = Source(id="sn", ra=150.1, dec=2.2)
    config = build_config(job, source, make_settings(tmp_path), gain=1.7, saturation=6e4)
    assert (config.target.ra, config.target.dec) == (150.1, 2.2)
    assert config.header.filter == "r" and config.header.mjd == 60370.5
    assert config.header.gain == 1.7 and config.header.saturation == 6e4
    assert config.nsigma == 3.0 and config.target_color == 0.4
    assert config.engine == "stdpipe"
    assert config.astrometry.pixel_scale_arcsec == 0.6
    assert config.catalog.name == "ps1" and config.catalog.path is None


def test_defaults_when_the_form_is_left_empty(tmp_path: Path) -> None:
    config = build_config(
        Job(params={}), Source(id="sn", ra=1.0, dec=-1.0), make_settings(tmp_path),
        gain=None, saturation=None,
    )
    assert config.engine == "skyphot" and config.nsigma == 5.0
    assert config.astrometry.pixel_scale_arcsec is None and config.target_color is None


def test_light_curve_point_keeps_flags_notes_and_band_system(tmp_path: Path) -> None:
    """The stored point (API JSON, CSV, page details) carries the result's notes and the
    band's magnitude system, from a real measurement of a degraded simulated frame."""
    from skyphot.jobs.runner import point_from_result
    from skyphot.pipeline.api import measure
    from skyphot.pipeline.config import MeasureConfig
    from skyphot.testing import SimulationParams, simulate_frame

    sim = simulate_frame(SimulationParams(shape=(300, 400), target_mag=17.0, n_stars=60), seed=3)
    paths = sim.write(tmp_path)
    config = MeasureConfig.model_validate({
        "target": {"ra": sim.truth.ra, "dec": sim.truth.dec},
        "catalog": {"path": str(paths.catalog)}, "calibration": {"spatial_order": 3},
    })
    result = measure(paths.image, config)
    assert result.notes
    point = point_from_result(Job(id=7, source_id="sn", owner_id=1), result, None)
    assert point.calibration["notes"] == result.notes
    assert "SPATIAL_ORDER_LOWERED" in point.calibration["flag_names"]
    assert point.magsys == result.magsys == "AB"
    assert point.flux == result.flux
