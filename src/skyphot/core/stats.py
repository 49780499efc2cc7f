"""Robust statistics shared by the numerical modules."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from skyphot.errors import InputError

MAD_TO_SIGMA = 1.482602218505602
"""Gaussian sigma per median absolute deviation: 1 / Phi^-1(3/4)."""


def mad_sigma(values: np.ndarray) -> float:
    """Robust standard deviation of ``values``: ``MAD_TO_SIGMA`` times their MAD (NaN if empty)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


def bracketed_root(
    func: Callable[[float], float], lo: float, hi: float, *, xtol: float = 2e-12
) -> float:
    """A root of ``func`` in [lo, hi], where it changes sign, to ``xtol`` (bisection).

    Stands in for ``scipy.optimize.brentq`` on the few small, monotonic root-finds of a
    measurement, without the ~0.1 s import of ``scipy.optimize``. Raises ``InputError``
    when ``func`` has the same sign at both ends.
    """
    f_lo, f_hi = float(func(lo)), float(func(hi))
    if f_lo == 0.0:
        return float(lo)
    if f_hi == 0.0:
        return float(hi)
    if not (math.isfinite(f_lo) and math.isfinite(f_hi)) or (f_lo > 0) == (f_hi > 0):
        raise InputError(
            f"no sign change to find a root between {lo} ({f_lo}) and {hi} ({f_hi})"
        )
    a, b = float(lo), float(hi)
    # each halving shrinks the bracket exactly; stop at xtol or at float resolution
    while abs(b - a) > xtol + 4.0 * np.finfo(float).eps * abs(a + b) / 2.0:
        mid = 0.5 * (a + b)
        f_mid = float(func(mid))
        if f_mid == 0.0:
            return mid
        if (f_mid > 0) == (f_lo > 0):
            a, f_lo = mid, f_mid
        else:
            b = mid
    return 0.5 * (a + b)


def poisson_sf(k: int, mu: float) -> float:
    """P(X > k) for X ~ Poisson(mu) (``scipy.special.pdtrc``), from the summed upper tail
    so small probabilities keep their relative precision."""
    if mu < 0 or not math.isfinite(mu):
        raise InputError(f"a Poisson mean must be finite and >= 0, got {mu}")
    if k < 0:
        return 1.0
    if mu == 0.0:
        return 0.0
    if k + 1 < mu:  # the tail holds most of the mass: 1 - the (shorter) lower sum
        return max(0.0, 1.0 - _poisson_sum(0, k, mu))
    return min(1.0, _poisson_sum(k + 1, None, mu))


def _poisson_sum(first: int, last: int | None, mu: float) -> float:
    """Sum of the Poisson(mu) probabilities of first..last (None: to where they vanish)."""
    log_mu = math.log(mu)
    total = 0.0
    i = first
    while last is None or i <= last:
        term = math.exp(i * log_mu - mu - math.lgamma(i + 1.0))
        total += term
        if last is None and i > mu and term <= 1e-17 * total:
            break
        i += 1
    return total


def solve_least_squares(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of ``target`` (n,) or (n, k) on ``design`` (n, p).

    Normal equations: for the small, well-conditioned systems here (normalised
    coordinates, p <= 21) they are exact enough and, unlike ``lstsq``, avoid threaded
    LAPACK calls whose latency spikes on a busy machine. A singular system (stars on a
    line) falls back to the minimum-norm ``lstsq`` solution.
    """
    normal = design.T @ design
    rhs = design.T @ target
    try:
        return np.asarray(np.linalg.solve(normal, rhs))
    except np.linalg.LinAlgError:
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        return np.asarray(solution)


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
    return bracketed_root(lambda s: np.median(z2 / (var + s * s)) - _MEDIAN_CHI2_1, 0.0, hi)


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
    return bracketed_root(excess, 0.0, hi, xtol=1e-7)
