"""Robust statistics shared by the numerical modules."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class ErrorModel:
    """Residual variance ``scale * var_i + scatter**2`` about a weighted linear fit.

    ``scale`` (>= 1) multiplies the stated variances ``var_i``; ``scatter`` (>= 0, in the
    target's unit) is added to every point in quadrature.
    """

    scale: float
    scatter: float

    def variance(self, var: np.ndarray) -> np.ndarray:
        """The modelled residual variance of points with stated variances ``var``."""
        return np.asarray(self.scale * np.asarray(var, dtype=float) + self.scatter**2)


# -2 log L (REML) the error scale must gain over the scatter-only model before it is fitted:
# the 95th percentile of half a chi-square(1) (the scale 1 under test lies on its bound).
SCALE_LIKELIHOOD_GAIN = 2.71


def reml_error_model(design: np.ndarray, target: np.ndarray, var: np.ndarray) -> ErrorModel:
    """Restricted-maximum-likelihood ``ErrorModel`` of the weighted fit of ``target`` (n,)
    on ``design`` (n, p) with stated variances ``var`` (n,).

    REML maximises the likelihood of the residuals (the data with the fitted coefficients
    integrated out), so the p fitted parameters' degrees of freedom are accounted for: at an
    interior optimum the reduced chi-square with the modelled variances is exactly 1. The
    scatter alone (scale 1) is the default; the scale is fitted too only when that lowers
    -2 log L by ``SCALE_LIKELIHOOD_GAIN``, since the two are told apart only through the
    spread of the stated variances (with similar ones any split fits, and a scatter is the
    safer reading: it applies in full to one more star). With ``scale var_i + scatter^2 =
    scale (var_i + t)`` the scale profiles out in closed form (``chi^2(t) / (n - p)``),
    leaving one equation in ``t``; each is solved by bisection, each step one small weighted
    fit (numpy only: no scipy import, no threaded BLAS call). Fewer points than parameters
    + 1: the stated errors stand (scale 1, scatter 0).
    """
    x = np.asarray(design, dtype=float)
    y = np.asarray(target, dtype=float)
    v = np.asarray(var, dtype=float)
    n, p = x.shape
    dof = n - p
    if dof <= 0:
        return ErrorModel(1.0, 0.0)
    if not (np.all(np.isfinite(v)) and np.all(v > 0)):
        raise InputError("reml_error_model: the stated variances must be finite and > 0")

    def profiled_slope(s: float) -> float:  # d(-2 log L)/dt, scale at its optimum
        chi2, w2r2, trace = _reml_sums(x, y, v, s * s)[:3]
        return trace - dof * w2r2 / chi2 if chi2 > 0 else trace

    def unit_slope(s: float) -> float:  # d(-2 log L)/dt, scale held at 1
        _, w2r2, trace = _reml_sums(x, y, v, s * s)[:3]
        return trace - w2r2

    def deviance(scale: float, t: float) -> float:  # -2 log L of scale (v + t), to a constant
        chi2, _, _, logs = _reml_sums(x, y, v, t)
        return dof * float(np.log(scale)) + logs + chi2 / scale

    # Beyond this scatter (in sqrt(t)) the stated errors no longer matter to the weights.
    spread = float(np.mean((y - x @ solve_least_squares(x, y)) ** 2))
    top = float(np.sqrt(1e3 * max(float(v.max()), spread)))
    s_unit = _slope_root(unit_slope, top)
    unit = ErrorModel(1.0, top if s_unit is None else s_unit)
    s_free = _slope_root(profiled_slope, top)
    if s_free is None:
        return unit
    scale = _reml_sums(x, y, v, s_free * s_free)[0] / dof
    if scale <= 1.0:
        return unit
    gain = deviance(1.0, unit.scatter**2) - deviance(scale, s_free * s_free)
    if gain < SCALE_LIKELIHOOD_GAIN:
        return unit
    return ErrorModel(scale, s_free * float(np.sqrt(scale)))


def _reml_sums(
    x: np.ndarray, y: np.ndarray, v: np.ndarray, t: float
) -> tuple[float, float, float, float]:
    """For weights ``w = 1 / (v + t)``: the fit's chi-square ``sum w r^2``, ``sum w^2 r^2``,
    ``sum w (1 - h)`` (``h``: the leverages), which make up the REML score in ``t``, and
    ``sum log(v + t) + log det(X^T W X)``, the rest of -2 log L."""
    w = 1.0 / (v + t)
    xw = x * w[:, None]
    normal = xw.T @ x
    inverse = np.linalg.inv(normal)
    resid = y - x @ (inverse @ (xw.T @ y))
    leverage = w * np.einsum("ij,ij->i", x @ inverse, x)
    wr2 = w * resid * resid
    logs = float(np.linalg.slogdet(normal)[1] - np.sum(np.log(w)))
    return float(np.sum(wr2)), float(np.sum(w * wr2)), float(np.sum(w * (1.0 - leverage))), logs


def _slope_root(slope: Callable[[float], float], top: float) -> float | None:
    """Where ``slope`` (of -2 log L in ``t = s^2``) turns from negative to positive in
    s in [0, top]: 0 when it is not negative at 0, None when it stays negative."""
    if slope(0.0) >= 0.0:
        return 0.0
    if slope(top) <= 0.0:
        return None
    return bracketed_root(slope, 0.0, top, xtol=1e-6 * top)


def f_sf(f: float, d1: float, d2: float) -> float:
    """P(F > f) for F ~ F(d1, d2) (``scipy.stats.f.sf``), as the regularised incomplete beta
    ``I_x(d2/2, d1/2)`` at ``x = d2 / (d2 + d1 f)``; numpy/math only (no scipy.stats import
    on the measurement path)."""
    if d1 <= 0 or d2 <= 0 or math.isnan(f):
        raise InputError(f"f_sf needs d1, d2 > 0 and a number f; got {f}, {d1}, {d2}")
    if f <= 0.0:
        return 1.0
    if math.isinf(f):
        return 0.0
    return regularized_beta(d2 / (d2 + d1 * f), 0.5 * d2, 0.5 * d1)


def regularized_beta(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)`` (``scipy.special.betainc``),
    from its continued fraction, on the side of x where it converges fast."""
    if not 0.0 <= x <= 1.0 or a <= 0 or b <= 0:
        raise InputError(f"regularized_beta needs 0 <= x <= 1 and a, b > 0; got {x}, {a}, {b}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    # I_x(a, b) = 1 - I_{1-x}(b, a): the fraction converges where x is below its mean
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The incomplete beta's continued fraction, evaluated by the modified Lentz method."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    value = d
    for m in range(1, 500):
        two_m = 2 * m
        # even step, then odd step of the fraction's terms
        for coef in (
            m * (b - m) * x / ((a + two_m - 1.0) * (a + two_m)),
            -(a + m) * (a + b + m) * x / ((a + two_m) * (a + two_m + 1.0)),
        ):
            d = 1.0 + coef * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + coef / c
            c = c if abs(c) > tiny else tiny
            value *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return value
