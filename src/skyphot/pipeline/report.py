"""Turn the final pipeline state into the typed, calibrated result.

``build_result`` runs named steps: the target's colour, the zero point there, PSF and
aperture photometry in µJy and magnitudes, the limit, then the quality flags and notes.
S/N, detection, limits and magnitude/flux conversions come from ``skyphot.core.limits``
and ``skyphot.core.units`` (one definition each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from skyphot import __version__
from skyphot.core.astrometry import pixel_scale_arcsec
from skyphot.core.calibration import ZeroPointFit
from skyphot.core.limits import is_detected, limiting_flux, signal_to_noise
from skyphot.core.masking import MaskBits
from skyphot.core.units import MAG_ERR_FACTOR, ab_offset, adu_to_ujy_scale, instrumental_mag
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.result import ApertureMeasurement, PhotometryResult, QualityFlag, flag_names
from skyphot.pipeline.state import Bands, FrameState, TargetMeasurement, need
from skyphot.pipeline.subtraction_report import subtraction_report

_BLEND_RADIUS_FWHM = 2.0
_FEW_CALIB = 10
_HIGH_SCATTER_MAG = 0.1
_LARGE_ASTROMETRIC_RMS = 0.5


@dataclass(frozen=True)
class _TargetColor:
    """The colour applied to the target's zero point and where it came from."""

    value: float | None
    source: str  # 'given', 'calibrators_median' or 'none'


@dataclass(frozen=True)
class _ZeroPointAt:
    """The zero point at the target, its error, and the total calibration error."""

    zp: float
    zp_err: float
    calib_err: float  # zero-point error and intrinsic scatter in quadrature, mag
    ujy_per_adu: float  # from the zero point and the band's system (Vega bands offset to AB)


@dataclass(frozen=True)
class _Photometry:
    """Calibrated PSF-fit photometry of the target."""

    flux: float
    fluxerr: float
    snr: float
    detected: bool
    mag: float | None
    magerr: float | None
    limiting_mag: float


@dataclass(frozen=True)
class _Quality:
    """Quality flags and the notes explaining degradations."""

    flags: QualityFlag
    notes: tuple[str, ...]


def build_result(state: FrameState, timings: dict[str, float]) -> PhotometryResult:
    """The calibrated measurement of the target, its limit, calibration and diagnostics."""
    config = state.config
    meta = need(state.meta, "the header")
    bands = need(state.bands, "the bands")
    catalog = need(state.catalog, "the reference catalog")
    solution = need(state.astrometry, "the astrometric solution")
    zp_fit = need(state.zero_point, "the zero point")
    target = need(state.target, "the target measurement")

    magsys = catalog.system(bands.band)
    color = _target_color(config, zp_fit)
    inst_mag = _target_inst_mag(state)
    at_target = _zero_point_at(
        zp_fit, target.x, target.y, color, ab_offset(bands.band, magsys), inst_mag
    )
    phot = _psf_photometry(state, at_target, color)
    quality = _quality(state, color, inst_mag)
    # The aperture correction's error is common to the calibrators and the target, so it
    # cancels in the target's magnitude but belongs to the zero point of total fluxes.
    apcorr = state.aperture_correction
    apcorr_err = 0.0 if apcorr is None else apcorr.mag_err_at(target.x, target.y)
    scale_arcsec = pixel_scale_arcsec(solution.wcs)

    return PhotometryResult(
        mjd=meta.mjd,
        mjd_source=meta.mjd_source,
        exptime=meta.exptime,
        filter=bands.filter,
        band=bands.band,
        magsys=magsys,
        detected=phot.detected,
        mag=phot.mag,
        magerr=phot.magerr,
        snr=phot.snr,
        flux=phot.flux,
        fluxerr=phot.fluxerr,
        limiting_mag=phot.limiting_mag,
        limit_nsigma=config.nsigma,
        zero_point=at_target.zp,
        zero_point_err=math.hypot(at_target.zp_err, apcorr_err),
        color_term=zp_fit.color_term,
        color_term_err=zp_fit.color_term_err,
        color_bands=bands.color_bands if zp_fit.color_term is not None else None,
        target_color=color.value,
        color_source=color.source,
        n_calib=zp_fit.n_used,
        calib_scatter=zp_fit.rms,
        calib_intrinsic_scatter=zp_fit.intrinsic_scatter,
        calib_error_scale=zp_fit.error_scale,
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
        **_profile_fields(target),
        aperture=_aperture(state, at_target),
        instrument=meta.instrument,
        telescope=meta.telescope,
        image=state.image_path,
        flags=int(quality.flags),
        flag_names=flag_names(int(quality.flags)),
        notes=list(quality.notes),
        assumptions=list(meta.assumed),
        timings=timings,
        software_version=__version__,
        config=config,
        subtraction=subtraction_report(state, at_target.zp, at_target.calib_err, config.nsigma,
                                       ujy_per_adu=at_target.ujy_per_adu),
    )


# --- the steps ----------------------------------------------------------------------------


def _target_color(config: MeasureConfig, zp_fit: ZeroPointFit) -> _TargetColor:
    """The given colour, else the calibrators' median (an assumption, flagged)."""
    if zp_fit.color_term is None:
        return _TargetColor(None, "none")
    if config.target_color is not None:
        return _TargetColor(config.target_color, "given")
    return _TargetColor(zp_fit.reference_color, "calibrators_median")


def _target_inst_mag(state: FrameState) -> float:
    """The target's instrumental magnitude (total PSF-fit flux, as the calibrators'); for a
    flux that is not positive, that of its limiting flux, where a non-detection is judged."""
    target = need(state.target, "the target measurement")
    flux = float(target.psf.flux[0])
    if not (math.isfinite(flux) and flux > 0):
        flux = limiting_flux(float(target.psf.fluxerr_background[0]),
                             nsigma=state.config.nsigma)
    return float(instrumental_mag(np.array([flux]))[0])


def _on_curve(zp_fit: ZeroPointFit, inst_mag: float) -> float:
    """Where the response curve is read for ``inst_mag``: beyond the calibrators' range a
    polynomial runs away (a quadratic on a 1951 plate gave -98 mag one star outside it), so
    it is held at the nearest end of the range (flagged EXTRAPOLATED_RESPONSE)."""
    if zp_fit.response_order == 0:
        return inst_mag
    lo, hi = zp_fit.response_range
    return min(max(inst_mag, lo), hi)


def _zero_point_at(
    zp_fit: ZeroPointFit, x: float, y: float, color: _TargetColor, offset_ab: float,
    inst_mag: float,
) -> _ZeroPointAt:
    # with a response term the zero point is read off the curve at the target's inst mag
    zp, zp_err = zp_fit.predict(x, y, color.value, inst_mag=_on_curve(zp_fit, inst_mag))
    # The zero-point error, and the scatter single stars show about the zero-point model
    # beyond their errors (the target is one more star measured the same way), scale the
    # flux as a whole: they add in quadrature.
    calib_err = math.hypot(zp_err, zp_fit.intrinsic_scatter)
    return _ZeroPointAt(zp, zp_err, calib_err, adu_to_ujy_scale(zp, offset_ab))


def _calibrated(
    flux_adu: float, fluxerr_adu: float, at: _ZeroPointAt, calib_err: float, nsigma: float
) -> tuple[float, float, float, bool, float | None, float | None]:
    """(flux µJy, its error, S/N, detected, mag, magerr) of an ADU flux and its error."""
    snr = signal_to_noise(flux_adu, fluxerr_adu)
    snr = snr if math.isfinite(snr) else 0.0
    detected = is_detected(flux_adu, fluxerr_adu, nsigma=nsigma)
    flux = flux_adu * at.ujy_per_adu
    fluxerr = math.hypot(fluxerr_adu * at.ujy_per_adu, abs(flux) * calib_err / MAG_ERR_FACTOR)
    mag = magerr = None
    if detected:
        mag = float(instrumental_mag(np.array([flux_adu]))[0]) + at.zp
        magerr = math.hypot(MAG_ERR_FACTOR / snr, calib_err)
    return flux, fluxerr, snr, detected, mag, magerr


def _psf_photometry(state: FrameState, at: _ZeroPointAt, color: _TargetColor) -> _Photometry:
    target = need(state.target, "the target measurement")
    zp_fit = need(state.zero_point, "the zero point")
    nsigma = state.config.nsigma
    # The zero-point fit's error scale is not applied to the target's own error: it scales
    # the calibrators' catalog-predicted errors, while the target's is measured, and honest
    # on simulated frames (applying it widened faint targets' magerr by 4 %, pull 0.78).
    flux, fluxerr, snr, detected, mag, magerr = _calibrated(
        float(target.psf.flux[0]), float(target.psf.fluxerr[0]), at, at.calib_err, nsigma
    )
    limit_adu = limiting_flux(float(target.psf.fluxerr_background[0]), nsigma=nsigma)
    limit_inst = float(instrumental_mag(np.array([limit_adu]))[0])
    # on a non-linear response the limit has its own zero point, on the curve at its flux
    limit_zp = at.zp if zp_fit.response_order == 0 else zp_fit.predict(
        target.x, target.y, color.value, inst_mag=_on_curve(zp_fit, limit_inst))[0]
    limiting_mag = limit_inst + limit_zp
    return _Photometry(flux, fluxerr, snr, detected, mag, magerr, limiting_mag)


def _aperture(state: FrameState, at: _ZeroPointAt) -> ApertureMeasurement:
    """Aperture photometry corrected to total flux with the PSF's encircled energy."""
    target = need(state.target, "the target measurement")
    ee = target.encircled_energy
    flux, fluxerr, snr, _, mag, magerr = _calibrated(
        float(target.aperture.flux[0]) / ee, float(target.aperture.fluxerr[0]) / ee, at,
        at.zp_err, state.config.nsigma,
    )
    return ApertureMeasurement(
        radius_px=target.aperture_radius,
        mag=mag,
        magerr=magerr,
        flux=flux,
        fluxerr=fluxerr,
        snr=snr,
        aperture_correction=-2.5 * math.log10(ee),
    )


def _quality(state: FrameState, color: _TargetColor, inst_mag: float) -> _Quality:
    """Every caveat as a flag bit; every degradation also as a note saying what happened."""
    target = need(state.target, "the target measurement")
    flags = _target_flags(state, target.x, target.y, target.fwhm)
    flags |= _calibration_flags(state)
    flags |= _astrometry_flags(state)
    if color.source == "calibrators_median":
        flags |= QualityFlag.COLOR_ASSUMED
    if need(state.meta, "the header").assumed:
        flags |= QualityFlag.VALUES_ASSUMED
    degraded, notes = _degradations(state)
    response, response_notes = _response_flags(state, inst_mag)
    deblended, deblend_notes = _neighbour_flags(target)
    profile, profile_notes = _profile_flags(target)
    hits = target.cosmic_ray_pixels
    hit_notes = (f"{hits} cosmic-ray pixel{'s' if hits > 1 else ''} in the target's fit circle "
                 "masked before it was measured",) if hits else ()
    return _Quality(
        flags | degraded | response | deblended | profile,
        notes + response_notes + deblend_notes + profile_notes + hit_notes,
    )


def _profile_flags(target: TargetMeasurement) -> tuple[QualityFlag, tuple[str, ...]]:
    """PROFILE_MISMATCH with a note, when the target's PSF fit is far worse than the
    stars' of its S/N."""
    check = target.profile
    if check is None or not check.mismatched:
        return QualityFlag(0), ()
    return QualityFlag.PROFILE_MISMATCH, (
        f"the target's light does not have the PSF's shape: its fit's chi2/dof is "
        f"{check.chi2:.2f} where the frame's stars give {check.expected:.2f} ± "
        f"{check.spread:.2f} at its S/N ({check.excess_sigma:.0f} sigma above); a companion "
        "within ~0.75 FWHM, a compact host or a cosmic-ray hit may have added its light to "
        "the flux",
    )


def _neighbour_flags(target: TargetMeasurement) -> tuple[QualityFlag, tuple[str, ...]]:
    """NEIGHBOURS_SUBTRACTED with a note, when neighbours' light was taken off the target."""
    n = target.neighbours_subtracted
    if n == 0:
        return QualityFlag(0), ()
    err = float(target.psf.fluxerr[0])
    worth = target.neighbour_flux / err if err > 0 else float("nan")
    close = target.close_neighbours
    flags = QualityFlag.NEIGHBOURS_SUBTRACTED
    if close:
        # a star within 2 FWHM, found in the residual when it was not detected apart
        flags |= QualityFlag.BLENDED
    within = (f" ({close} within 2 FWHM, fitted together with the target)" if close else "")
    return flags, (
        f"{n} neighbouring star{'s' if n > 1 else ''}{within} fitted and subtracted before the "
        f"target was measured: {'their' if n > 1 else 'its'} light was worth "
        f"{target.neighbour_flux:.0f} ADU ({worth:.1f} sigma) in the target's PSF fit; the "
        f"subtraction adds {target.neighbour_error:.0f} ADU to the flux error",
    )


def _response_flags(state: FrameState, inst_mag: float) -> tuple[QualityFlag, tuple[str, ...]]:
    """RESPONSE_FITTED (and EXTRAPOLATED_RESPONSE) with a note, when the zero point has a
    term in the instrumental magnitude."""
    zp_fit = need(state.zero_point, "the zero point")
    if zp_fit.response_order == 0:
        return QualityFlag(0), ()
    lo, hi = zp_fit.response_range
    flags = QualityFlag.RESPONSE_FITTED
    notes = [
        f"non-linear response: zero point of order {zp_fit.response_order} in the "
        f"instrumental magnitude, taken at the target's {inst_mag:.2f} (calibrators "
        f"{lo:.2f} to {hi:.2f})"
    ]
    if zp_fit.response_extrapolated(inst_mag):
        flags |= QualityFlag.EXTRAPOLATED_RESPONSE
        notes.append(
            f"response extrapolated: the target's instrumental magnitude {inst_mag:.2f} is "
            f"outside the calibrators' {lo:.2f} to {hi:.2f}; the curve is held at its value "
            f"at {_on_curve(zp_fit, inst_mag):.2f}"
        )
    return flags, tuple(notes)


def _degradations(state: FrameState) -> tuple[QualityFlag, tuple[str, ...]]:
    """Work-arounds the analysis made: terms dropped from the zero-point model, a raised
    detection threshold, and the frame-level notes of earlier stages."""
    zp_fit = need(state.zero_point, "the zero point")
    bands: Bands = need(state.bands, "the bands")
    sources = need(state.sources, "the detections")
    cal_cfg = state.config.calibration
    flags = QualityFlag(0)
    notes: list[str] = []
    if bands.color_bands is not None and cal_cfg.fit_color_term and zp_fit.color_term is None:
        flags |= QualityFlag.COLOR_TERM_DROPPED
        notes.extend(n for n in zp_fit.notes if n.startswith("colour term"))
        if not any(n.startswith("colour term") for n in zp_fit.notes):
            notes.append("colour term not fitted: the calibration stars carry no colour")
    if zp_fit.spatial_order < cal_cfg.spatial_order:
        flags |= QualityFlag.SPATIAL_ORDER_LOWERED
    # the fit's own notes (spatial order lowered, ...) that the checks above did not add
    notes.extend(n for n in zp_fit.notes if n not in notes)
    requested = state.config.detection.threshold_sigma
    used = sources.threshold_sigma
    if math.isfinite(used) and used > requested * (1 + 1e-9):
        flags |= QualityFlag.DETECTION_THRESHOLD_RAISED
        notes.append(
            f"detection threshold raised from {requested:g} to {used:.2f} sigma: the frame "
            "is too crowded for the source extractor's buffers, so faint stars are missing"
        )
    if state.notes:
        flags |= QualityFlag.FRAME_DEGRADED
        notes.extend(state.notes)
    return flags, tuple(notes)


def _calibration_flags(state: FrameState) -> QualityFlag:
    zp_fit = need(state.zero_point, "the zero point")
    stars = need(state.calib_stars, "the calibration stars")
    target = need(state.target, "the target measurement")
    flags = QualityFlag(0)
    if stars.x.size and not _inside_calibrators(state, target.x, target.y):
        flags |= QualityFlag.EXTRAPOLATED_ZP
    if zp_fit.n_used < _FEW_CALIB:
        flags |= QualityFlag.FEW_CALIB_STARS
    if zp_fit.rms > _HIGH_SCATTER_MAG:
        flags |= QualityFlag.HIGH_CALIB_SCATTER
    return flags


def _astrometry_flags(state: FrameState) -> QualityFlag:
    solution = need(state.astrometry, "the astrometric solution")
    if solution.method == "header":
        return QualityFlag.ASTROMETRY_NOT_REFINED
    if solution.rms_arcsec > _LARGE_ASTROMETRIC_RMS:
        return QualityFlag.LARGE_ASTROMETRIC_RMS
    return QualityFlag(0)


def _profile_fields(target: TargetMeasurement) -> dict[str, float | None]:
    """The target's PSF-fit chi-square and the stars' at its S/N (None where unknown)."""
    check = target.profile
    if check is None or not math.isfinite(check.chi2):
        return {"psf_chi2": None, "psf_chi2_expected": None}
    return {"psf_chi2": check.chi2,
            "psf_chi2_expected": check.expected if check.tested else None}


def _finite_or(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


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
