"""Choosing and weighting calibration stars: the numerical steps before the zero-point fit.

Stars are chosen from the catalog (position, isolation, predicted S/N), never from their
measured flux, so noise cannot select upward fluctuations and bias the zero point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyphot.core.annulus import SourceDiscs
from skyphot.core.aperture_correction import ApertureCorrection, aperture_correction
from skyphot.core.neighbours import pairs_within, pairs_within_one
from skyphot.core.photometry import (
    PSFPhotometry,
    aperture_photometry,
    encircled_energies,
    ring_level,
)
from skyphot.core.psf import PSFModel
from skyphot.core.units import MAG_ERR_FACTOR
from skyphot.errors import CalibrationError

# A neighbour this much fainter (or more) cannot bias a calibration star's PSF flux.
NEIGHBOUR_DELTA_MAG = 4.0
# A detection within this many FWHM and brighter than this fraction of a calibration star
# (and farther than the self-match radius, so not the star itself) disqualifies the star.
_NEIGHBOUR_RADIUS_FWHM = 2.5
_SELF_RADIUS_FWHM = 0.5
_NEIGHBOUR_FLUX_RATIO = 0.005
# Stars brighter than this S/N give the first, unweighted zero-point guess.
GUESS_MIN_SNR = 20.0
# Fewest bright clean stars that measure the aperture correction (else none is applied),
# and the most used. The correction follows the PSF model's error over the field, which is
# quadratic (the FWHM and shape polynomials are), so it needs the ~70 stars a quadratic
# fit asks for (``STARS_PER_TERM`` per term); a plane missed by several times its stated
# error near the edges of frames whose PSF broadens outward.
APCORR_MIN_STARS = 5
APCORR_MAX_STARS = 200
# The correction's wide aperture (3 FWHM) holds the whole flux of neighbours the PSF-fit
# isolation cuts (2.5 FWHM, 0.5 % of the star) let through, and it is meant to be good to
# ~0.1 %: a detection within the aperture radius plus this many FWHM brighter than this
# fraction of the star (or than the star's own PSF-flux error) disqualifies it.
_APCORR_NEIGHBOUR_MARGIN_FWHM = 1.0
_APCORR_NEIGHBOUR_FRACTION = 1e-3


def inside_frame(
    x: np.ndarray, y: np.ndarray, shape: tuple[int, int], margin: float
) -> np.ndarray:
    """True for finite positions at least ``margin`` px inside a frame of ``shape`` (ny, nx)."""
    ny, nx = shape
    return np.asarray(
        np.isfinite(x) & np.isfinite(y) & (x > margin) & (x < nx - 1 - margin)
        & (y > margin) & (y < ny - 1 - margin)
    )


def isolated(x: np.ndarray, y: np.ndarray, mag: np.ndarray, *, radius: float) -> np.ndarray:
    """True for stars with no catalog neighbour within ``radius`` px bright enough to matter."""
    ok = np.isfinite(x) & np.isfinite(y)
    result = np.zeros(x.size, dtype=bool)
    points = np.column_stack([x[ok], y[ok]])
    if points.shape[0] == 0:
        return result
    pairs = pairs_within_one(points, radius)
    alone = np.ones(points.shape[0], dtype=bool)
    m = mag[ok]
    first, second = pairs[:, 0], pairs[:, 1]
    alone[first[m[second] < m[first] + NEIGHBOUR_DELTA_MAG]] = False
    alone[second[m[first] < m[second] + NEIGHBOUR_DELTA_MAG]] = False
    result[np.flatnonzero(ok)] = alone
    return result


def no_detected_neighbour(
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
    star, det, dist = pairs_within(
        np.column_stack([x, y]), np.column_stack([det_x, det_y]), _NEIGHBOUR_RADIUS_FWHM * fwhm
    )
    # a neighbour other than the star's own detection, bright enough to matter
    spoils = (dist > _SELF_RADIUS_FWHM * fwhm) & (
        det_flux[det] > _NEIGHBOUR_FLUX_RATIO * flux[star]
    )
    result[star[spoils]] = False
    return result


@dataclass(frozen=True)
class PredictedErrors:
    """Catalog-predicted fluxes (ADU) and instrumental magnitude errors of the stars, which
    stars were bright enough for the first zero-point guess, and that guess (a catalog
    magnitude ``m`` predicts ``10**(-0.4 (m - zp_guess))`` ADU)."""

    flux: np.ndarray
    inst_err: np.ndarray
    bright: np.ndarray
    zp_guess: float = float("nan")


def predicted_errors(
    cat_mag: np.ndarray, phot: PSFPhotometry, clean: np.ndarray, *, gain: float
) -> PredictedErrors:
    """Fluxes predicted from the catalog through a first zero-point guess, and their errors.

    Errors and the S/N cut then depend on the catalog, not on each star's own noisy
    measurement. Raises ``CalibrationError`` when no clean star has a positive flux.
    """
    snr = phot.flux / phot.fluxerr
    bright = clean & (snr > GUESS_MIN_SNR)
    if bright.sum() < 3:
        bright = clean & (phot.flux > 0)
    if not bright.any():
        raise CalibrationError(
            f"no usable calibration star on the frame ({cat_mag.size} catalog stars measured, "
            "all masked, saturated or undetected)"
        )
    zp_guess = float(np.median(cat_mag[bright] + 2.5 * np.log10(phot.flux[bright])))
    predicted = 10.0 ** (-0.4 * (cat_mag - zp_guess))
    # Source photon noise of a PSF fit is (sum P^3 / (sum P^2)^2) * F / gain, not F / gain;
    # that factor is read off the measured errors of the bright stars.
    photon = (phot.fluxerr[bright] ** 2 - phot.fluxerr_background[bright] ** 2) / phot.flux[
        bright
    ]
    photon_per_adu = float(np.median(photon)) if photon.size else 1.0 / gain
    predicted_err = np.sqrt(phot.fluxerr_background**2 + photon_per_adu * predicted)
    return PredictedErrors(
        flux=predicted, inst_err=MAG_ERR_FACTOR * predicted_err / predicted, bright=bright,
        zp_guess=zp_guess,
    )


def aperture_neighbour_free(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    fluxerr: np.ndarray,
    nb_x: np.ndarray,
    nb_y: np.ndarray,
    nb_flux: np.ndarray,
    *,
    radius: float,
    fwhm: float,
) -> np.ndarray:
    """False for stars (``flux`` and its error ``fluxerr``, ADU) with a neighbour (``nb_*``:
    detections and/or catalog stars, ADU) other than themselves within ``radius`` px plus
    ``_APCORR_NEIGHBOUR_MARGIN_FWHM`` FWHM, brighter than ``_APCORR_NEIGHBOUR_FRACTION`` of
    the star or than ``fluxerr``: it would raise the star's aperture-to-PSF flux ratio, and
    as it never lowers one, such errors do not average out over the stars."""
    result = np.ones(x.size, dtype=bool)
    if nb_x.size == 0 or x.size == 0:
        return result
    star, other, dist = pairs_within(
        np.column_stack([x, y]), np.column_stack([nb_x, nb_y]),
        radius + _APCORR_NEIGHBOUR_MARGIN_FWHM * fwhm,
    )
    limit = np.maximum(_APCORR_NEIGHBOUR_FRACTION * flux, fluxerr)
    spoils = (dist > _SELF_RADIUS_FWHM * fwhm) & (nb_flux[other] > limit[star])
    result[star[spoils]] = False
    return result


def measure_aperture_correction(
    data_sub: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    phot: PSFPhotometry,
    select: np.ndarray,
    brightness: np.ndarray,
    *,
    psf: PSFModel,
    rms: np.ndarray,
    gain: float,
    mask: np.ndarray,
    radius: float,
    annulus: tuple[float, float],
    shape: tuple[int, int],
    neighbours: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    fwhm: float | None = None,
    exclude: SourceDiscs | None = None,
) -> ApertureCorrection:
    """PSF-to-total flux scale from the ``select``-ed stars (PSF photometry ``phot`` at
    ``x, y``) in an aperture of ``radius`` px with the local background of ``annulus``; no
    correction (factor 1) when fewer than ``APCORR_MIN_STARS`` clean stars are available.
    ``brightness`` (e.g. the catalog-predicted flux, never the measured one) picks the
    ``APCORR_MAX_STARS`` brightest, once those with a neighbour in or near the aperture
    (``neighbours``: x, y, flux in ADU; with ``fwhm``) are left out
    (``aperture_neighbour_free``). When ``phot`` was measured with ``covariance_radius``
    equal to ``radius`` (and this ``annulus``), the ratios' errors use the two fluxes'
    covariance; otherwise the PSF fit is taken as the efficient estimator. ``exclude``:
    other sources' discs left out of the annulus, as for ``phot``."""
    idx = np.flatnonzero(select)
    if neighbours is not None and fwhm is not None:
        free = aperture_neighbour_free(
            x[idx], y[idx], brightness[idx], phot.fluxerr[idx], *neighbours,
            radius=radius, fwhm=fwhm,
        )
        idx = idx[free]
    idx = idx[np.argsort(-brightness[idx], kind="stable")[:APCORR_MAX_STARS]]
    if idx.size < APCORR_MIN_STARS:
        return ApertureCorrection.none(radius, shape)
    ap = aperture_photometry(
        data_sub, x[idx], y[idx], radius=radius, rms=rms, gain=gain, mask=mask, annulus=annulus,
        exclude=exclude,
    )
    clean = (ap.n_masked == 0) & ~ap.near_edge & np.isfinite(ap.flux)
    if int(clean.sum()) < APCORR_MIN_STARS:
        return ApertureCorrection.none(radius, shape)
    keep = idx[clean]
    ee = encircled_energies(psf, x[keep], y[keep], radius)
    # What the aperture keeps of a unit star once its own wings in the annulus are subtracted.
    ee = ee - ap.area[clean] * ring_level(psf, x[keep], y[keep], annulus)
    covariance = None
    if phot.pixel_cov is not None:  # measured with covariance_radius = radius
        area = np.zeros(phot.flux.size)
        area[keep] = ap.area[clean]
        covariance = phot.aperture_covariance(area)[keep]
    return aperture_correction(
        phot.flux[keep], phot.fluxerr[keep], ap.flux[clean], ap.fluxerr[clean], ee,
        x=x[keep], y=y[keep], shape=shape, radius=radius, area=ap.area[clean],
        covariance=covariance, min_stars=APCORR_MIN_STARS,
    )
