"""Simulated frames whose header WCS is in each celestial system (ICRS, FK5 J2000, FK4
B1950, galactic, ecliptic) are measured like ICRS ones: the target lands on its true pixel
and its magnitude matches the truth within the reported error."""

from __future__ import annotations

from pathlib import Path

import pytest
from astropy.io import fits

from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig
from skyphot.testing import SimulationParams, simulate_frame

CTYPE1 = {"icrs": "RA---TAN", "fk5": "RA---TAN", "fk4": "RA---TAN", "galactic": "GLON-TAN",
          "ecliptic": "ELON-TAN"}


@pytest.mark.parametrize("frame", sorted(CTYPE1))
@pytest.mark.parametrize("method", ["refine", "header"])
def test_frame_in_each_celestial_system(tmp_path: Path, frame: str, method: str) -> None:
    exact = {"wcs_offset_arcsec": 0.0, "wcs_rotation_error_deg": 0.0, "distortion": 0.0}
    params = SimulationParams(
        shape=(300, 400), target_mag=17.0, wcs_frame=frame,  # type: ignore[arg-type]
        **(exact if method == "header" else {}),  # type: ignore[arg-type]
    )
    sim = simulate_frame(params, seed=5)
    paths = sim.write(tmp_path)
    header = fits.getheader(paths.image)
    assert header["CTYPE1"] == CTYPE1[frame]
    if frame == "fk4":
        assert header["RADESYS"] == "FK4" and header["EQUINOX"] == 1950.0
    config = MeasureConfig.model_validate({
        "target": {"ra": sim.truth.ra, "dec": sim.truth.dec},
        "catalog": {"path": str(paths.catalog)}, "target_color": sim.truth.color,
        "astrometry": {"method": method},
    })
    result = measure(paths.image, config)
    assert abs(result.x - sim.truth.x) < 0.3 and abs(result.y - sim.truth.y) < 0.3
    assert result.mag is not None and result.magerr is not None
    assert abs(result.mag - sim.truth.mag) < 4 * result.magerr
    if method == "refine":
        assert result.astrometry_rms_arcsec < 0.3
