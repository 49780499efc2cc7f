"""WCS-to-WCS resampling: the interpolated pixel map against exact WCS calls, and flux."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from scipy.ndimage import map_coordinates

from skyphot.core.resample import nearest_pixels, pixel_map, resample, sample_nearest
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
