"""Robust statistics shared by the numerical modules."""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from skyphot.core.wcs_utils import solve_least_squares

MAD_TO_SIGMA = 1.482602218505602
"""Gaussian sigma per median absolute deviation: 1 / Phi^-1(3/4)."""


def mad_sigma(values: np.ndarray) -> float:
    """Robust standard deviation of ``values``: ``MAD_TO_SIGMA`` times their MAD (NaN if empty)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


# Median of chi-square with one degree of freedom.
_MEDIAN_CHI2_1 = 0.454936


def weighted_lstsq(design: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Coefficients of ``target`` on ``design`` with per-row weights (inverse variances)."""
    sw = np.sqrt(weight)
    return solve_least_squares(design * sw[:, None], target * sw)


def robust_extra_scatter(resid: np.ndarray, var: np.ndarray) -> float:
    """Extra scatter s with median(resid^2 / (var + s^2)) that of a unit Gaussian (0 if the
    residuals are already within their variances ``var``); outliers barely move it."""
    z2 = np.asarray(resid, dtype=float) ** 2
    var = np.asarray(var, dtype=float)
    if z2.size == 0 or np.median(z2 / var) <= _MEDIAN_CHI2_1:
        return 0.0
    hi = float(np.sqrt(np.median(z2) / _MEDIAN_CHI2_1)) + 1e-6
    return float(brentq(lambda s: np.median(z2 / (var + s * s)) - _MEDIAN_CHI2_1, 0.0, hi))


def chi2_extra_scatter(design: np.ndarray, target: np.ndarray, var: np.ndarray) -> float:
    """Extra scatter s that makes the reduced chi-square of the weighted fit of ``target`` on
    ``design`` with variances ``var + s^2`` equal to 1 (0 if it is already at or below 1)."""
    dof = design.shape[0] - design.shape[1]

    def excess(s: float) -> float:
        w = 1.0 / (var + s * s)
        r = target - design @ weighted_lstsq(design, target, w)
        return float(np.sum(w * r * r) / dof - 1.0)

    if dof <= 0 or excess(0.0) <= 0.0:
        return 0.0
    r = target - design @ weighted_lstsq(design, target, 1.0 / var)
    hi = float(np.sqrt(np.sum(r * r) / dof)) * 2.0 + 1e-6
    while excess(hi) > 0.0:
        hi *= 2.0
    return float(brentq(excess, 0.0, hi, xtol=1e-7))
