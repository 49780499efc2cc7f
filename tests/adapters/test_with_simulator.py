"""The adapters on the project's own simulator (skyphot.testing), as the built-in path is tested.

These frames carry everything the pipeline meets: a sky gradient, Poisson noise, a varying
and slightly elliptical PSF, SIP distortion and a header WCS that is a little off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS

from skyphot.adapters._process import available
from skyphot.adapters.astrometry_net import build_index, solve_field
from skyphot.adapters.scamp import refine_wcs_scamp
from skyphot.adapters.sextractor import detect_sources_sextractor
from skyphot.catalogs.base import ReferenceCatalog

simulator = pytest.importorskip("skyphot.testing")

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(not available("source-extractor"),
                       reason="source-extractor is not installed"),
]

SHAPE = (512, 512)


@pytest.fixture(scope="module")
def frame():
    params = simulator.SimulationParams(shape=SHAPE, n_stars=400, n_cosmic_rays=0,
                                        bad_column=False, target_mag=None)
    return simulator.simulate_frame(params, seed=3)


def _truth_xy(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    stars = frame.stars
    x, y = np.asarray(stars["x"], float), np.asarray(stars["y"], float)
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(d, np.inf)
    clean = (np.asarray(stars["on_frame"], bool) & ~np.asarray(stars["saturated"], bool)
             & (d.min(axis=1) > 12))
    return x, y, clean


def test_sextractor_positions_on_the_simulator(frame) -> None:
    x, y, clean = _truth_xy(frame)
    sources = detect_sources_sextractor(frame.data, threshold_sigma=5,
                                        saturation=frame.params.saturation)
    d = np.hypot(sources.x[:, None] - x[None, :], sources.y[:, None] - y[None, :])
    nearest = np.argmin(d, axis=1)
    matched = d[np.arange(len(sources)), nearest] < 2
    flux = np.asarray(frame.stars["flux_adu"], float)
    # Bright clean stars (S/N > ~80 on this sky): centroid noise below 0.025 px.
    bright = matched & clean[nearest] & (flux[nearest] > 1e4)
    assert bright.sum() >= 5
    dist = d[np.arange(len(sources)), nearest][bright]
    assert np.all(dist < 0.1)
    # And no convention slip: over all clean matches the mean offset is ~0.
    good = matched & clean[nearest]
    dx = sources.x[good] - x[nearest[good]]
    dy = sources.y[good] - y[nearest[good]]
    assert abs(np.mean(dx)) < 4 * np.std(dx) / np.sqrt(dx.size)
    assert abs(np.mean(dy)) < 4 * np.std(dy) / np.sqrt(dy.size)


def test_scamp_corrects_the_simulated_header_wcs(frame) -> None:
    if not available("scamp"):
        pytest.skip("scamp is not installed")
    header_wcs = WCS(frame.header)
    sources = detect_sources_sextractor(frame.data, threshold_sigma=3)
    catalog = ReferenceCatalog(table=frame.catalog, bands=("r", "g"), name="simulated")
    solution = refine_wcs_scamp(sources, wcs=header_wcs, reference=catalog, shape=SHAPE)
    x, y, clean = _truth_xy(frame)
    stars = frame.stars
    on = clean & np.asarray(stars["in_catalog"], bool)
    before = header_wcs.all_world2pix(np.asarray(stars["ra"]), np.asarray(stars["dec"]), 0)
    after = solution.wcs.all_world2pix(np.asarray(stars["ra"]), np.asarray(stars["dec"]), 0)
    err_before = np.hypot(before[0] - x, before[1] - y)[on]
    err_after = np.hypot(after[0] - x, after[1] - y)[on]
    assert np.median(err_before) > 1.0  # the header really is off
    # ~50 matched stars, most faint (centroid noise 0.1-0.2 px), 12 parameters of a degree-2
    # fit to the SIP-distorted field: about 0.1 px rms expected.
    assert np.sqrt(np.mean(err_after**2)) < 0.2


def test_solve_field_recovers_a_frame_without_wcs(tmp_path: Path) -> None:
    if not (available("solve-field") and available("build-astrometry-index")):
        pytest.skip("astrometry.net is not installed")
    params = simulator.SimulationParams(shape=SHAPE, n_stars=250, n_cosmic_rays=0,
                                        bad_column=False, target_mag=None, include_wcs=False)
    frame = simulator.simulate_frame(params, seed=5)
    assert "CTYPE1" not in frame.header
    catalog = frame.catalog
    field_arcmin = SHAPE[1] * params.pixel_scale / 60
    build_index(np.asarray(catalog["ra"]), np.asarray(catalog["dec"]),
                np.asarray(catalog["r"]), out_dir=tmp_path, field_arcmin=field_arcmin)
    wcs = solve_field(frame.data, index_dir=tmp_path, scale_low=0.5 * params.pixel_scale,
                      scale_high=2.0 * params.pixel_scale, timeout=20)
    yy, xx = np.mgrid[0 : SHAPE[0] : 32, 0 : SHAPE[1] : 32]
    ra, dec = frame.true_wcs.all_pix2world(xx, yy, 0)
    x, y = wcs.all_world2pix(ra, dec, 0)
    assert np.max(np.hypot(x - xx, y - yy)) < 1.0
