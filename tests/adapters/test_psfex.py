"""The PSFEx model meets the PSFModel protocol: right FWHM, unit flux, right centre."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skyphot.adapters._process import available
from skyphot.adapters.psfex import PSFExModel, fit_psf_psfex, read_psfex_model
from skyphot.core.psf import PSFModel
from skyphot.errors import DetectionError, InputError

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(not (available("psfex") and available("source-extractor")),
                       reason="psfex or source-extractor is not installed"),
]


@pytest.fixture(scope="module")
def fitted(sim_frame) -> PSFExModel:
    f = sim_frame
    return fit_psf_psfex(f.data - f.sky, rms=f.noise, sampling=1.0)


def _centroid(stamp: np.ndarray, x0: int, y0: int) -> tuple[float, float]:
    jj, ii = np.indices(stamp.shape)
    total = stamp.sum()
    return float((stamp * (ii + x0)).sum() / total), float((stamp * (jj + y0)).sum() / total)


def test_fwhm_matches_truth_within_5_percent(sim_frame, fitted: PSFExModel) -> None:
    f = sim_frame
    assert fitted.n_accepted >= 50
    for x, y in [(256, 256), (40, 60), (470, 450), (100, 400)]:
        assert fitted.fwhm_at(x, y) == pytest.approx(f.fwhm, rel=0.05)


def test_render_is_unit_normalised_and_centred(fitted: PSFExModel) -> None:
    model: PSFModel = fitted  # the protocol is satisfied
    for x, y in [(200.3, 100.7), (250.0, 250.0), (37.85, 401.5)]:
        stamp, x0, y0 = model.render(x, y, 41)
        assert stamp.shape == (41, 41)
        assert stamp.sum() == pytest.approx(1.0, abs=2e-3)
        assert x0 == int(np.floor(x + 0.5)) - 20 and y0 == int(np.floor(y + 0.5)) - 20
        cx, cy = _centroid(stamp, x0, y0)
        # PSFEx centres its model on the windowed centroids of the stars: a few 0.01 px.
        assert cx == pytest.approx(x, abs=0.05)
        assert cy == pytest.approx(y, abs=0.05)


def test_render_matches_the_true_pixel_integrated_psf(sim_frame, fitted: PSFExModel,
                                                      moffat) -> None:
    f = sim_frame
    x, y = 300.4, 210.8
    stamp, x0, y0 = fitted.render(x, y, 25)
    jj, ii = np.mgrid[y0 : y0 + 25, x0 : x0 + 25]
    truth = moffat(ii - x, jj - y, f.fwhm, f.beta)
    # Pixel by pixel within 5% of the peak, and the core within 2%.
    assert np.max(np.abs(stamp - truth)) < 0.05 * truth.max()
    assert stamp.max() == pytest.approx(truth.max(), rel=0.02)


def test_truncated_stamp_holds_less_than_all_flux(fitted: PSFExModel) -> None:
    small, _, _ = fitted.render(250.2, 250.6, 5)
    assert 0.5 < small.sum() < 0.95
    with pytest.raises(InputError, match="at least 1 pixel"):
        fitted.render(250, 250, 0)


def test_variable_psf_follows_the_field(make_sim) -> None:
    # FWHM grows from 3.0 px on the left to 4.4 px on the right: the polynomial terms must
    # be attached to the right coordinate.
    f = make_sim(fwhm=3.7, fwhm_slope_x=1.4, n_stars=200, seed=7)
    model = fit_psf_psfex(f.data - f.sky, rms=f.noise, sampling=1.0, degree=2)
    for x in (60.0, 256.0, 450.0):
        for y in (60.0, 450.0):
            assert model.fwhm_at(x, y) == pytest.approx(f.fwhm_at(x), rel=0.05)
    assert model.fwhm_at(450, 256) - model.fwhm_at(60, 256) > 0.8


def test_auto_sampling_also_keeps_the_contract(make_sim) -> None:
    f = make_sim(fwhm=2.6, seed=11)
    model = fit_psf_psfex(f.data - f.sky, rms=f.noise)  # PSFEx picks a finer step
    assert model.sampling < 1.0
    assert model.fwhm_at(256, 256) == pytest.approx(f.fwhm, rel=0.05)
    stamp, x0, y0 = model.render(123.25, 321.75, 31)
    assert stamp.sum() == pytest.approx(1.0, abs=5e-3)
    cx, cy = _centroid(stamp, x0, y0)
    assert (cx, cy) == pytest.approx((123.25, 321.75), abs=0.05)


def test_too_few_stars_is_a_detection_error(make_sim) -> None:
    f = make_sim(n_stars=3, seed=2)
    with pytest.raises(DetectionError, match="PSFEx accepted only"):
        fit_psf_psfex(f.data - f.sky, rms=f.noise, min_stars=5)


def test_reading_something_else_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(path)
    with pytest.raises(InputError, match="not a readable PSFEx model file"):
        read_psfex_model(path)
