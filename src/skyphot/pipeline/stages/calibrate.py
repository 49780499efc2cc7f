"""Measure the reference stars the same way as the target and fit the zero point."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from astropy.table import Table

from skyphot.core.aperture_correction import ApertureCorrection
from skyphot.core.astrometry import world_to_pixel
from skyphot.core.calibration import fit_zero_point
from skyphot.core.calibration_stars import (
    PredictedErrors,
    inside_frame,
    isolated,
    measure_aperture_correction,
    no_detected_neighbour,
    predicted_errors,
)
from skyphot.core.photometry import PSFPhotometry, forced_psf_photometry
from skyphot.errors import CalibrationError
from skyphot.pipeline.stages.image import source_discs_of
from skyphot.pipeline.state import CalibrationStars, FrameState, need


@dataclass(frozen=True)
class Calibrate:
    """Forced PSF photometry of isolated catalog stars, then the robust zero-point fit.

    Stars are chosen from the catalog (position, isolation, predicted S/N), never from their
    measured flux, so noise cannot select upward fluctuations and bias the zero point. Their
    PSF-fit fluxes are put on the total-flux scale by the aperture correction measured on
    the bright ones, so the zero point is that of total fluxes.
    """

    name: str = "calibrate"

    def run(self, state: FrameState) -> FrameState:
        cal_cfg = state.config.calibration
        cand = _candidates(state)
        measured = _measure(state, cand)
        sel, usable = cand.idx[measured.usable], measured.usable
        stars = CalibrationStars(
            x=cand.x[sel],
            y=cand.y[sel],
            cat_mag=cand.mag[sel],
            cat_err=cand.err[sel],
            inst_mag=-2.5 * np.log10(
                measured.phot.flux[usable] * measured.apcorr.factor_at(cand.x[sel], cand.y[sel])
            ),
            inst_err=measured.predicted.inst_err[usable],
            color=None if cand.color is None else cand.color[sel],
            n_candidates=cand.n_on_frame,
            fit_chi2=measured.phot.chi2[usable],
            snr=measured.phot.flux[usable] / measured.phot.fluxerr[usable],
        )
        fit = fit_zero_point(
            stars.inst_mag,
            stars.inst_err,
            stars.cat_mag,
            stars.cat_err,
            x=stars.x,
            y=stars.y,
            shape=need(state.frame, "the frame").shape,
            color=stars.color,
            spatial_order=cal_cfg.spatial_order,
            fit_color_term=cal_cfg.fit_color_term and stars.color is not None,
            clip_sigma=cal_cfg.clip_sigma,
            min_stars=cal_cfg.min_stars,
            response_order=cal_cfg.response_order,
        )
        return replace(
            state, calib_stars=stars, zero_point=fit, aperture_correction=measured.apcorr
        )


@dataclass(frozen=True)
class _Candidates:
    """Every catalog star's pixel position, magnitude, error and colour (None without a
    colour), the indices of the isolated ones on the frame, and how many fell on it."""

    x: np.ndarray
    y: np.ndarray
    mag: np.ndarray
    err: np.ndarray
    color: np.ndarray | None
    idx: np.ndarray
    n_on_frame: int


def _candidates(state: FrameState) -> _Candidates:
    """The catalog stars to measure: on the frame (with a colour when one is used) and
    isolated; a ``CalibrationError`` when fewer than ``calibration.min_stars``."""
    table = need(state.catalog, "the reference catalog").table
    bands = need(state.bands, "the bands")
    fwhm = need(state.fwhm, "the FWHM")
    x, y = world_to_pixel(
        need(state.astrometry, "the astrometric solution").wcs,
        np.asarray(table["ra"], dtype=float),
        np.asarray(table["dec"], dtype=float),
    )
    mag = np.asarray(table[bands.band], dtype=float)
    radius = state.config.photometry.psf_radius_fwhm * fwhm
    on_frame = inside_frame(x, y, need(state.frame, "the frame").shape, radius)
    color: np.ndarray | None = None
    if bands.color_bands is not None:
        c1, c2 = bands.color_bands
        color = np.asarray(table[c1], dtype=float) - np.asarray(table[c2], dtype=float)
        on_frame &= np.isfinite(color)
    n_on_frame = int(on_frame.sum())
    idx = np.flatnonzero(on_frame & isolated(x, y, mag, radius=2.5 * fwhm))
    min_stars = state.config.calibration.min_stars
    if idx.size < min_stars:
        raise CalibrationError(
            f"only {idx.size} isolated catalog stars with a {bands.band} magnitude fall on "
            f"the frame ({n_on_frame} before the isolation cut); need "
            f"{min_stars} — use a deeper catalog or check the field"
        )
    return _Candidates(x=x, y=y, mag=mag, err=_errors(table, bands.band), color=color, idx=idx,
                       n_on_frame=n_on_frame)


@dataclass(frozen=True)
class _Measured:
    """The candidates' forced photometry, predicted errors, which are usable for the fit,
    and the aperture correction measured on the bright usable ones."""

    phot: PSFPhotometry
    predicted: PredictedErrors
    usable: np.ndarray
    apcorr: ApertureCorrection


def _measure(state: FrameState, cand: _Candidates) -> _Measured:
    """Forced PSF photometry of the candidates; the usable ones are unmasked, clear of
    detected neighbours and predicted precise enough (``calibration.max_mag_err``)."""
    meta = need(state.meta, "the header")
    data_sub = need(state.data_sub, "the background-subtracted image")
    background = need(state.background, "the background")
    psf = need(state.psf, "the PSF")
    fwhm = need(state.fwhm, "the FWHM")
    sources = need(state.sources, "the detections")
    phot_cfg = state.config.photometry
    cal_cfg = state.config.calibration
    idx = cand.idx
    radius = phot_cfg.psf_radius_fwhm * fwhm
    annulus = (phot_cfg.annulus_fwhm[0] * fwhm, phot_cfg.annulus_fwhm[1] * fwhm)
    bad = need(state.mask, "the mask") != 0  # made once: each frame-sized copy counts
    # Isolated stars' annuli would hold more neighbour light than their fit circles.
    discs = source_discs_of(state)
    phot = forced_psf_photometry(
        data_sub, cand.x[idx], cand.y[idx], psf=psf, rms=background.rms, gain=meta.gain,
        mask=bad, radius=radius, annulus=annulus, exclude=discs,
        # the aperture correction's aperture: its ratios need the fluxes' covariance
        covariance_radius=annulus[0],
    )
    clean = np.isfinite(phot.flux) & (phot.n_masked == 0) & ~phot.near_edge
    predicted = predicted_errors(cand.mag[idx], phot, clean, gain=meta.gain)
    uncontaminated = no_detected_neighbour(
        cand.x[idx], cand.y[idx], predicted.flux, sources.x, sources.y, sources.flux, fwhm=fwhm
    )
    usable = (
        clean & uncontaminated & (predicted.inst_err <= cal_cfg.max_mag_err)
        & (phot.flux > 0)
    )
    if usable.sum() < cal_cfg.min_stars:
        raise CalibrationError(
            f"only {int(usable.sum())} calibration stars are bright enough and unmasked "
            f"({idx.size} catalog stars measured, need {cal_cfg.min_stars}); use a deeper "
            "exposure, a catalog with more stars, or lower calibration.max_mag_err"
        )
    apcorr = measure_aperture_correction(
        data_sub, cand.x[idx], cand.y[idx], phot, usable & predicted.bright, predicted.flux,
        psf=psf, rms=background.rms, gain=meta.gain, mask=bad, radius=annulus[0],
        annulus=annulus, shape=need(state.frame, "the frame").shape,
        # catalog stars too: next to a bright star fainter ones go undetected (blended)
        neighbours=_neighbours(sources.x, sources.y, sources.flux, cand.x, cand.y, cand.mag,
                               predicted.zp_guess),
        fwhm=fwhm, exclude=discs,
    )
    return _Measured(phot=phot, predicted=predicted, usable=usable, apcorr=apcorr)


def _neighbours(
    det_x: np.ndarray, det_y: np.ndarray, det_flux: np.ndarray, cat_x: np.ndarray,
    cat_y: np.ndarray, cat_mag: np.ndarray, zp_guess: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections and catalog stars (their fluxes predicted from the magnitudes), ADU."""
    ok = np.isfinite(cat_x) & np.isfinite(cat_y) & np.isfinite(cat_mag)
    return (
        np.concatenate([det_x, cat_x[ok]]),
        np.concatenate([det_y, cat_y[ok]]),
        np.concatenate([det_flux, 10.0 ** (-0.4 * (cat_mag[ok] - zp_guess))]),
    )


def _errors(table: Table, band: str) -> np.ndarray:
    """Catalog magnitude errors, with unknown ones replaced by a conservative 0.03 mag."""
    name = f"{band}_err"
    if name not in table.colnames:
        return np.full(len(table), 0.03)
    err = np.asarray(table[name], dtype=float)
    return np.where(np.isfinite(err) & (err > 0), err, 0.03)
