"""Aperture correction: the scale that turns PSF-fit fluxes into total fluxes.

A PSF fit over a small circle (1.5 FWHM by default) only measures total flux if the model's
wings are right: a fitted Moffat ``beta`` off by 0.03 moves the flux inside the fit circle
relative to the total by ~0.2 %. That error is common to every star on the frame, so it
cancels in a target's magnitude but not in the zero point, whose scatter against the truth
it dominates. Bright stars measured in a wide aperture (whose flux the PSF model only has to
extrapolate by its ~1 % encircled-energy deficit) fix the scale, and their scatter gives its
error.

For each star ``r_i = F_aperture / (EE_model(R) F_psf)``; the correction is the weighted,
sigma-clipped mean of ``r_i``. The PSF-fit flux is (near) the efficient estimator and the
aperture flux an unbiased one of the same photons, so ``Var(r_i) ~ (Var(F_ap) -
Var(EE F_psf)) / (EE F_psf)^2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyphot.core.units import MAG_ERR_FACTOR
from skyphot.errors import InputError

# A star's ratio error is never taken below this (relative): pixelisation and centring.
_RATIO_FLOOR = 1e-3
_MAX_ITER = 10


@dataclass(frozen=True)
class ApertureCorrection:
    """Multiply PSF-fit fluxes by ``factor`` to get total fluxes.

    ``error``: 1-sigma relative error of ``factor`` (scatter-inflated when the stars scatter
    more than their errors). ``radius``: aperture radius used, px. ``n_used``: stars left
    after clipping (0: no correction was measured, ``factor`` 1 and ``error`` 0).
    """

    factor: float
    error: float
    radius: float
    n_used: int

    @property
    def mag(self) -> float:
        """The correction in magnitudes (added to PSF-fit instrumental magnitudes)."""
        return float(-2.5 * np.log10(self.factor))

    @property
    def mag_err(self) -> float:
        """1-sigma error of ``mag``."""
        return float(MAG_ERR_FACTOR * self.error)

    @classmethod
    def none(cls, radius: float) -> ApertureCorrection:
        """No correction (too few stars to measure one)."""
        return cls(factor=1.0, error=0.0, radius=float(radius), n_used=0)


def aperture_correction(
    psf_flux: np.ndarray,
    psf_fluxerr: np.ndarray,
    ap_flux: np.ndarray,
    ap_fluxerr: np.ndarray,
    encircled_energy: np.ndarray,
    *,
    radius: float,
    clip_sigma: float = 3.0,
    min_stars: int = 3,
) -> ApertureCorrection:
    """The PSF-to-total flux scale from stars measured both ways (fluxes in ADU).

    ``encircled_energy``: the PSF model's flux fraction inside the aperture of ``radius`` px
    at each star. Stars with a non-finite or non-positive value anywhere are left out; the
    rest are clipped at ``clip_sigma`` about the weighted mean. Raises ``InputError`` when the
    arrays differ in length or fewer than ``min_stars`` usable stars remain.
    """
    arrays = [np.asarray(a, dtype=float).ravel()
              for a in (psf_flux, psf_fluxerr, ap_flux, ap_fluxerr, encircled_energy)]
    n = arrays[0].size
    if any(a.size != n for a in arrays):
        raise InputError(
            "aperture_correction: psf_flux, psf_fluxerr, ap_flux, ap_fluxerr and "
            f"encircled_energy need one value per star; got lengths {[a.size for a in arrays]}"
        )
    fp, ep, fa, ea, ee = arrays
    ok = np.all([np.isfinite(a) for a in arrays], axis=0) & (fp > 0) & (ep > 0) & (ee > 0)
    ok &= (fa > 0) & (ea > 0)
    if int(ok.sum()) < min_stars:
        raise InputError(
            f"aperture_correction: only {int(ok.sum())} stars have positive, finite PSF and "
            f"aperture fluxes; need {min_stars}"
        )
    expected = ee[ok] * fp[ok]
    ratio = fa[ok] / expected
    var_diff = ea[ok] ** 2 - (ee[ok] * ep[ok]) ** 2
    # The difference can come out negative for noisy error estimates; the floor bounds it.
    sigma = np.sqrt(np.maximum(var_diff, 0.0)) / expected
    sigma = np.hypot(sigma, _RATIO_FLOOR)
    used = np.ones(ratio.size, dtype=bool)
    centre = float(np.median(ratio))
    scale = 1.0
    for _ in range(_MAX_ITER):
        resid = (ratio - centre) / sigma
        new = np.abs(resid) <= clip_sigma * scale
        if int(new.sum()) < min_stars:
            break
        w = 1.0 / sigma[new] ** 2
        centre = float(np.sum(w * ratio[new]) / np.sum(w))
        chi2 = float(np.sum(w * (ratio[new] - centre) ** 2))
        dof = max(int(new.sum()) - 1, 1)
        scale = max(float(np.sqrt(chi2 / dof)), 1.0)
        if np.array_equal(new, used):
            break
        used = new
    n_used = int(used.sum())
    if n_used < min_stars:
        raise InputError(
            f"aperture_correction: only {n_used} stars survive clipping at {clip_sigma} sigma; "
            f"need {min_stars}"
        )
    w = 1.0 / sigma[used] ** 2
    centre = float(np.sum(w * ratio[used]) / np.sum(w))
    chi2 = float(np.sum(w * (ratio[used] - centre) ** 2))
    inflate = max(float(np.sqrt(chi2 / max(n_used - 1, 1))), 1.0)
    error = inflate / float(np.sqrt(np.sum(w))) / centre
    return ApertureCorrection(factor=centre, error=error, radius=float(radius), n_used=n_used)
