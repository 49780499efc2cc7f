"""SWarp puts the same sky on another grid: stars land where the target WCS says."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from skyphot.adapters._process import available
from skyphot.adapters.swarp import resample
from skyphot.errors import InputError, WCSError

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(not available("swarp"), reason="swarp is not installed"),
]


def _target(sim_frame, shape: tuple[int, int], scale: float, rotation: float,
            offset_arcsec: tuple[float, float] = (0.0, 0.0)) -> WCS:
    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    ra0, dec0 = sim_frame.wcs.wcs.crval
    wcs.wcs.crval = [ra0 + offset_arcsec[0] / 3600 / np.cos(np.deg2rad(dec0)),
                     dec0 + offset_arcsec[1] / 3600]
    wcs.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    r = np.deg2rad(rotation)
    wcs.wcs.cd = scale / 3600 * np.array([[-np.cos(r), np.sin(r)], [np.sin(r), np.cos(r)]])
    return wcs


def _measure(image: np.ndarray, x: float, y: float, radius: float,
             sigma: float) -> tuple[float, float, float]:
    """Gaussian-windowed centroid (fixed point, unbiased for symmetric stars) near (x, y) and
    the flux in a circular aperture of ``radius`` around it."""
    half = int(radius) + 3
    x0, y0 = round(x) - half, round(y) - half
    image = image[y0 : y0 + 2 * half + 1, x0 : x0 + 2 * half + 1]
    jj, ii = np.mgrid[y0 : y0 + 2 * half + 1, x0 : x0 + 2 * half + 1]
    cx, cy = x, y
    for _ in range(20):
        w = np.exp(-((ii - cx) ** 2 + (jj - cy) ** 2) / (2 * sigma**2)) * image
        cx, cy = (w * ii).sum() / w.sum(), (w * jj).sum() / w.sum()
    total = image[np.hypot(ii - cx, jj - cy) < radius].sum()
    return cx, cy, total


def test_stars_land_on_their_target_positions(sim_frame) -> None:
    f = sim_frame
    shape = (360, 400)
    target = _target(f, shape, scale=1.0, rotation=30.0, offset_arcsec=(20.0, -15.0))
    out, out_wcs = resample(f.data - f.sky, f.wcs, target_wcs=target, shape=shape)
    assert out.shape == shape and out.dtype == np.float32
    x, y = target.all_world2pix(f.ra, f.dec, 0)
    ny, nx = shape
    radius = 3 * f.fwhm * 1.2  # the target pixels are smaller: the star is wider in them
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(d, np.inf)
    isolated = d.min(axis=1) > radius + 10  # hardly any neighbour light in the aperture
    pick = (f.flux > 2e4) & isolated & (x > 15) & (x < nx - 16) & (y > 15) & (y < ny - 16)
    assert pick.sum() >= 6
    for xs, ys, flux in zip(x[pick], y[pick], f.flux[pick], strict=True):
        cx, cy, total = _measure(out, xs, ys, radius, f.fwhm * 1.2 / 2.3548)
        # Windowed centroids of bright stars: noise of about 0.01 px.
        assert abs(cx - xs) < 0.1 and abs(cy - ys) < 0.1
        # Flux conserved (1.2"->1.0" pixels): the aperture holds ~97% of a beta=3 Moffat.
        assert total / flux == pytest.approx(0.97, abs=0.03)
    assert np.allclose(out_wcs.wcs.crval, target.wcs.crval)
    assert np.allclose(out_wcs.pixel_scale_matrix, target.pixel_scale_matrix)


def test_identical_grid_returns_the_image(sim_frame) -> None:
    f = sim_frame
    out, _ = resample(f.data - f.sky, f.wcs, target_wcs=f.wcs, shape=f.shape)
    inner = (slice(5, -5), slice(5, -5))
    difference = out[inner] - (f.data - f.sky)[inner]
    assert np.max(np.abs(difference)) < 1e-3 * np.max(f.data - f.sky)


def test_uncovered_and_masked_pixels_are_nan(sim_frame) -> None:
    f = sim_frame
    shape = (200, 200)
    # Same scale and orientation, centred on the frame's right edge: target column 99.5 is
    # frame column nx - 1, so the right half of the target has no data.
    target = _target(f, shape, scale=1.2, rotation=12.0)
    target.wcs.crval = f.wcs.all_pix2world([[f.shape[1] - 1, f.shape[0] / 2]], 0)[0]
    mask = np.zeros(f.shape, dtype=bool)
    mask[:, -40:-20] = True
    out, _ = resample(f.data - f.sky, f.wcs, target_wcs=target, shape=shape, mask=mask,
                      resampling="BILINEAR")
    nan = np.isnan(out)
    assert nan[:, :55].mean() < 0.02  # covered
    assert nan[:, 102:].mean() > 0.98  # beyond the frame
    assert nan[:, 63:79].mean() > 0.9  # the masked stripe, frame columns nx-40 .. nx-21
    assert nan[:, 84:97].mean() < 0.02  # unmasked data between stripe and edge


def test_bad_inputs(sim_frame) -> None:
    f = sim_frame
    with pytest.raises(InputError, match="2-D image"):
        resample(np.zeros(5), f.wcs, target_wcs=f.wcs, shape=(5, 5))
    with pytest.raises(InputError, match="mask shape"):
        resample(f.data, f.wcs, target_wcs=f.wcs, shape=(5, 5), mask=np.zeros((3, 3), bool))
    pixel_only = WCS(naxis=2)
    with pytest.raises(WCSError, match="celestial WCS"):
        resample(f.data, pixel_only, target_wcs=f.wcs, shape=(5, 5))
