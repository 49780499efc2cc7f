"""Measure the reference stars the same way as the target and fit the zero point."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from skyphot.core.aperture_correction import ApertureCorrection, aperture_correction
from skyphot.core.astrometry import world_to_pixel
from skyphot.core.calibration import fit_zero_point
from skyphot.core.photometry import (
    PSFPhotometry,
    aperture_photometry,
    encircled_energy,
    forced_psf_photometry,
    ring_level,
)
from skyphot.core.psf import PSFModel
from skyphot.core.units import MAG_ERR_FACTOR
from skyphot.errors import CalibrationError
from skyphot.pipeline.state import CalibrationStars, FrameState, need

# A neighbour this much fainter (or more) cannot bias a calibration star's PSF flux.
_NEIGHBOUR_DELTA_MAG = 4.0
# A detection within this many FWHM and brighter than this fraction of a calibration star
# (and farther than the self-match radius, so not the star itself) disqualifies the star.
_NEIGHBOUR_RADIUS_FWHM = 2.5
_SELF_RADIUS_FWHM = 0.5
_NEIGHBOUR_FLUX_RATIO = 0.005
# Stars brighter than this S/N give the first, unweighted zero-point guess.
_GUESS_MIN_SNR = 20.0
# Fewest bright clean stars that measure the aperture correction (else none is applied).
_APCORR_MIN_STARS = 5


@dataclass(frozen=True)
class Calibrate:
    """Forced PSF photometry of isolated catalog stars, then the robust zero-point fit.

    Stars are chosen from the catalog (position, isolation, predicted S/N), never from their
    measured flux, so noise cannot select upward fluctuations and bias the zero point.
    """

    name: str = "calibrate"

    def run(self, state: FrameState) -> FrameState:
        frame = need(state.frame, "the frame")
        meta = need(state.meta, "the header")
        data_sub = need(state.data_sub, "the background-subtracted image")
        background = need(state.background, "the background")
        mask = need(state.mask, "the mask")
        catalog = need(state.catalog, "the reference catalog")
        bands = need(state.bands, "the bands")
        solution = need(state.astrometry, "the astrometric solution")
        psf = need(state.psf, "the PSF")
        fwhm = need(state.fwhm, "the FWHM")
        config = state.config
        phot_cfg = config.photometry
        cal_cfg = config.calibration

        table = catalog.table
        x, y = world_to_pixel(
            solution.wcs,
            np.asarray(table["ra"], dtype=float),
            np.asarray(table["dec"], dtype=float),
        )
        mag = np.asarray(table[bands.band], dtype=float)
        err = _errors(table, bands.band)
        ny, nx = frame.shape
        radius = phot_cfg.psf_radius_fwhm * fwhm
        on_frame = (
            np.isfinite(x)
            & np.isfinite(y)
            & (x > radius)
            & (x < nx - 1 - radius)
            & (y > radius)
            & (y < ny - 1 - radius)
        )
        color: np.ndarray | None = None
        if bands.color_bands is not None:
            c1, c2 = bands.color_bands
            color = np.asarray(table[c1], dtype=float) - np.asarray(table[c2], dtype=float)
            on_frame &= np.isfinite(color)
        n_candidates = int(on_frame.sum())
        candidates = on_frame & _isolated(x, y, mag, radius=2.5 * fwhm)
        idx = np.flatnonzero(candidates)
        if idx.size < cal_cfg.min_stars:
            raise CalibrationError(
                f"only {idx.size} isolated catalog stars with a {bands.band} magnitude fall on "
                f"the frame ({n_candidates} before the isolation cut); need "
                f"{cal_cfg.min_stars} — use a deeper catalog or check the field"
            )
        annulus = (phot_cfg.annulus_fwhm[0] * fwhm, phot_cfg.annulus_fwhm[1] * fwhm)
        phot = forced_psf_photometry(
            data_sub,
            x[idx],
            y[idx],
            psf=psf,
            rms=background.rms,
            gain=meta.gain,
            mask=mask != 0,
            radius=radius,
            annulus=annulus,
        )
        clean = np.isfinite(phot.flux) & (phot.n_masked == 0) & ~phot.near_edge
        # Predicted flux from a first zero-point guess: errors and the S/N cut then depend
        # on the catalog, not on each star's own noisy measurement.
        snr = phot.flux / phot.fluxerr
        bright = clean & (snr > _GUESS_MIN_SNR)
        if bright.sum() < 3:
            bright = clean & (phot.flux > 0)
        if not bright.any():
            raise CalibrationError(
                f"no usable calibration star on the frame ({idx.size} catalog stars measured, "
                "all masked, saturated or undetected)"
            )
        zp_guess = float(np.median(mag[idx][bright] + 2.5 * np.log10(phot.flux[bright])))
        predicted = 10.0 ** (-0.4 * (mag[idx] - zp_guess))
        # Source photon noise of a PSF fit is (sum P^3 / (sum P^2)^2) * F / gain, not F / gain;
        # that factor is read off the measured errors of the bright stars.
        photon = (phot.fluxerr[bright] ** 2 - phot.fluxerr_background[bright] ** 2) / phot.flux[
            bright
        ]
        photon_per_adu = float(np.median(photon)) if photon.size else 1.0 / meta.gain
        predicted_err = np.sqrt(phot.fluxerr_background**2 + photon_per_adu * predicted)
        inst_err = MAG_ERR_FACTOR * predicted_err / predicted
        sources = need(state.sources, "the detections")
        uncontaminated = _no_detected_neighbour(
            x[idx], y[idx], predicted, sources.x, sources.y, sources.flux, fwhm=fwhm
        )
        usable = clean & uncontaminated & (inst_err <= cal_cfg.max_mag_err) & (phot.flux > 0)
        if usable.sum() < cal_cfg.min_stars:
            raise CalibrationError(
                f"only {int(usable.sum())} calibration stars are bright enough and unmasked "
                f"({idx.size} catalog stars measured, need {cal_cfg.min_stars}); use a deeper "
                "exposure, a catalog with more stars, or lower calibration.max_mag_err"
            )
        sel = idx[usable]
        apcorr = _aperture_correction(
            data_sub, x[idx], y[idx], phot, usable & bright, psf=psf, rms=background.rms,
            gain=meta.gain, mask=mask != 0, radius=annulus[0], annulus=annulus,
        )
        stars = CalibrationStars(
            x=x[sel],
            y=y[sel],
            cat_mag=mag[sel],
            cat_err=err[sel],
            inst_mag=-2.5 * np.log10(phot.flux[usable] * apcorr.factor),
            inst_err=inst_err[usable],
            color=None if color is None else color[sel],
            n_candidates=n_candidates,
        )
        fit = fit_zero_point(
            stars.inst_mag,
            stars.inst_err,
            stars.cat_mag,
            stars.cat_err,
            x=stars.x,
            y=stars.y,
            shape=frame.shape,
            color=stars.color,
            spatial_order=cal_cfg.spatial_order,
            fit_color_term=cal_cfg.fit_color_term and stars.color is not None,
            clip_sigma=cal_cfg.clip_sigma,
            min_stars=cal_cfg.min_stars,
        )
        return replace(state, calib_stars=stars, zero_point=fit, aperture_correction=apcorr)


def _aperture_correction(
    data_sub: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    phot: PSFPhotometry,
    select: np.ndarray,
    *,
    psf: PSFModel,
    rms: np.ndarray,
    gain: float,
    mask: np.ndarray,
    radius: float,
    annulus: tuple[float, float],
) -> ApertureCorrection:
    """PSF-to-total flux scale from the bright calibration stars in a wide aperture; no
    correction (factor 1) when fewer than ``_APCORR_MIN_STARS`` clean stars are available."""
    idx = np.flatnonzero(select)
    if idx.size < _APCORR_MIN_STARS:
        return ApertureCorrection.none(radius)
    ap = aperture_photometry(
        data_sub, x[idx], y[idx], radius=radius, rms=rms, gain=gain, mask=mask, annulus=annulus
    )
    clean = (ap.n_masked == 0) & ~ap.near_edge & np.isfinite(ap.flux)
    if int(clean.sum()) < _APCORR_MIN_STARS:
        return ApertureCorrection.none(radius)
    keep = idx[clean]
    ee = np.array([encircled_energy(psf, float(x[k]), float(y[k]), radius) for k in keep])
    # What the aperture keeps of a unit star once its own wings in the annulus are subtracted.
    ee = ee - ap.area[clean] * ring_level(psf, x[keep], y[keep], annulus)
    return aperture_correction(
        phot.flux[keep], phot.fluxerr[keep], ap.flux[clean], ap.fluxerr[clean], ee,
        radius=radius, min_stars=_APCORR_MIN_STARS,
    )


def _errors(table: Table, band: str) -> np.ndarray:
    """Catalog magnitude errors, with unknown ones replaced by a conservative 0.03 mag."""
    name = f"{band}_err"
    if name not in table.colnames:
        return np.full(len(table), 0.03)
    err = np.asarray(table[name], dtype=float)
    return np.where(np.isfinite(err) & (err > 0), err, 0.03)


def _no_detected_neighbour(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    det_x: np.ndarray,
    det_y: np.ndarray,
    det_flux: np.ndarray,
    *,
    fwhm: float,
) -> np.ndarray:
    """False for stars with a detected neighbour (not in the catalog, often fainter than its
    depth) close and bright enough to add more than ~0.5% to the PSF-fit flux."""
    result = np.ones(x.size, dtype=bool)
    if det_x.size == 0 or x.size == 0:
        return result
    tree = cKDTree(np.column_stack([det_x, det_y]))
    near = tree.query_ball_point(np.column_stack([x, y]), _NEIGHBOUR_RADIUS_FWHM * fwhm)
    for k, found in enumerate(near):
        if not found:
            continue
        idx = np.asarray(found)
        dist = np.hypot(det_x[idx] - x[k], det_y[idx] - y[k])
        others = idx[dist > _SELF_RADIUS_FWHM * fwhm]
        if others.size and np.max(det_flux[others]) > _NEIGHBOUR_FLUX_RATIO * flux[k]:
            result[k] = False
    return result


def _isolated(x: np.ndarray, y: np.ndarray, mag: np.ndarray, *, radius: float) -> np.ndarray:
    """True for stars with no catalog neighbour within ``radius`` px bright enough to matter."""
    ok = np.isfinite(x) & np.isfinite(y)
    result = np.zeros(x.size, dtype=bool)
    points = np.column_stack([x[ok], y[ok]])
    if points.shape[0] == 0:
        return result
    tree = cKDTree(points)
    pairs = tree.query_pairs(radius, output_type="ndarray")
    isolated = np.ones(points.shape[0], dtype=bool)
    m = mag[ok]
    first, second = pairs[:, 0], pairs[:, 1]
    isolated[first[m[second] < m[first] + _NEIGHBOUR_DELTA_MAG]] = False
    isolated[second[m[first] < m[second] + _NEIGHBOUR_DELTA_MAG]] = False
    result[np.flatnonzero(ok)] = isolated
    return result
