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
