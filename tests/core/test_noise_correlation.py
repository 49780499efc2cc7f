"""Correlation of resampled white noise: the kernel-based ACF against Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from skyphot.core.noise_correlation import resampled_noise_acf
from skyphot.errors import InputError


def _jacobian(scale: float, rotation_deg: float) -> np.ndarray:
    th = math.radians(rotation_deg)
    return scale * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])


def _monte_carlo_acf(jac: np.ndarray, order: int, half: int, seed: int) -> np.ndarray:
    """Empirical ACF of unit white noise resampled (flux conserving) with the affine map
    ``jac``, relative to the white-equivalent variance |det J|."""
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(700, 700))
    n = 300
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    c = 350.0 - jac @ np.array([n / 2, n / 2])
    sx = jac[0, 0] * xx + jac[0, 1] * yy + c[0]
    sy = jac[1, 0] * xx + jac[1, 1] * yy + c[1]
    area = abs(float(np.linalg.det(jac)))
    out = map_coordinates(src, [sy, sx], order=order, prefilter=order > 1) * area
    out = out[20:-20, 20:-20]
    power = np.abs(np.fft.fft2(out)) ** 2
    acf = np.real(np.fft.ifft2(power)) / out.size / area
    return np.roll(acf, (half, half), axis=(0, 1))[: 2 * half + 1, : 2 * half + 1]


@pytest.mark.parametrize(
    ("scale", "rotation", "order"),
    [(1.5, 30.0, 5), (0.7, 70.0, 5), (1.25, -20.0, 3), (0.9, 45.0, 1)],
)
def test_acf_matches_resampled_white_noise(scale: float, rotation: float, order: int) -> None:
    jac = _jacobian(scale, rotation)
    acf = resampled_noise_acf(jac, order=order)
    half = acf.shape[0] // 2
    assert acf.shape == (2 * half + 1, 2 * half + 1)
    mc = _monte_carlo_acf(jac, order, half, seed=7)
    c0 = float(acf[half, half])
    # 260^2 samples: each lag's estimate scatters by ~1% of c0; 4% is > 4 sigma
    assert np.max(np.abs(acf - mc)) < 0.04 * c0
    # not white: a delta of 1 would be far off (so the comparison above can fail)
    white = np.zeros_like(acf)
    white[half, half] = 1.0
    assert np.max(np.abs(white - mc)) > 0.1


def test_a_coarser_template_keeps_its_noise_power_at_zero_frequency() -> None:
    # template pixels larger than the frame's: interpolation only smooths, so the summed
    # ACF (the noise power of large-scale sums) is the white-equivalent variance
    acf = resampled_noise_acf(_jacobian(0.6, 12.0), order=5)
    assert abs(float(acf.sum()) - 1.0) < 1e-3
    assert float(acf.max()) < 0.5


def test_bad_input_is_refused() -> None:
    with pytest.raises(InputError, match="order"):
        resampled_noise_acf(np.eye(2), order=2)
    with pytest.raises(InputError, match="singular"):
        resampled_noise_acf(np.zeros((2, 2)), order=5)
    with pytest.raises(InputError, match="2x2"):
        resampled_noise_acf(np.eye(3), order=5)
