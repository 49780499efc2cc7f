"""Turn the final pipeline state into the typed, calibrated result."""

from __future__ import annotations

import math

import numpy as np

from skyphot import __version__
from skyphot.core.astrometry import pixel_scale_arcsec
from skyphot.core.limits import limiting_flux
from skyphot.core.masking import MaskBits
from skyphot.core.units import MAG_ERR_FACTOR, adu_to_ujy_scale
from skyphot.pipeline.result import ApertureMeasurement, PhotometryResult, QualityFlag, flag_names
from skyphot.pipeline.state import FrameState, need
from skyphot.pipeline.subtraction_report import subtraction_report

_BLEND_RADIUS_FWHM = 2.0
_FEW_CALIB = 10
_HIGH_SCATTER_MAG = 0.1
_LARGE_ASTROMETRIC_RMS = 0.5


def build_result(state: FrameState, timings: dict[str, float]) -> PhotometryResult:
    """The calibrated measurement of the target, its limit, calibration and diagnostics."""
    config = state.config
    meta = need(state.meta, "the header")
    bands = need(state.bands, "the bands")
    catalog = need(state.catalog, "the reference catalog")
    solution = need(state.astrometry, "the astrometric solution")
    zp_fit = need(state.zero_point, "the zero point")
    target = need(state.target, "the target measurement")
    stars = need(state.calib_stars, "the calibration stars")

    flags = QualityFlag(0)
    if zp_fit.color_term is None:
        color, color_source = None, "none"
    elif config.target_color is not None:
        color, color_source = config.target_color, "given"
    else:
        color, color_source = zp_fit.reference_color, "calibrators_median"
        flags |= QualityFlag.COLOR_ASSUMED
    zp, zp_err = zp_fit.predict(target.x, target.y, color)

    flux_adu = float(target.psf.flux[0])
    fluxerr_adu = float(target.psf.fluxerr[0])
    snr = flux_adu / fluxerr_adu if fluxerr_adu > 0 else 0.0
    detected = snr >= config.nsigma
    limit_flux = limiting_flux(float(target.psf.fluxerr_background[0]), nsigma=config.nsigma)
    limiting_mag = zp - 2.5 * math.log10(limit_flux)
    scale = adu_to_ujy_scale(zp)
    flux = flux_adu * scale
    # The zero-point error, and the scatter single stars show about the zero-point model
    # beyond their errors (the target is one more star measured the same way), scale the
    # flux as a whole: they add in quadrature.
    calib_err = math.hypot(zp_err, zp_fit.intrinsic_scatter)
    fluxerr = math.hypot(fluxerr_adu * scale, abs(flux) * calib_err / MAG_ERR_FACTOR)
    mag = magerr = None
    if detected:
        mag = zp - 2.5 * math.log10(flux_adu)
        magerr = math.hypot(MAG_ERR_FACTOR / snr, calib_err)

    aperture = _aperture(state, zp, calib_err, config.nsigma)
    flags |= _target_flags(state, target.x, target.y, target.fwhm)
    if stars.x.size and not _inside_calibrators(state, target.x, target.y):
        flags |= QualityFlag.EXTRAPOLATED_ZP
    if zp_fit.n_used < _FEW_CALIB:
        flags |= QualityFlag.FEW_CALIB_STARS
    if zp_fit.rms > _HIGH_SCATTER_MAG:
        flags |= QualityFlag.HIGH_CALIB_SCATTER
    if solution.method == "header":
        flags |= QualityFlag.ASTROMETRY_NOT_REFINED
    elif solution.rms_arcsec > _LARGE_ASTROMETRIC_RMS:
        flags |= QualityFlag.LARGE_ASTROMETRIC_RMS
    if meta.assumed:
        flags |= QualityFlag.VALUES_ASSUMED
    scale_arcsec = pixel_scale_arcsec(solution.wcs)

    return PhotometryResult(
        mjd=meta.mjd,
        mjd_source=meta.mjd_source,
        exptime=meta.exptime,
        filter=bands.filter,
        band=bands.band,
        magsys=catalog.magsys,
        detected=bool(detected),
        mag=mag,
        magerr=magerr,
        snr=snr,
        flux=flux,
        fluxerr=fluxerr,
        limiting_mag=limiting_mag,
        limit_nsigma=config.nsigma,
        zero_point=zp,
        zero_point_err=zp_err,
        color_term=zp_fit.color_term,
        color_term_err=zp_fit.color_term_err,
        color_bands=bands.color_bands if zp_fit.color_term is not None else None,
        target_color=color,
        color_source=color_source,
        n_calib=zp_fit.n_used,
        calib_scatter=zp_fit.rms,
        calib_intrinsic_scatter=zp_fit.intrinsic_scatter,
        catalog=catalog.name,
        fwhm_px=target.fwhm,
        fwhm_arcsec=target.fwhm * scale_arcsec,
        pixel_scale_arcsec=scale_arcsec,
        astrometry_method=solution.method,
        astrometry_rms_arcsec=_finite_or(solution.rms_arcsec, -1.0),
        n_astrometry=solution.n_matched,
        ra=config.target.ra,
        dec=config.target.dec,
        x=target.x,
        y=target.y,
        local_background=float(target.psf.local_background[0]),
        aperture=aperture,
        instrument=meta.instrument,
        telescope=meta.telescope,
        image=state.image_path,
        flags=int(flags),
        flag_names=flag_names(int(flags)),
        assumptions=list(meta.assumed),
        timings=timings,
        software_version=__version__,
        config=config,
        subtraction=subtraction_report(state, zp, calib_err, config.nsigma),
    )


def _finite_or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def _aperture(state: FrameState, zp: float, zp_err: float, nsigma: float) -> ApertureMeasurement:
    """Aperture photometry corrected to total flux with the PSF's encircled energy."""
    target = need(state.target, "the target measurement")
    ee = target.encircled_energy
    flux_adu = float(target.aperture.flux[0]) / ee
    fluxerr_adu = float(target.aperture.fluxerr[0]) / ee
    snr = flux_adu / fluxerr_adu if fluxerr_adu > 0 else 0.0
    scale = adu_to_ujy_scale(zp)
    mag = magerr = None
    if snr >= nsigma:
        mag = zp - 2.5 * math.log10(flux_adu)
        magerr = math.hypot(MAG_ERR_FACTOR / snr, zp_err)
    return ApertureMeasurement(
        radius_px=target.aperture_radius,
        mag=mag,
        magerr=magerr,
        flux=flux_adu * scale,
        fluxerr=math.hypot(fluxerr_adu * scale, abs(flux_adu * scale) * zp_err / MAG_ERR_FACTOR),
        snr=snr,
        aperture_correction=-2.5 * math.log10(ee),
    )


def _target_flags(state: FrameState, x: float, y: float, fwhm: float) -> QualityFlag:
    target = need(state.target, "the target measurement")
    mask = need(state.mask, "the mask")
    sources = need(state.sources, "the detections")
    flags = QualityFlag(0)
    if bool(target.psf.near_edge[0]):
        flags |= QualityFlag.TARGET_NEAR_EDGE
    if int(target.psf.n_masked[0]) > 0:
        flags |= QualityFlag.TARGET_MASKED_PIXELS
    ny, nx = mask.shape
    r = max(1, math.ceil(fwhm))
    ix, iy = round(x), round(y)
    core = mask[max(0, iy - r) : min(ny, iy + r + 1), max(0, ix - r) : min(nx, ix + r + 1)]
    if np.any(core & np.uint8(MaskBits.SATURATED)):
        flags |= QualityFlag.TARGET_SATURATED
    dist = np.hypot(sources.x - x, sources.y - y)
    # The target's own detection sits within ~1 px; anything else inside 2 FWHM is a blend.
    if np.any((dist > 1.0) & (dist < _BLEND_RADIUS_FWHM * fwhm)):
        flags |= QualityFlag.BLENDED
    return flags


def _inside_calibrators(state: FrameState, x: float, y: float) -> bool:
    """Whether the target lies within the bounding box of the calibration stars."""
    stars = need(state.calib_stars, "the calibration stars")
    return bool(stars.x.min() <= x <= stars.x.max() and stars.y.min() <= y <= stars.y.max())
