"""The robust-scatter helper (analytic constant, unbiased estimate) and the REML error
model (known scale and scatter recovered within their Fisher errors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from skyphot.core.stats import MAD_TO_SIGMA, ErrorModel, mad_sigma, reml_error_model
from skyphot.errors import InputError


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


# --- the REML error model --------------------------------------------------------------------


def _residual_design(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A zero point with two gradients over n stars, and stated variances spanning 30x."""
    design = np.column_stack([np.ones(n), rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)])
    var = (10 ** rng.uniform(-2.5, -1.0, n)) ** 2
    return design, var


def _fisher_errors(var: np.ndarray, scale: float, scatter: float) -> tuple[float, float]:
    """1-sigma errors of (scale, scatter^2) from the Fisher information of
    ``var_i scale + scatter^2`` (Gaussian residuals; the 3 fitted parameters are negligible
    beside n = 2000)."""
    v2 = (scale * var + scatter**2) ** 2
    info = 0.5 * np.array([[np.sum(var**2 / v2), np.sum(var / v2)],
                           [np.sum(var / v2), np.sum(1.0 / v2)]])
    cov = np.linalg.inv(info)
    return float(np.sqrt(cov[0, 0])), float(np.sqrt(cov[1, 1]))


def test_reml_recovers_a_known_scale_and_scatter_within_their_errors() -> None:
    rng = np.random.default_rng(11)
    scale, scatter = 1.5, 0.02
    pulls_k, pulls_s2 = [], []
    for _ in range(20):
        design, var = _residual_design(rng, 2000)
        y = design @ [25.0, 0.1, -0.05] + rng.normal(size=var.size) * np.sqrt(
            scale * var + scatter**2)
        model = reml_error_model(design, y, var)
        err_k, err_s2 = _fisher_errors(var, scale, scatter)
        pulls_k.append((model.scale - scale) / err_k)
        pulls_s2.append((model.scatter**2 - scatter**2) / err_s2)
        # At an interior optimum REML makes the reduced chi-square with the model exactly 1.
        w = 1.0 / model.variance(var)
        sw = np.sqrt(w)
        beta = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)[0]
        chi2 = float(np.sum(w * (y - design @ beta) ** 2))
        # (plain ML would give n / (n - p) = 1.0015: the tolerance tells them apart)
        assert chi2 / (var.size - 3) == pytest.approx(1.0, abs=3e-4)
    # every fit within 4 sigma, and the 20 together unbiased and of the expected spread
    assert np.max(np.abs(pulls_k)) < 4.0 and np.max(np.abs(pulls_s2)) < 4.0
    assert abs(np.mean(pulls_k)) < 4.0 / np.sqrt(20)
    assert abs(np.mean(pulls_s2)) < 4.0 / np.sqrt(20)
    assert 0.5 < np.std(pulls_k) < 1.5


def test_reml_scale_floors_at_one_and_pure_noise_has_no_scatter() -> None:
    rng = np.random.default_rng(12)
    design, var = _residual_design(rng, 2000)
    # errors overstated by sqrt(2): the scale stays 1 and nothing is added
    y = design @ [25.0, 0.0, 0.0] + rng.normal(size=var.size) * np.sqrt(0.5 * var)
    assert reml_error_model(design, y, var) == ErrorModel(1.0, 0.0)
    scales, scatters2 = [], []
    for _ in range(20):
        design, var = _residual_design(rng, 2000)
        y = design @ [25.0, 0.1, -0.05] + rng.normal(size=var.size) * np.sqrt(var)
        model = reml_error_model(design, y, var)
        scales.append(model.scale)
        scatters2.append(model.scatter**2)
    err_k, err_s2 = _fisher_errors(var, 1.0, 0.0)
    # Both are floored at the truth, so each comes out at it or a few sigma above.
    assert np.all(np.asarray(scales) < 1.0 + 4 * err_k)
    assert np.all(np.asarray(scatters2) < 4 * err_s2)
    assert np.mean(scatters2) < 4 * err_s2 / np.sqrt(20)
    assert np.sum(np.asarray(scatters2) == 0.0) >= 5  # pure noise gives exactly 0 often


def test_reml_without_spare_points_keeps_the_stated_errors() -> None:
    design = np.ones((3, 3))
    assert reml_error_model(design, np.zeros(3), np.ones(3)) == ErrorModel(1.0, 0.0)
    with pytest.raises(InputError):
        reml_error_model(np.ones((5, 1)), np.zeros(5), np.array([1.0, 1.0, 0.0, 1.0, 1.0]))


def test_reml_with_alike_stated_errors_explains_the_excess_by_a_scatter() -> None:
    """Stated errors all ~0.05 (a catalog's flat error) and a true scatter of 0.3: scale and
    scatter cannot be told apart, and the scatter (which one more star also has) is kept.
    Without the likelihood-gain rule about half of such draws put it all in the scale."""
    rng = np.random.default_rng(13)
    n = 40
    for _ in range(20):
        design = np.column_stack([np.ones(n), rng.uniform(-1, 1, n)])
        var = np.full(n, 0.05**2) * rng.uniform(0.95, 1.05, n)
        y = design @ [25.0, 0.1] + rng.normal(size=n) * np.sqrt(var + 0.3**2)
        model = reml_error_model(design, y, var)
        assert model.scale == 1.0
        # REML's scatter: the residuals' spread over n - p degrees of freedom less the
        # stated variance; its error ~ 0.3 / sqrt(2 (n - p)) ~ 0.035
        assert model.scatter == pytest.approx(0.3, abs=4 * 0.3 / np.sqrt(2 * (n - 2)))
