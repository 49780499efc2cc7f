"""The template/science flux ratio from what static stars leave in a first difference image.

The stars' fluxes measured on each frame rest on that frame's own total-flux scale (PSF
fit and aperture correction), whose systematics differ between a sharp and a broad PSF by
a few 0.1%; times a host 10-20 times the transient, that is a sizeable fraction of the
error. What a static star leaves in a difference made with a trial ratio gives the ratio
without that scale (``flux_ratio_from_difference``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import RectBivariateSpline

from skyphot.core.detection import SourceList, isolated
from skyphot.core.flux_ratio import RatioEstimate, fit_flux_ratio
from skyphot.core.masking import grow
from skyphot.core.photometry import AperturePhotometry, aperture_photometry, forced_psf_photometry
from skyphot.core.psf import PSFModel
from skyphot.core.resample import PixelMap, pixel_map_jacobian, psf_on_grid
from skyphot.core.units import MAG_ERR_FACTOR
from skyphot.core.zogy import StampPSF, zogy
from skyphot.errors import TooFewStarsError

MIN_RATIO_STARS = 5
"""Fewest stars a flux ratio rests on."""
# Nodes per side of the grid on which the stars' PSF-variation residual is modelled (see
# ``_model_residuals``).
_MODEL_GRID = 5
# What a star leaves in the first difference is summed in an aperture of this radius and
# its local background taken from this annulus (units of the larger FWHM); the star must
# be this far from the target and have no detected neighbour brighter than
# ``_RESIDUAL_NEIGHBOUR_FLUX`` of its own flux within the aperture plus one FWHM.
_RESIDUAL_APERTURE_FWHM = 3.0
_RESIDUAL_ANNULUS_FWHM = (5.0, 7.0)
_RESIDUAL_TARGET_FWHM = 10.0
_RESIDUAL_NEIGHBOUR_FLUX = 0.02


@dataclass(frozen=True)
class DifferencePSFs:
    """Both frames' PSF models across the aligned region and its map into the template
    (``pmap``: the region's pixels, the region starting at the ``origin`` given with it)."""

    science: PSFModel
    template: PSFModel
    pmap: PixelMap
    order: int
    """Spline order the template was resampled with (its PSF is resampled the same way)."""


def flux_ratio_from_difference(
    sci: np.ndarray,
    ref: np.ndarray,
    var_n: np.ndarray,
    var_r: np.ndarray,
    bad: np.ndarray,
    psf_n: np.ndarray,
    psf_r: np.ndarray,
    flux_ratio: float,
    *,
    sources: SourceList,
    origin: tuple[int, int],
    target: tuple[float, float],
    fwhm: float,
    gain: float,
    window: int,
    ref_noise_acf: np.ndarray | None = None,
    field: DifferencePSFs | None = None,
    min_stars: int = MIN_RATIO_STARS,
) -> RatioEstimate:
    """The flux ratio from what static stars leave in a ZOGY difference made with
    ``flux_ratio``; raises ``TooFewStarsError`` when fewer than ``min_stars`` are usable.

    A static source of science flux s, subtracted with ratio rho where rho0 is right,
    becomes a point source of flux ``s (1 - rho0 / rho)`` with the difference PSF P_D
    (ZOGY eq. 13-14), at every spatial frequency and whatever the PSF models' errors in
    the source's total flux. So each star's residual r (PSF fit with P_D) and science flux
    s give ``rho0 = rho (1 - r / s)``; the PSF models enter only through r / s, which is
    small: the result no longer rests on either frame's own total-flux scale.

    That holds where the two PSFs are those the difference was made with, i.e. at the
    target: a star elsewhere has both PSFs a little different (FWHM and shape vary across
    the frame), and leaves a residual even with the right ratio. Growing with the distance
    from the target (quadratically, as the PSF's FWHM does), it is not absorbed by the
    ratio's linear fit and biased the ratio at the target by 0.2-0.4% on 1024 px windows
    (noise-free benchmark frames; times a host 10-20 times the transient, a few 0.01 mag).
    With ``field`` given, that residual is predicted for each star from both PSF models at
    its position (a noise-free model of the stars subtracted the same way) and removed.
    """
    ny, nx = sci.shape
    tx, ty = target
    w = min(window, ny, nx)
    wx0 = int(np.clip(round(tx) - w // 2, 0, nx - w))
    wy0 = int(np.clip(round(ty) - w // 2, 0, ny - w))
    box = (slice(wy0, wy0 + w), slice(wx0, wx0 + w))
    size = psf_n.shape[0]
    vn, vr = var_n[box], var_r[box]
    # white levels from a sparse sample, as for the tiles (a full median costs ~50 ms)
    sigmas = (
        math.sqrt(float(np.median(vn[::4, ::4]))), math.sqrt(float(np.median(vr[::4, ::4])))
    )
    z = zogy(
        sci[box], ref[box], psf_n, psf_r, sigma_new=sigmas[0], sigma_ref=sigmas[1],
        flux_ratio=flux_ratio, var_new=vn, var_ref=vr, psf_size=size,
        ref_noise_acf=ref_noise_acf,
    )
    xs = sources.x - origin[0] - wx0
    ys = sources.y - origin[1] - wy0
    edge = size + 2.0 * fwhm
    w_bad = grow(bad[box], math.ceil(2.0 * fwhm))
    sel = _usable_stars(sources, xs, ys, w_bad, (tx - wx0, ty - wy0), edge=edge, fwhm=fwhm)
    if int(sel.sum()) < min_stars:
        raise TooFewStarsError(
            f"only {int(sel.sum())} isolated unmasked stars in the {w} px window; the flux "
            f"ratio from the difference image needs {min_stars}"
        )
    xs, ys = xs[sel], ys[sel]
    radius = 1.5 * fwhm
    annulus = (3.0 * fwhm, 5.0 * fwhm)
    s_phot = forced_psf_photometry(
        sci[box], xs, ys, psf=StampPSF.from_stamp(psf_n), rms=np.sqrt(vn), gain=gain,
        mask=w_bad, radius=radius, annulus=annulus,
    )
    t_phot = forced_psf_photometry(
        ref[box] / flux_ratio, xs, ys, psf=StampPSF.from_stamp(psf_r),
        rms=np.sqrt(vr) / flux_ratio, gain=gain * flux_ratio, mask=w_bad, radius=radius,
        annulus=annulus,
    )
    r_phot = _residual_flux(z.difference, z.variance, xs, ys, fwhm=fwhm, gain=gain, mask=w_bad)
    # The star's flux s from both images, inverse-variance weighted: the residual r holds
    # the science noise with a plus sign and the template noise with a minus sign, so this
    # s is (to first order) uncorrelated with r. With the science flux alone, choosing and
    # weighting stars by s favours upward science noise, which r shares: the ratio came out
    # ~0.3% low on the benchmark frames.
    w_n = 1.0 / s_phot.fluxerr_background**2
    w_t = 1.0 / t_phot.fluxerr_background**2
    s = (w_n * s_phot.flux + w_t * t_phot.flux) / (w_n + w_t)
    s_err = 1.0 / np.sqrt(w_n + w_t)
    r, r_err = r_phot.flux, r_phot.fluxerr
    if field is not None:
        r = r - s * _model_residuals(
            field, xs, ys, origin, (wx0, wy0), (tx - wx0, ty - wy0), w, edge, psf_n, psf_r,
            flux_ratio,
            sigmas, ref_noise_acf, rms=float(np.sqrt(np.median(z.variance[::4, ::4]))),
            gain=gain, fwhm=fwhm,
        )
    # Bright stars only: a faint star's r / s is noise, and its s error would not be second
    # order any more.
    ok = np.isfinite(s) & np.isfinite(s_err) & np.isfinite(r) & np.isfinite(r_err) & (r_err > 0)
    ok &= s > 20.0 * np.where(ok, s_err, np.inf)
    ok &= np.abs(r) < 0.2 * np.abs(s)
    if int(ok.sum()) < min_stars:
        raise TooFewStarsError(
            f"only {int(ok.sum())} stars are bright enough (S/N > 20) for the flux ratio "
            f"from the difference image; it needs {min_stars}"
        )
    q = r[ok] / s[ok]
    d_mag = -2.5 * np.log10(flux_ratio * (1.0 - q))
    d_err = MAG_ERR_FACTOR * (r_err[ok] / s[ok]) / (1.0 - q)
    fit = fit_flux_ratio(
        d_mag, d_err, xs[ok], ys[ok], at=(tx - wx0, ty - wy0), shape=(w, w),
        max_order=1, min_stars=min_stars,
    )
    return RatioEstimate(ratio=fit.ratio, ln_err=fit.ln_err, n_stars=fit.n_used)


def _usable_stars(
    sources: SourceList,
    xs: np.ndarray,
    ys: np.ndarray,
    bad: np.ndarray,
    target: tuple[float, float],
    *,
    edge: float,
    fwhm: float,
) -> np.ndarray:
    """Which ``sources`` (at window pixels ``xs``, ``ys``) can give the ratio: clear of the
    window's edges by ``edge`` (the FFT wraps), of the target and its host, of brighter
    neighbours and of ``bad`` pixels."""
    w = bad.shape[0]
    sel = (xs > edge) & (xs < w - 1 - edge) & (ys > edge) & (ys < w - 1 - edge)
    sel &= np.hypot(xs - target[0], ys - target[1]) > _RESIDUAL_TARGET_FWHM * fwhm
    sel &= isolated(
        sources, radius=(_RESIDUAL_APERTURE_FWHM + 1.0) * fwhm,
        min_flux_ratio=_RESIDUAL_NEIGHBOUR_FLUX,
    )
    xi = np.clip(np.rint(xs), 0, w - 1).astype(np.intp)
    yi = np.clip(np.rint(ys), 0, w - 1).astype(np.intp)
    return np.asarray(sel & ~bad[yi, xi])


def _model_residuals(
    field: DifferencePSFs,
    xs: np.ndarray,
    ys: np.ndarray,
    origin: tuple[int, int],
    offset: tuple[int, int],
    target: tuple[float, float],
    width: int,
    edge: float,
    psf_n: np.ndarray,
    psf_r: np.ndarray,
    flux_ratio: float,
    sigmas: tuple[float, float],
    ref_noise_acf: np.ndarray | None,
    *,
    rms: float,
    gain: float,
    fwhm: float,
) -> np.ndarray:
    """The fraction of its flux a static star at window pixel (``xs``, ``ys``) leaves in a
    ZOGY difference made with the PSFs at the target (``psf_n``, ``psf_r``) and the right
    ratio, measured as the stars' residuals are (PSF fit with P_D, local background).

    Unit stars are rendered noise-free with both PSF models at the nodes of a
    ``_MODEL_GRID`` x ``_MODEL_GRID`` grid over the window (within ``edge`` px of its
    sides; the template's through the pixel map onto the science grid), each in its own
    cell of a small mosaic subtracted with the same kernels; the fraction left varies as
    slowly as the PSFs do and is interpolated (bicubic) to every star, relative to its
    value at the ``target`` (window px), where the difference's PSFs are exact: only the
    variation is taken from the models, not their truncation or total flux. ``origin``: the
    aligned region's first pixel in the science frame (``field.pmap`` covers the region);
    ``offset``: the window's first pixel in the region; ``sigmas``: the white noise levels
    the difference was made with; ``rms``: a typical per-pixel noise of that difference.
    """
    n = _MODEL_GRID
    size = psf_n.shape[0]
    h = size // 2
    if width - 1 - 2 * edge < 4 * (n - 1):  # no room for a grid (nor for many stars)
        return np.zeros(xs.shape)
    nodes = np.linspace(edge, width - 1 - edge, n).round()
    cell = 2 * size
    mosaic = (n * cell, n * cell)
    model_n = np.zeros(mosaic)
    model_r = np.zeros(mosaic)
    rx0, ry0 = offset
    pmap = field.pmap
    centres = []
    for jj, wy in enumerate(nodes):
        for ii, wx in enumerate(nodes):
            i, j = int(wx) + rx0, int(wy) + ry0  # the node's pixel in the aligned region
            stamp_n, _, _ = field.science.render(float(i + origin[0]), float(j + origin[1]), size)
            stamp_r = psf_on_grid(
                field.template, float(pmap.x[j, i]), float(pmap.y[j, i]),
                pixel_map_jacobian(pmap, i, j), size, order=field.order,
            )
            cy, cx = jj * cell + cell // 2, ii * cell + cell // 2
            box = (slice(cy - h, cy + h + 1), slice(cx - h, cx + h + 1))
            model_n[box] = stamp_n / float(np.sum(stamp_n))  # unit sum, as the template's
            model_r[box] = flux_ratio * stamp_r
            centres.append((cx, cy))
    mz = zogy(
        model_n, model_r, psf_n, psf_r, sigma_new=sigmas[0], sigma_ref=sigmas[1],
        flux_ratio=flux_ratio, psf_size=size, ref_noise_acf=ref_noise_acf,
        matched_filter=False,
    )
    cxy = np.asarray(centres, dtype=float)
    phot = _residual_flux(
        mz.difference, np.full(mosaic, rms**2), cxy[:, 0], cxy[:, 1], fwhm=fwhm, gain=gain,
        mask=None,
    )
    left = np.nan_to_num(np.asarray(phot.flux, dtype=float)).reshape(n, n)  # [y, x]
    spline = RectBivariateSpline(nodes, nodes, left, kx=3, ky=3)
    lo, hi = nodes[0], nodes[-1]
    at_target = float(spline.ev(np.clip(target[1], lo, hi), np.clip(target[0], lo, hi)))
    return np.asarray(spline.ev(np.clip(ys, lo, hi), np.clip(xs, lo, hi))) - at_target


def _residual_flux(
    diff: np.ndarray,
    var: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    fwhm: float,
    gain: float,
    mask: np.ndarray | None,
) -> AperturePhotometry:
    """What static stars at (``xs``, ``ys``) leave in a difference image: an aperture sum
    out to ``_RESIDUAL_APERTURE_FWHM`` x ``fwhm`` less a local background.

    A PSF fit with the difference's PSF would be less noisy, but an error in either PSF
    model's shape (a Moffat beta off by 1%, or a real PSF no Moffat fits) leaves every
    star a residual of zero total flux and non-zero PSF-fit flux: on the benchmark frames
    that biased the ratio by 0.3-0.5%, times a host ten times the transient. A wide
    aperture holds all but the encircled-energy difference of that residual (< 0.1%)."""
    return aperture_photometry(
        diff, xs, ys, radius=_RESIDUAL_APERTURE_FWHM * fwhm, rms=np.sqrt(var), gain=gain,
        mask=mask, annulus=(_RESIDUAL_ANNULUS_FWHM[0] * fwhm, _RESIDUAL_ANNULUS_FWHM[1] * fwhm),
    )
