"""Photometric zero point: a weighted, outlier-resistant fit of catalog minus instrumental mag.

Model for calibration star i (magnitudes)::

    m_cat_i - m_inst_i = ZP0 + C * color_i + sum_{1 <= p+q <= order} a_pq * u_i**p * v_i**q
                         + sum_{1 <= k <= response_order} r_k * w_i**k

with ``m_inst = -2.5 log10(flux_ADU)``, ``u, v`` the pixel position scaled to [-1, 1]
over the frame and ``w = (m_inst - pivot) / half_range`` the instrumental magnitude about
the calibrators' median, scaled to ~[-1, 1] over their range: the optional response terms
describe a non-linear detector or plate (``cat - inst`` depending on ``inst``).
Stars are weighted by ``1 / (k (inst_err**2 + cat_err**2) + s**2)``: the
error scale ``k >= 1`` and the intrinsic scatter ``s >= 0`` are the restricted-maximum-
likelihood estimates from the used stars (``core.stats.reml_error_model``), so stated errors
that are too small for all stars (``k``) and a scatter common to all (``s``, which weighs
most on the bright ones) are told apart (``k`` stays 1 unless the data clearly call for
it), and the coefficients' covariance uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from skyphot.core.stats import (
    ErrorModel,
    f_sf,
    mad_sigma,
    reml_error_model,
    robust_extra_scatter,
    weighted_lstsq,
)
from skyphot.core.wcs_utils import poly_design, poly_exponents
from skyphot.errors import CalibrationError, InputError

# Robust colour spread (mag) below which a colour term is not constrained.
MIN_COLOR_SPREAD = 0.1
# Stars per fitted parameter before a term is allowed.
STARS_PER_PARAMETER = 3
# Smallest per-star variance (mag^2): no star is known better than 0.1 mmag.
_VAR_FLOOR = 1e-8
# Highest polynomial order of the response term in the instrumental magnitude.
MAX_RESPONSE_ORDER = 2
# F-test p-value below which "auto" keeps a response term.
RESPONSE_P_VALUE = 1e-3
# Instrumental-magnitude range (mag) below which a response term is not constrained.
MIN_RESPONSE_RANGE = 0.5

ResponseOrder = int | Literal["auto"]


@dataclass(frozen=True)
class ZeroPointFit:
    """A fitted zero-point model and how well it fits.

    ``coefficients`` are ordered as ``terms``: "zp" (ZP0, mag, at colour 0 and the frame
    centre), "color" (the colour term C, when fitted), then spatial monomials "u^p v^q".
    ``covariance`` is their full covariance (mag^2). ``used`` (bool) and ``residuals``
    (catalog - instrumental - model, mag; NaN where not computable) cover every input star.
    ``rms`` is the robust (MAD) scatter of the used residuals; ``intrinsic_scatter`` the
    extra per-star scatter s (mag) and ``error_scale`` the factor k >= 1 on the stars' stated
    variances (each star's variance is ``k (inst_err^2 + cat_err^2) + s^2``). ``notes`` say
    which terms were dropped and why. ``response_range`` is the
    (min, max) instrumental magnitude of the used stars (the response curve's support).
    """

    coefficients: np.ndarray
    covariance: np.ndarray
    terms: tuple[str, ...]
    spatial_order: int
    color_term: float | None
    color_term_err: float | None
    intrinsic_scatter: float
    n_used: int
    used: np.ndarray
    residuals: np.ndarray
    rms: float
    reference_color: float | None
    shape: tuple[int, int]
    notes: tuple[str, ...] = ()
    error_scale: float = 1.0
    response_order: int = 0
    response_pivot: float = 0.0
    response_scale: float = 1.0
    response_range: tuple[float, float] = (float("nan"), float("nan"))

    def _row(
        self, x: float, y: float, color: float | None, inst_mag: float | None = None
    ) -> np.ndarray:
        u, v = _normalise(np.array([x], float), np.array([y], float), self.shape)
        parts = [np.ones((1, 1))]
        if self.color_term is not None:
            c = self.reference_color if color is None else color
            parts.append(np.array([[0.0 if c is None else float(c)]]))
        parts.append(poly_design(u, v, poly_exponents(self.spatial_order, min_degree=1)))
        if self.response_order:
            m = self.response_pivot if inst_mag is None else float(inst_mag)
            w = np.array([(m - self.response_pivot) / self.response_scale])
            parts.append(_response_design(w, self.response_order))
        return np.concatenate(parts, axis=1)[0]

    def predict(
        self, x: float, y: float, color: float | None = None, inst_mag: float | None = None
    ) -> tuple[float, float]:
        """Zero point (mag) at pixel (x, y) for a star of ``color`` and instrumental
        magnitude ``inst_mag``, and its 1-sigma error.

        ``color`` None means ``reference_color``; it is ignored when no colour term was
        fitted. ``inst_mag`` None means the response pivot; it is ignored at response order
        0. The error comes from the full covariance of the coefficients (correlated terms
        included); it excludes the intrinsic scatter of individual stars.
        """
        row = self._row(x, y, color, inst_mag)
        value = float(row @ self.coefficients)
        var = float(row @ self.covariance @ row)
        return value, float(np.sqrt(max(var, 0.0)))

    def response_extrapolated(self, inst_mag: float) -> bool:
        """Whether a response term was fitted and ``inst_mag`` lies outside the used
        calibrators' instrumental-magnitude range (the curve is then extrapolated)."""
        if self.response_order == 0:
            return False
        lo, hi = self.response_range
        return not lo <= float(inst_mag) <= hi


def _response_design(w: np.ndarray, order: int) -> np.ndarray:
    """Columns w, w^2, ... w^order (n, order) of the response term."""
    return np.asarray(w, float)[:, None] ** np.arange(1, order + 1)[None, :]


def _normalise(
    x: np.ndarray, y: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    return 2.0 * x / max(nx - 1, 1) - 1.0, 2.0 * y / max(ny - 1, 1) - 1.0


@dataclass(frozen=True)
class _Core:
    beta: np.ndarray
    cov: np.ndarray
    errors: ErrorModel
    used: np.ndarray  # over the candidate rows


def _fit_core(
    design: np.ndarray, target: np.ndarray, var: np.ndarray, *, clip_sigma: float, max_iter: int
) -> _Core:
    """Robust start (median, then biweight IRLS), sigma clipping with a robust scatter, then
    the REML error model of the used stars and the final weighted fit with it."""
    p = design.shape[1]
    beta = np.zeros(p)
    beta[0] = float(np.median(target))
    resid = target - design @ beta
    for _ in range(6):
        scale = max(mad_sigma(resid), 1e-4)
        s2 = max(scale**2 - float(np.median(var)), 0.0)
        t = (resid - np.median(resid)) / (4.685 * scale)
        w = np.where(np.abs(t) < 1.0, (1.0 - t * t) ** 2, 0.0) / (var + s2)
        if np.count_nonzero(w) <= p:
            break
        beta = weighted_lstsq(design, target, w)
        resid = target - design @ beta
    scatter = robust_extra_scatter(resid, var)
    used = np.abs(resid) <= clip_sigma * np.sqrt(var + scatter**2)
    for _ in range(max_iter):
        if used.sum() <= p:
            break
        beta = weighted_lstsq(design[used], target[used], 1.0 / (var[used] + scatter**2))
        resid = target - design @ beta
        scatter = robust_extra_scatter(resid[used], var[used])
        new = np.abs(resid) <= clip_sigma * np.sqrt(var + scatter**2)
        if np.array_equal(new, used):
            break
        used = new
    if used.sum() <= p:
        return _Core(beta, np.full((p, p), np.nan), ErrorModel(1.0, scatter), used)
    errors = reml_error_model(design[used], target[used], var[used])
    w = 1.0 / errors.variance(var[used])
    beta = weighted_lstsq(design[used], target[used], w)
    cov = np.linalg.inv((design[used] * w[:, None]).T @ design[used])
    return _Core(beta, cov, errors, used)


def _n_params(order: int, color: bool, response: int = 0) -> int:
    return (order + 1) * (order + 2) // 2 + int(color) + response


def fit_zero_point(
    inst_mag: np.ndarray,
    inst_err: np.ndarray,
    cat_mag: np.ndarray,
    cat_err: np.ndarray,
    *,
    x: np.ndarray,
    y: np.ndarray,
    shape: tuple[int, int],
    color: np.ndarray | None = None,
    spatial_order: int = 1,
    fit_color_term: bool = True,
    clip_sigma: float = 3.0,
    min_stars: int = 5,
    max_iter: int = 10,
    response_order: ResponseOrder = 0,
) -> ZeroPointFit:
    """Fit the zero point (mag) of a frame from matched calibration stars.

    Inputs per star: instrumental magnitude ``-2.5 log10(flux_ADU)`` and its error, catalog
    magnitude and error (NaN error: unknown, taken as 0; the fitted intrinsic scatter
    absorbs it), 0-based pixel ``x, y`` on a frame of ``shape`` (ny, nx), optional catalog
    ``color`` (mag; when a colour term is fitted, stars without a finite colour are left
    out). Terms the data cannot support are dropped, not over-fitted: the spatial order is
    lowered until there are 3 stars per parameter, then the response order, and the colour
    term is dropped when the robust colour spread is below 0.1 mag; ``notes`` says so.
    Outliers are rejected iteratively at ``clip_sigma`` from a median/biweight start, so a
    30 % contamination does not drag the fit.

    ``response_order`` (0, 1, 2) adds a polynomial in the instrumental magnitude (a
    non-linear response); "auto" keeps the highest order whose top term is significant by
    an F-test at p < 0.001 (tested from 2 down), else 0. Order 0 is the plain model.

    Raises ``CalibrationError`` when fewer than ``min_stars`` stars remain.
    """
    arrays = [np.asarray(a, float).ravel() for a in (inst_mag, inst_err, cat_mag, cat_err, x, y)]
    col = None if color is None else np.asarray(color, float).ravel()
    imag, ierr, cmag, cerr, xs, ys = arrays
    cerr = np.where(np.isfinite(cerr), cerr, 0.0)
    if response_order not in (*range(MAX_RESPONSE_ORDER + 1), "auto"):
        raise InputError(f"response_order must be 0, 1, 2 or 'auto'; got {response_order!r}")
    valid = _valid_stars(arrays, col, spatial_order, clip_sigma, min_stars)
    n_in, n_valid = imag.size, int(valid.sum())
    notes: list[str] = []
    use_color = _color_term_supported(col, valid, fit_color_term, min_stars, notes)
    pivot = float(np.median(imag[valid]))
    half_range = 0.5 * float(np.ptp(imag[valid]))
    if response_order != 0 and 2.0 * half_range < MIN_RESPONSE_RANGE:
        notes.append(f"response term not fitted: the calibrators' instrumental magnitudes span "
                     f"only {2.0 * half_range:.2f} mag (< {MIN_RESPONSE_RANGE})")
        response_order = 0
    w_all = (imag - pivot) / max(half_range, 1e-6)

    def fit(response: int, notes_out: list[str]) -> _Model:
        return _fit_simplifying(
            imag, ierr, cmag, cerr, xs, ys, col, valid, shape=shape, order=spatial_order,
            use_color=use_color, clip_sigma=clip_sigma, min_stars=min_stars,
            max_iter=max_iter, notes=notes_out, response=response, w_all=w_all,
        )

    auto = response_order == "auto"
    model = _auto_response(fit, notes) if auto else fit(int(response_order), notes)
    core, cand, design, exps = model.core, model.cand, model.design, model.exponents
    n_used, n_cand, order = int(core.used.sum()), int(model.cand.sum()), model.order
    if order < spatial_order:
        notes.insert(0, f"spatial order lowered from {spatial_order} to {order}: "
                     f"{n_used} of {n_cand} stars support no more")
    if isinstance(response_order, int) and model.response < response_order:
        notes.append(f"response order lowered from {response_order} to {model.response}: "
                     f"{n_used} of {n_cand} stars support no more")
    if n_used < min_stars or n_used <= design.shape[1]:
        no_color = n_valid - n_cand
        without = f", {no_color} without a colour" if no_color else ""
        raise CalibrationError(
            f"only {n_used} usable calibration stars ({n_in} matched, {n_in - n_valid} invalid"
            f"{without}, {n_cand - n_used} rejected as outliers); need {min_stars} — use a "
            "deeper catalog or lower --nsigma, or raise clip_sigma"
        )

    idx = np.flatnonzero(cand)
    used = np.zeros(n_in, bool)
    used[idx[core.used]] = True
    residuals = np.full(n_in, np.nan)
    residuals[idx] = cmag[cand] - imag[cand] - design @ core.beta
    ref_color = None
    if col is not None and np.isfinite(col[used]).any():
        ref_color = float(np.nanmedian(col[used]))
    with_color = model.use_color
    terms = (["zp"] + (["color"] if with_color else []) + [f"u^{p} v^{q}" for p, q in exps]
             + [f"w^{k}" for k in range(1, model.response + 1)])
    return ZeroPointFit(
        coefficients=core.beta,
        covariance=core.cov,
        terms=tuple(terms),
        spatial_order=order,
        color_term=float(core.beta[1]) if with_color else None,
        color_term_err=float(np.sqrt(core.cov[1, 1])) if with_color else None,
        intrinsic_scatter=core.errors.scatter,
        n_used=n_used,
        used=used,
        residuals=residuals,
        rms=mad_sigma(residuals[used]),
        reference_color=ref_color,
        shape=(int(shape[0]), int(shape[1])),
        notes=tuple(notes),
        error_scale=core.errors.scale,
        response_order=model.response,
        response_pivot=pivot,
        response_scale=max(half_range, 1e-6),
        response_range=(float(imag[used].min()), float(imag[used].max())),
    )


def _auto_response(fit: Callable[[int, list[str]], _Model], notes: list[str]) -> _Model:
    """The fit with the highest response order (2, then 1) whose top term is significant
    (F-test, p < ``RESPONSE_P_VALUE``) and that the stars support in full; else order 0."""
    for order in range(MAX_RESPONSE_ORDER, 0, -1):
        trial_notes = list(notes)
        model = fit(order, trial_notes)
        if model.response < order:
            continue  # too few stars for this order: a lower one is tried
        p_value = _top_term_p_value(model)
        if p_value < RESPONSE_P_VALUE:
            notes[:] = trial_notes
            notes.append(f"response order {order} chosen automatically: its top term is "
                         f"significant (F-test p = {p_value:.2g})")
            return model
    return fit(0, notes)


def _top_term_p_value(model: _Model) -> float:
    """F-test p-value of the design's last column, on the used stars with the fit's weights:
    how likely the drop in chi-square it brings is without it."""
    used = model.core.used
    x, t = model.design[used], model.target[used]
    w = 1.0 / model.core.errors.variance(model.var[used])
    n, p = x.shape
    if n <= p or not np.all(np.isfinite(model.core.beta)):
        return 1.0
    chi2_full = float(np.sum(w * (t - x @ model.core.beta) ** 2))
    reduced = weighted_lstsq(x[:, :-1], t, w)
    chi2_reduced = float(np.sum(w * (t - x[:, :-1] @ reduced) ** 2))
    if chi2_full <= 0.0:
        return 0.0 if chi2_reduced > 0.0 else 1.0
    return f_sf(max(chi2_reduced - chi2_full, 0.0) / (chi2_full / (n - p)), 1, n - p)


def _valid_stars(
    arrays: list[np.ndarray],
    col: np.ndarray | None,
    spatial_order: int,
    clip_sigma: float,
    min_stars: int,
) -> np.ndarray:
    """Stars with every input finite and errors non-negative; raises on malformed input or
    fewer than ``min_stars`` such stars."""
    n_in = arrays[0].size
    if any(a.size != n_in for a in arrays) or (col is not None and col.size != n_in):
        raise InputError(
            "fit_zero_point: inst_mag, inst_err, cat_mag, cat_err, x, y (and color) must "
            f"have one value per star; got lengths {[a.size for a in arrays]}"
        )
    if spatial_order < 0 or clip_sigma <= 0 or min_stars < 1:
        raise InputError("spatial_order must be >= 0, clip_sigma > 0 and min_stars >= 1")
    imag, ierr, cmag, cerr, xs, ys = arrays
    cerr = np.where(np.isfinite(cerr), cerr, 0.0)
    valid = (
        np.isfinite(imag) & np.isfinite(ierr) & np.isfinite(cmag) & np.isfinite(xs)
        & np.isfinite(ys) & (ierr >= 0) & (cerr >= 0)
    )
    n_valid = int(valid.sum())
    if n_valid < min_stars:
        raise CalibrationError(
            f"only {n_valid} usable calibration stars ({n_in} matched, {n_in - n_valid} with "
            f"missing or invalid magnitudes or errors); need {min_stars} — use a deeper "
            "catalog or lower --nsigma"
        )
    return np.asarray(valid)


def _color_term_supported(
    col: np.ndarray | None, valid: np.ndarray, fit_color_term: bool, min_stars: int,
    notes: list[str],
) -> bool:
    """Whether enough stars with a wide enough colour spread support a colour term; the
    reason when not is appended to ``notes``."""
    if col is None or not fit_color_term:
        return False
    has_color = valid & np.isfinite(col)
    n_color = int(has_color.sum())
    spread = mad_sigma(col[has_color]) if n_color >= 3 else 0.0
    if n_color < max(min_stars, STARS_PER_PARAMETER * 2):
        notes.append(f"colour term not fitted: only {n_color} stars have a colour")
        return False
    if spread < MIN_COLOR_SPREAD:
        notes.append(
            f"colour term not fitted: colour spread {spread:.3f} mag is below "
            f"{MIN_COLOR_SPREAD} mag"
        )
        return False
    return True


@dataclass(frozen=True)
class _Model:
    core: _Core
    cand: np.ndarray  # stars the model was fitted on (over all input stars)
    design: np.ndarray
    exponents: list[tuple[int, int]]
    order: int
    use_color: bool
    response: int  # response order fitted
    target: np.ndarray  # catalog - instrumental mag of the candidate rows
    var: np.ndarray  # their stated variances


def _fit_simplifying(
    imag: np.ndarray,
    ierr: np.ndarray,
    cmag: np.ndarray,
    cerr: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    col: np.ndarray | None,
    valid: np.ndarray,
    *,
    shape: tuple[int, int],
    order: int,
    use_color: bool,
    clip_sigma: float,
    min_stars: int,
    max_iter: int,
    notes: list[str],
    response: int = 0,
    w_all: np.ndarray | None = None,
) -> _Model:
    """Fit the richest model the stars support: the spatial order is lowered until there are
    3 stars per parameter (before and after clipping), then the response order, then the
    colour term is dropped. ``w_all``: the scaled instrumental magnitude of every star."""
    while True:
        cand = valid & np.isfinite(col) if (use_color and col is not None) else valid
        n_cand = int(cand.sum())
        while n_cand < STARS_PER_PARAMETER * _n_params(order, use_color, response) and (
            order > 0 or response > 0
        ):
            if order > 0:
                order -= 1
            else:
                response -= 1
        if use_color and n_cand < STARS_PER_PARAMETER * _n_params(order, True, response):
            use_color = False
            notes.append(f"colour term not fitted: {n_cand} stars are too few")
            continue
        u, v = _normalise(xs[cand], ys[cand], shape)
        parts = [np.ones((n_cand, 1))]
        if use_color and col is not None:
            parts.append(col[cand][:, None])
        exps = poly_exponents(order, min_degree=1)
        parts.append(poly_design(u, v, exps))
        if response and w_all is not None:
            parts.append(_response_design(w_all[cand], response))
        design = np.concatenate(parts, axis=1)
        var = np.maximum(ierr[cand] ** 2 + cerr[cand] ** 2, _VAR_FLOOR)
        target = cmag[cand] - imag[cand]
        core = _fit_core(design, target, var, clip_sigma=clip_sigma, max_iter=max_iter)
        n_used = int(core.used.sum())
        needed = STARS_PER_PARAMETER * _n_params(order, use_color, response)
        if n_used < needed and (order > 0 or response > 0 or use_color) and n_used >= min_stars:
            # Outlier rejection left too few stars for this model: simplify and refit.
            if order > 0:
                order -= 1
            elif response > 0:
                response -= 1
            else:
                use_color = False
                notes.append(f"colour term not fitted: only {n_used} stars survive clipping")
            continue
        return _Model(core, cand, design, exps, order, use_color, response, target, var)
