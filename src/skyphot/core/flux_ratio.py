"""The template/science flux ratio at a position, from stars measured on both frames.

Each star gives ``d = m_template - m_science`` (instrumental magnitudes on each frame's
total-flux scale); the ratio at (x, y) is ``10 ** (-0.4 * d(x, y))``. ``d`` is fitted as a
low-order polynomial of position over all shared stars rather than averaged over a few
near the target: the ratio's error multiplies all the static light under the target (a
host a few magnitudes brighter than the transient), so its precision sets the accuracy of
the difference-image flux on a bright host. Per-star scatter beyond the predicted errors
(PSF-model residuals of bright stars) is absorbed by an intrinsic-scatter term, so bright
stars do not dominate the fit and its error stays honest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from skyphot.core.stats import mad_sigma
from skyphot.core.wcs_utils import poly_design, poly_exponents, solve_least_squares
from skyphot.errors import TooFewStarsError

_LN10_04 = 0.4 * math.log(10.0)
_CLIP_ROUNDS = 5
# Stars per fitted coefficient before a polynomial order is used.
_STARS_PER_TERM = 8


@dataclass(frozen=True)
class FluxRatioFit:
    """``ratio`` (template counts per science count) at the requested position, its
    relative 1-sigma error ``ln_err`` (error of ln ratio), the stars kept, the polynomial
    order used and the intrinsic per-star scatter found (mag)."""

    ratio: float
    ln_err: float
    n_used: int
    order: int
    intrinsic_scatter: float


def _scaled(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    return (2.0 * x / max(nx - 1, 1) - 1.0, 2.0 * y / max(ny - 1, 1) - 1.0)


def _solve(
    design: np.ndarray, d: np.ndarray, err: np.ndarray, scatter: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted fit: coefficients, their covariance and the reduced chi^2."""
    w = 1.0 / (err**2 + scatter**2)
    sw = np.sqrt(w)
    coef = solve_least_squares(design * sw[:, None], d * sw)
    resid = d - design @ coef
    dof = max(d.size - design.shape[1], 1)
    chi2 = float(np.sum(w * resid**2)) / dof
    cov = np.linalg.pinv(design.T @ (design * w[:, None]))
    return coef, cov, chi2


def _intrinsic_scatter(design: np.ndarray, d: np.ndarray, err: np.ndarray) -> float:
    """The per-star scatter (mag) that brings the reduced chi^2 to 1 (0 when it is below)."""
    if _solve(design, d, err, 0.0)[2] <= 1.0:
        return 0.0
    lo, hi = 0.0, max(float(np.std(d)), 1e-4)
    while _solve(design, d, err, hi)[2] > 1.0:
        hi *= 2.0
    for _ in range(40):  # bisection to well below the errors that matter (1e-6 mag)
        mid = 0.5 * (lo + hi)
        if _solve(design, d, err, mid)[2] > 1.0:
            lo = mid
        else:
            hi = mid
    return hi


def fit_flux_ratio(
    d_mag: np.ndarray,
    d_err: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    at: tuple[float, float],
    shape: tuple[int, int],
    max_order: int = 2,
    min_stars: int = 5,
    clip_sigma: float = 3.0,
) -> FluxRatioFit:
    """Fit ``d_mag`` (template minus science instrumental magnitude per star, errors
    ``d_err``) at science pixels (``x``, ``y``) of a frame of ``shape`` (ny, nx) and return the
    ratio at pixel ``at`` (x, y). The order is lowered from ``max_order`` while there are too
    few stars for it. Raises ``TooFewStarsError`` with fewer than ``min_stars`` usable stars."""
    d = np.asarray(d_mag, float)
    err = np.asarray(d_err, float)
    xs = np.asarray(x, float)
    ys = np.asarray(y, float)
    ok = np.isfinite(d) & np.isfinite(err) & (err > 0) & np.isfinite(xs) & np.isfinite(ys)
    if int(ok.sum()) < min_stars:
        raise TooFewStarsError(
            f"only {int(ok.sum())} stars are measured on both frames; the flux ratio needs "
            f"{min_stars}"
        )
    order = max_order
    while order > 0 and int(ok.sum()) < _STARS_PER_TERM * len(poly_exponents(order)):
        order -= 1
    exps = poly_exponents(order)
    u, v = _scaled(xs, ys, shape)
    design = poly_design(u, v, exps)
    keep = ok.copy()
    scatter = 0.0
    for _ in range(_CLIP_ROUNDS):
        scatter = _intrinsic_scatter(design[keep], d[keep], err[keep])
        coef, _, _ = _solve(design[keep], d[keep], err[keep], scatter)
        resid = d - design @ coef
        # Clip on the robust spread of the normalised residuals (a few blended or variable
        # stars must not pull the fit or inflate the scatter).
        z = resid / np.sqrt(err**2 + scatter**2)
        mad = mad_sigma(z[keep])
        new_keep = ok & (np.abs(z) <= clip_sigma * max(mad, 1.0))
        if int(new_keep.sum()) < min_stars or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    scatter = _intrinsic_scatter(design[keep], d[keep], err[keep])
    coef, cov, chi2 = _solve(design[keep], d[keep], err[keep], scatter)
    au, av = _scaled(np.array([float(at[0])]), np.array([float(at[1])]), shape)
    row = poly_design(au, av, exps)[0]
    value = float(row @ coef)
    var = float(row @ cov @ row) * max(chi2, 1.0)
    return FluxRatioFit(
        ratio=10.0 ** (-0.4 * value),
        ln_err=_LN10_04 * math.sqrt(max(var, 0.0)),
        n_used=int(keep.sum()),
        order=order,
        intrinsic_scatter=scatter,
    )


@dataclass(frozen=True)
class RatioEstimate:
    """A flux ratio (template counts per science count), the 1-sigma error of its natural
    log, and how many stars it rests on."""

    ratio: float
    ln_err: float
    n_stars: int


def mean_flux_ratio(
    d_mag: np.ndarray, weight: np.ndarray, *, min_stars: int = 5
) -> RatioEstimate:
    """The ratio from a few stars' ``d_mag`` (template minus science instrumental magnitude)
    with inverse-variance ``weight``: their weighted mean after a 3-sigma (robust, at least
    0.01 mag) clip, its error scaled by the reduced chi^2 when that exceeds 1. Raises
    ``TooFewStarsError`` when fewer than ``min_stars`` survive the clip."""
    d = np.asarray(d_mag, float)
    w = np.asarray(weight, float)
    keep = np.zeros(d.shape, bool)
    if d.size >= min_stars:
        keep = np.abs(d - float(np.median(d))) <= max(3.0 * mad_sigma(d), 0.01)
    if int(keep.sum()) < min_stars:
        raise TooFewStarsError(
            f"only {int(keep.sum())} stars agree on the flux ratio; it needs {min_stars}"
        )
    d, w = d[keep], w[keep]
    mean = float(np.sum(w * d) / np.sum(w))
    chi2 = float(np.sum(w * (d - mean) ** 2)) / max(d.size - 1, 1)
    err_mag = math.sqrt(max(chi2, 1.0) / float(np.sum(w)))
    return RatioEstimate(ratio=10.0 ** (-0.4 * mean), ln_err=_LN10_04 * err_mag, n_stars=d.size)
