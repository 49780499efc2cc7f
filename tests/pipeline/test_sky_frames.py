"""Simulated frames whose header WCS is in each celestial system (ICRS, FK5 J2000, FK4
B1950, galactic, ecliptic) are measured like ICRS ones: the target lands on its true pixel
and its magnitude matches the truth within the reported error; a blind solution keeps the
frame's own system."""

from __future__ import annotations

from pathlib import Path

import pytest
from astropy.io import fits
from astropy.wcs import WCS

from skyphot.adapters._process import available
from skyphot.core.wcs_utils import celestial_frame
from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.recipe import recipe_for
from skyphot.pipeline.report import build_result
from skyphot.pipeline.runner import run_stages
from skyphot.pipeline.state import FrameState, need
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


needs_astrometry_net = pytest.mark.skipif(
    not (available("solve-field") and available("build-astrometry-index")),
    reason="astrometry.net is not installed (apt-get install astrometry.net)",
)


@needs_astrometry_net
@pytest.mark.parametrize(
    ("frame", "how"),
    [("galactic", "requested"), ("fk4", "refinement fails"), ("ecliptic", "refinement fails")],
)
def test_a_blind_solution_is_expressed_in_the_frames_own_system(
    tmp_path: Path, frame: str, how: str
) -> None:
    # "refinement fails": the header WCS is 4 arcmin off, beyond what refinement searches
    offset = 240.0 if how == "refinement fails" else 5.0
    params = SimulationParams(
        shape=(600, 800), target_mag=18.0, wcs_frame=frame,  # type: ignore[arg-type]
        wcs_offset_arcsec=offset,
    )
    sim = simulate_frame(params, seed=6)
    paths = sim.write(tmp_path)
    header = WCS(fits.getheader(paths.image))
    config = MeasureConfig.model_validate({
        "target": {"ra": sim.truth.ra, "dec": sim.truth.dec},
        "catalog": {"path": str(paths.catalog)}, "target_color": sim.truth.color,
        "astrometry": {"blind": "always" if how == "requested" else "auto"},
    })
    outcome = run_stages(recipe_for(config), FrameState(image_path=str(paths.image),
                                                        config=config))
    result = build_result(outcome.state, outcome.timings)
    assert result.astrometry_method == "astrometry.net"
    if how == "refinement fails":
        assert any(n.startswith("header WCS could not be refined") for n in result.notes)
    solved = need(outcome.state.astrometry, "the solution").wcs
    assert [c[:4] for c in solved.wcs.ctype] == [c[:4] for c in header.wcs.ctype]
    assert solved.wcs.radesys == header.wcs.radesys
    assert type(celestial_frame(solved)) is type(celestial_frame(header))
    if frame == "fk4":
        assert solved.wcs.radesys == "FK4" and solved.wcs.equinox == pytest.approx(1950.0)
    assert result.astrometry_rms_arcsec < 0.3
    assert abs(result.x - sim.truth.x) < 0.3 and abs(result.y - sim.truth.y) < 0.3
    assert result.mag is not None and result.magerr is not None
    assert abs(result.mag - sim.truth.mag) < 4 * result.magerr


@needs_astrometry_net
def test_a_blind_solution_without_a_header_wcs_is_icrs(tmp_path: Path) -> None:
    params = SimulationParams(shape=(600, 800), target_mag=18.0, include_wcs=False)
    sim = simulate_frame(params, seed=4)
    paths = sim.write(tmp_path)
    config = MeasureConfig.model_validate({
        "target": {"ra": sim.truth.ra, "dec": sim.truth.dec},
        "catalog": {"path": str(paths.catalog)}, "target_color": sim.truth.color,
        "astrometry": {"pixel_scale_arcsec": params.pixel_scale},
    })
    outcome = run_stages(recipe_for(config), FrameState(image_path=str(paths.image),
                                                        config=config))
    solved = need(outcome.state.astrometry, "the solution").wcs
    # astrometry.net writes EQUINOX 2000 without RADESYS, which FITS reads as FK5
    assert solved.wcs.radesys == "ICRS" and type(celestial_frame(solved)).__name__ == "ICRS"
    result = build_result(outcome.state, outcome.timings)
    assert abs(result.x - sim.truth.x) < 0.5 and abs(result.y - sim.truth.y) < 0.5
