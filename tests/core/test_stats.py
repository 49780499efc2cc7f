"""The one robust-scatter helper: its constant is analytic, its estimate unbiased."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from skyphot.core.stats import MAD_TO_SIGMA, mad_sigma


def test_mad_to_sigma_is_the_inverse_gaussian_quartile() -> None:
    assert abs(MAD_TO_SIGMA - 1.0 / norm.ppf(0.75)) < 1e-14


def test_mad_sigma_recovers_a_gaussian_sigma_despite_outliers() -> None:
    rng = np.random.default_rng(1)
    n, sigma = 200_000, 2.5
    values = rng.normal(10.0, sigma, n)
    values[:1000] = 1e6  # 0.5 % wild outliers: they shift the quartiles by < 1 % of sigma
    # 5 standard errors of the MAD-based sigma (~1.65 sigma / sqrt(2 n)) plus that shift.
    tolerance = 5 * 1.65 * sigma / math.sqrt(2 * n) + sigma * 0.01
    assert mad_sigma(values) == pytest.approx(sigma, abs=tolerance)


def test_mad_sigma_of_nothing_is_nan() -> None:
    assert math.isnan(mad_sigma(np.array([])))
    assert mad_sigma(np.array([3.0, 3.0, 3.0])) == 0.0
