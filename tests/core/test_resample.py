"""WCS-to-WCS resampling: the interpolated pixel map against exact WCS calls, and flux."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from scipy.ndimage import map_coordinates

from skyphot.core.psf import MoffatPSF
from skyphot.core.resample import (
    PixelMap,
    nearest_pixels,
    pixel_map,
    pixel_map_jacobian,
    psf_on_grid,
    resample,
    sample_nearest,
)
from skyphot.errors import InputError


def _wcs(scale: float, rot_deg: float, crpix: tuple[float, float], ra: float = 150.0) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, 2.0]
    w.wcs.crpix = list(crpix)
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    w.wcs.cd = np.array([[-c, s], [s, c]]) * scale / 3600.0
    w.wcs.set()
    return w


def test_pixel_map_matches_exact_wcs_and_area() -> None:
    dst = _wcs(0.6, 0.0, (300.0, 200.0))
    src = _wcs(0.45, 17.0, (420.0, 380.0), ra=150.01)
    pm = pixel_map(src, dst, (400, 500), origin=(20, 10))
    rng = np.random.default_rng(1)
    yi, xi = rng.integers(0, 400, 200), rng.integers(0, 500, 200)
    ra, dec = dst.all_pix2world(xi + 20.0, yi + 10.0, 0)
    ex, ey = src.all_world2pix(ra, dec, 0)
    assert np.max(np.hypot(pm.x[yi, xi] - ex, pm.y[yi, xi] - ey)) < 0.01
    assert np.allclose(pm.area_ratio, (0.6 / 0.45) ** 2, rtol=1e-3)


def test_resampling_conserves_flux_of_a_smooth_source() -> None:
    src = _wcs(0.45, 17.0, (200.0, 200.0))
    dst = _wcs(0.6, 0.0, (150.0, 150.0))
    yy, xx = np.indices((400, 400))
    image = 1000.0 * np.exp(-((xx - 201.3) ** 2 + (yy - 198.7) ** 2) / (2 * 4.0**2))
    out = resample(image, pixel_map(src, dst, (300, 300)), order=5)
    assert np.nansum(out) == pytest.approx(image.sum(), rel=1e-3)
    outside = resample(image, pixel_map(src, _wcs(0.6, 0.0, (150.0, 150.0), ra=151.0),
                                        (50, 50)), order=3)
    assert np.all(np.isnan(outside))
    mask = sample_nearest(image > 500, pixel_map(src, dst, (300, 300)), fill=False)
    assert mask.dtype == bool and 0 < mask.sum() < 100
    with pytest.raises(InputError, match="order must be 0, 1, 3 or 5"):
        resample(image, pixel_map(src, dst, (10, 10)), order=2)


@pytest.mark.parametrize("order", [1, 5])
def test_banded_resampling_equals_one_spline_evaluation(order: int) -> None:
    src = _wcs(0.45, 17.0, (200.0, 200.0))
    dst = _wcs(0.6, 0.0, (150.0, 150.0))
    image = np.random.default_rng(3).normal(size=(400, 400))
    pm = pixel_map(src, dst, (301, 300))
    out = resample(image, pm, order=order)
    one = map_coordinates(image, [pm.y, pm.x], order=order, mode="constant") * pm.area_ratio
    ok = np.isfinite(out)
    assert ok.sum() > 0.5 * out.size
    assert np.array_equal(out[ok], one[ok])


def test_nearest_pixels_are_shared_by_several_maps() -> None:
    src = _wcs(0.45, 17.0, (200.0, 200.0))
    dst = _wcs(0.6, 0.0, (150.0, 150.0), ra=150.02)  # partly off the source
    pm = pixel_map(src, dst, (300, 300))
    near = nearest_pixels(pm, (400, 400))
    assert 0 < near.inside.sum() < near.inside.size
    image = np.arange(400 * 400, dtype=float).reshape(400, 400)
    got = sample_nearest(image, pm, fill=-1.0, nearest=near)
    xi, yi = np.rint(pm.x).astype(int), np.rint(pm.y).astype(int)
    inside = (xi >= 0) & (xi < 400) & (yi >= 0) & (yi < 400)
    assert np.array_equal(inside, near.inside) and not near.all_inside
    assert np.all(got[~inside] == -1.0)
    assert np.array_equal(got[inside], image[yi[inside], xi[inside]])
    with pytest.raises(InputError, match="another pixel map or image"):
        sample_nearest(image, pixel_map(src, dst, (10, 10)), fill=0.0, nearest=near)


def test_jacobian_of_a_linear_map_is_its_matrix_inside_and_on_the_edges() -> None:
    a = np.array([[0.8, -0.3], [0.25, 1.1]])
    yy, xx = np.mgrid[:20, :30].astype(float)
    pmap = PixelMap(
        x=a[0, 0] * xx + a[0, 1] * yy + 5.0, y=a[1, 0] * xx + a[1, 1] * yy - 2.0,
        area_ratio=np.ones(xx.shape),
    )
    for i, j in [(10, 7), (0, 0), (29, 19), (0, 19)]:
        np.testing.assert_allclose(pixel_map_jacobian(pmap, i, j), a, atol=1e-12)


def _second_moments(stamp: np.ndarray) -> np.ndarray:
    h = stamp.shape[0] // 2
    dy, dx = np.mgrid[-h : h + 1, -h : h + 1].astype(float)
    w = stamp / stamp.sum()
    return np.array([[np.sum(w * dx * dx), np.sum(w * dx * dy)],
                     [np.sum(w * dx * dy), np.sum(w * dy * dy)]])


def test_psf_on_grid_has_unit_sum_and_the_maps_size_and_shape() -> None:
    """Source pixels half the destination's, rotated by 30 deg: on the destination grid the
    (elongated) PSF's second moments are the source's through the inverse map, and an
    identity map gives the source's own stamp back."""
    psf = MoffatPSF.constant(6.0, beta=3.0, e1=0.2, e2=0.1)
    size = 41
    native, _, _ = psf.render(100.0, 100.0, 81)
    same = psf_on_grid(psf, 100.0, 100.0, np.eye(2), size, order=5)
    direct, _, _ = psf.render(100.0, 100.0, size)
    np.testing.assert_allclose(same, direct / direct.sum(), atol=2e-4)
    c, s = np.cos(np.radians(30.0)), np.sin(np.radians(30.0))
    jac = 2.0 * np.array([[c, -s], [s, c]])
    out = psf_on_grid(psf, 100.0, 100.0, jac, size, order=5)
    assert out.shape == (size, size) and abs(out.sum() - 1.0) < 1e-12 and out.min() >= 0.0
    inv = np.linalg.inv(jac)
    expected = inv @ _second_moments(native) @ inv.T
    np.testing.assert_allclose(_second_moments(out), expected, rtol=0.03, atol=0.01)
