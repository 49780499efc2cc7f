"""Aperture correction: the scale that turns PSF-fit fluxes into total fluxes.

A PSF fit over a small circle (1.5 FWHM by default) only measures total flux if the model's
wings are right: a fitted Moffat ``beta`` off by 0.03 moves the flux inside the fit circle
relative to the total by ~0.2 %, and a FWHM polynomial slightly off somewhere does the same
locally. Such errors cancel in a target's magnitude (calibrators and target share the
model) but not in the zero point, whose scatter against the truth they dominated. Bright
stars measured in a wide aperture (whose flux the PSF model only has to extrapolate by its
~1 % encircled-energy deficit) fix the scale, and their scatter gives its error.

For each star ``r_i = F_aperture / (EE_model(R) F_psf)``; the correction is a weighted,
sigma-clipped low-order polynomial of ``r`` over the frame (order lowered until there are
``STARS_PER_TERM`` stars per term). Both fluxes measure the same photons and subtract the
same annulus level, so ``Var(r_i) = (Var(F_ap) + EE^2 Var(F_psf) - 2 EE Cov(F_ap, F_psf))
/ (EE F_psf)^2`` with the covariance from the pixel weights of both (the shared pixels and
the shared local background). Against a Monte-Carlo (Moffat stars of 3e3-2e5 ADU) this is
within 8 %, where independent fluxes overstate it 1.5-3.3 times and the efficient-estimator
guess ``Var(F_ap) - EE^2 Var(F_psf)`` used before understated it for bright stars (half at
6e4 ADU, negative at 2e5). Each star's variance is then ``k Var(r_i) + s^2``, the error
scale ``k >= 1`` and the extra scatter ``s`` fitted by REML on the used stars
(``core.stats.reml_error_model``), and the coefficients' covariance uses those variances.
On simulated frames the apertures of the chosen (neighbour-free) stars also hold ~0.3
ADU/px less than their annulus level says, which made faint stars' ratios low by ~1/flux
and the zero point ~1 mmag low; with ``area`` that level is fitted as one more term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyphot.core.stats import (
    ErrorModel,
    reml_error_model,
    robust_extra_scatter,
    weighted_lstsq,
)
from skyphot.core.units import MAG_ERR_FACTOR
from skyphot.core.wcs_utils import poly_design, poly_exponents
from skyphot.errors import InputError

# A star's ratio error is never taken below this (relative): pixelisation and centring.
_RATIO_FLOOR = 1e-3
_MAX_ITER = 10
# The correction follows the PSF model's error, quadratic over the field as the model's
# polynomials are; a plane fitted instead has a misfit its error does not cover. At 15 stars
# per term the ~85 stars of a 1024^2 frame gave a plane, and the pull of the correction at
# the target had std 1.48 (zp_diagnose, 80 frames); at 10 a quadratic, 1.08.
STARS_PER_TERM = 10


@dataclass(frozen=True)
class ApertureCorrection:
    """Multiply a PSF-fit flux at pixel (x, y) by ``factor_at(x, y)`` to get its total flux.

    The factor is a polynomial of ``order`` in ``u, v`` (the position scaled to [-1, 1] over
    a frame of ``shape``) with ``coefficients`` and their ``covariance``. ``radius``:
    aperture radius used, px. ``n_used``: stars left after clipping (0: no correction was
    measured; the factor is 1 with no error). ``scatter``: the stars' scatter about the fit
    beyond their noise (relative), added to every star's error; ``error_scale``: the factor
    (>= 1) on the stars' stated ratio variances (REML, with ``scatter``).
    """

    coefficients: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...]
    order: int
    shape: tuple[int, int]
    radius: float
    n_used: int
    scatter: float = 0.0
    error_scale: float = 1.0

    def _design(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, v = _normalise(np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float)),
                          self.shape)
        return poly_design(u, v, poly_exponents(self.order))

    def factor_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The correction factor at pixel positions."""
        return np.asarray(self._design(x, y) @ np.asarray(self.coefficients))

    def error_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """1-sigma relative error of ``factor_at`` (full covariance)."""
        d = self._design(x, y)
        var = np.einsum("ni,ij,nj->n", d, np.asarray(self.covariance), d)
        return np.asarray(np.sqrt(np.maximum(var, 0.0)) / self.factor_at(x, y))

    def mag_err_at(self, x: float, y: float) -> float:
        """1-sigma error (mag) of the correction at one position."""
        return float(MAG_ERR_FACTOR * self.error_at(np.array([x]), np.array([y]))[0])

    @property
    def factor(self) -> float:
        """The factor at the frame centre."""
        ny, nx = self.shape
        return float(self.factor_at(np.array([(nx - 1) / 2.0]), np.array([(ny - 1) / 2.0]))[0])

    @property
    def error(self) -> float:
        """1-sigma relative error of ``factor``."""
        ny, nx = self.shape
        return float(self.error_at(np.array([(nx - 1) / 2.0]), np.array([(ny - 1) / 2.0]))[0])

    @property
    def mag(self) -> float:
        """The correction at the frame centre in magnitudes (added to instrumental ones)."""
        return float(-2.5 * np.log10(self.factor))

    @property
    def mag_err(self) -> float:
        """1-sigma error of ``mag``."""
        return float(MAG_ERR_FACTOR * self.error)

    @classmethod
    def none(cls, radius: float, shape: tuple[int, int]) -> ApertureCorrection:
        """No correction (too few stars to measure one)."""
        return cls(coefficients=(1.0,), covariance=((0.0,),), order=0,
                   shape=(int(shape[0]), int(shape[1])), radius=float(radius), n_used=0)


def _normalise(
    x: np.ndarray, y: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    return 2.0 * x / max(nx - 1, 1) - 1.0, 2.0 * y / max(ny - 1, 1) - 1.0


def aperture_correction(
    psf_flux: np.ndarray,
    psf_fluxerr: np.ndarray,
    ap_flux: np.ndarray,
    ap_fluxerr: np.ndarray,
    encircled_energy: np.ndarray,
    *,
    x: np.ndarray,
    y: np.ndarray,
    shape: tuple[int, int],
    radius: float,
    area: np.ndarray | None = None,
    covariance: np.ndarray | None = None,
    order: int = 2,
    clip_sigma: float = 3.0,
    min_stars: int = 3,
) -> ApertureCorrection:
    """The PSF-to-total flux scale over the frame from stars measured both ways (ADU).

    ``encircled_energy``: the PSF model's flux fraction inside the aperture of ``radius`` px
    at each star; ``x, y``: the stars' pixel positions on a frame of ``shape`` (ny, nx).
    ``area``: the apertures' areas (px^2); when given, a background level common to the
    apertures (ADU/px, beyond what the annulus removed) is fitted alongside, so it cannot
    masquerade as a flux scale (its effect falls as 1/flux, the scale's does not).
    ``covariance``: Cov(F_psf, F_aperture) per star (ADU^2; they share photons and the local
    background, ``PSFPhotometry.aperture_covariance``); without it the PSF fit is taken as
    the efficient estimator, ``Cov = EE Var(F_psf)``. Stars with a non-finite or
    non-positive value anywhere are left out; the rest are
    clipped at ``clip_sigma`` about the fit. Raises ``InputError`` when the arrays differ in
    length or fewer than ``min_stars`` usable stars remain.
    """
    arrays = [np.asarray(a, dtype=float).ravel()
              for a in (psf_flux, psf_fluxerr, ap_flux, ap_fluxerr, encircled_energy, x, y)]
    if area is not None:
        arrays.append(np.asarray(area, dtype=float).ravel())
    if covariance is not None:
        arrays.append(np.asarray(covariance, dtype=float).ravel())
    n = arrays[0].size
    if any(a.size != n for a in arrays):
        raise InputError(
            "aperture_correction: psf_flux, psf_fluxerr, ap_flux, ap_fluxerr, "
            f"encircled_energy, x, y (and area, covariance) need one value per star; got lengths "
            f"{[a.size for a in arrays]}"
        )
    fp, ep, fa, ea, ee, xs, ys = arrays[:7]
    ok = np.all([np.isfinite(a) for a in arrays], axis=0) & (fp > 0) & (ep > 0) & (ee > 0)
    ok &= (fa > 0) & (ea > 0)
    if int(ok.sum()) < min_stars:
        raise InputError(
            f"aperture_correction: only {int(ok.sum())} stars have positive, finite PSF and "
            f"aperture fluxes; need {min_stars}"
        )
    expected = ee[ok] * fp[ok]
    ratio = fa[ok] / expected
    # Var(F_ap - EE F_psf): the two share photons, so their covariance is subtracted.
    cov_pa = ee[ok] * ep[ok] ** 2 if covariance is None else arrays[-1][ok]
    var_diff = ea[ok] ** 2 + (ee[ok] * ep[ok]) ** 2 - 2.0 * ee[ok] * cov_pa
    # The difference can come out negative for noisy error estimates; the floor bounds it.
    sigma = np.hypot(np.sqrt(np.maximum(var_diff, 0.0)) / expected, _RATIO_FLOOR)
    n_extra = 0 if area is None else 1
    while order > 0 and ratio.size < STARS_PER_TERM * (len(poly_exponents(order)) + n_extra):
        order -= 1
    u, v = _normalise(xs[ok], ys[ok], shape)
    design = poly_design(u, v, poly_exponents(order))
    n_poly = design.shape[1]
    if area is not None:
        # r_i = k(x, y) + b A_i / (EE_i F_i): a level b (ADU/px) in every aperture.
        design = np.column_stack([design, arrays[7][ok] / expected])  # arrays[7]: area
    fit = _robust_fit(design, ratio, sigma, clip_sigma=clip_sigma,
                      min_used=max(min_stars, design.shape[1] + 1))
    n_used = int(fit.used.sum())
    if n_used < max(min_stars, design.shape[1] + 1):
        raise InputError(
            f"aperture_correction: only {n_used} stars survive clipping at {clip_sigma} sigma; "
            f"need {min_stars}"
        )
    # The polynomial's covariance marginalised over the level: the sub-block.
    cov = fit.covariance[:n_poly, :n_poly]
    return ApertureCorrection(
        coefficients=tuple(float(c) for c in fit.coefficients[:n_poly]),
        covariance=tuple(tuple(float(c) for c in row) for row in cov),
        order=order, shape=(int(shape[0]), int(shape[1])), radius=float(radius), n_used=n_used,
        scatter=fit.errors.scatter, error_scale=fit.errors.scale,
    )


@dataclass(frozen=True)
class _Fit:
    coefficients: np.ndarray
    covariance: np.ndarray
    errors: ErrorModel
    used: np.ndarray


def _robust_fit(
    design: np.ndarray, ratio: np.ndarray, sigma: np.ndarray, *, clip_sigma: float,
    min_used: int,
) -> _Fit:
    """Weighted fit with per-star variances ``k sigma^2 + s^2`` (the REML error model: scale
    ``k >= 1``, extra scatter ``s``), clipped at ``clip_sigma`` from a median start.

    The stars' ratios scatter beyond their noise (PSF-model misfit star by star, faint
    neighbours and unmodelled wings in the wide aperture): ~0.2 % for the brightest, whose
    noise alone is ~0.1 %. Without ``s`` a handful of bright stars carried nearly all the
    weight and the correction's error (even scaled by the reduced chi-square, which the
    many faint stars held near 1) was ~1.7 times too small.
    """
    var = sigma**2
    resid = ratio - float(np.median(ratio))
    scatter = robust_extra_scatter(resid, var)
    used = np.abs(resid) <= clip_sigma * np.sqrt(var + scatter**2)
    coef = np.zeros(design.shape[1])
    errors = ErrorModel(1.0, scatter)
    for _ in range(_MAX_ITER):
        if int(used.sum()) < min_used:
            break
        errors = reml_error_model(design[used], ratio[used], var[used])
        coef = weighted_lstsq(design[used], ratio[used], 1.0 / errors.variance(var[used]))
        resid = ratio - design @ coef
        new = np.abs(resid) <= clip_sigma * np.sqrt(errors.variance(var))
        if np.array_equal(new, used):
            break
        used = new
    if int(used.sum()) < min_used:
        return _Fit(coef, np.full((design.shape[1],) * 2, np.nan), errors, used)
    errors = reml_error_model(design[used], ratio[used], var[used])
    w = 1.0 / errors.variance(var[used])
    coef = weighted_lstsq(design[used], ratio[used], w)
    cov = np.linalg.inv((design[used] * w[:, None]).T @ design[used])
    return _Fit(coef, cov, errors, used)
