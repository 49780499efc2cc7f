"""The typed result of one measurement. Its JSON form is the CLI's and the API's output."""

from __future__ import annotations

from enum import IntFlag

from pydantic import BaseModel, ConfigDict, Field

from skyphot.pipeline.config import MeasureConfig


class QualityFlag(IntFlag):
    """Bit flags describing caveats of a measurement (0 = none)."""

    TARGET_NEAR_EDGE = 1  # PSF-fit region touches the frame edge
    TARGET_MASKED_PIXELS = 2  # some pixels of the fit region are masked
    TARGET_SATURATED = 4  # the target itself is saturated
    BLENDED = 8  # a detected neighbour lies within 2 FWHM, or a star was fitted there
    COLOR_ASSUMED = 16  # colour term applied with the calibrators' median colour
    FEW_CALIB_STARS = 32  # fewer than 10 calibration stars
    HIGH_CALIB_SCATTER = 64  # calibration residual scatter above 0.1 mag
    ASTROMETRY_NOT_REFINED = 128  # the header WCS was used as is
    LARGE_ASTROMETRIC_RMS = 256  # astrometric rms above 0.5 arcsec
    VALUES_ASSUMED = 512  # a header value was assumed, converted or disputed (see assumptions)
    EXTRAPOLATED_ZP = 1024  # target outside the area covered by calibration stars
    COLOR_TERM_DROPPED = 2048  # a colour term was asked for but not fitted (see notes)
    SPATIAL_ORDER_LOWERED = 4096  # zero-point polynomial order lowered (see notes)
    DETECTION_THRESHOLD_RAISED = 8192  # crowded frame: detection threshold raised (notes)
    FRAME_DEGRADED = 16384  # a frame-level problem was worked around (see notes)
    RESPONSE_FITTED = 32768  # zero point taken on a non-linear response curve (see notes)
    EXTRAPOLATED_RESPONSE = 65536  # target's inst mag outside the calibrators' range
    NEIGHBOURS_SUBTRACTED = 131072  # neighbouring stars' light subtracted at the target (notes)
    PROFILE_MISMATCH = 262144  # the target's light is not the PSF's shape (see notes)


def flag_names(flags: int) -> list[str]:
    """The names of the bits set in ``flags``."""
    return [f.name for f in QualityFlag if f & flags and f.name is not None]


class ApertureMeasurement(BaseModel):
    """Aperture photometry of the target, reported alongside the PSF fit."""

    model_config = ConfigDict(frozen=True)

    radius_px: float = Field(description="Aperture radius, pixels.")
    mag: float | None = Field(description="Calibrated magnitude (None if not detected).")
    magerr: float | None = Field(description="Its 1-sigma error.")
    flux: float = Field(description="Flux, µJy (Vega magnitudes converted with the band's "
                        "Vega-AB offset).")
    fluxerr: float = Field(description="Flux error, µJy.")
    snr: float = Field(description="Signal-to-noise ratio.")
    aperture_correction: float = Field(
        description="Magnitude correction from this aperture to total flux (from the PSF)."
    )


class SubtractionReport(BaseModel):
    """How the template was subtracted, and the science-frame measurement kept alongside.

    Present only when subtraction ran; the result's ``mag``/``flux`` are then the
    difference-image measurement (negative fluxes are reported as they are).
    """

    model_config = ConfigDict(frozen=True)

    method: str = Field(description="Subtraction algorithm ('zogy', 'sfft' or 'hotpants').")
    template: str = Field(description="Template file name, or survey + band + cutout.")
    template_origin: str = Field(description="'file' (uploaded or given) or 'survey'.")
    template_note: str | None = Field(
        description="Band assumption or substitution, and surveys skipped on the way, in words."
    )
    template_survey: str | None = Field(
        None, description="Survey of an automatic template ('ps1', 'legacy', 'des', "
        "'skymapper', or the name it was imported under); None for a template file."
    )
    template_band: str | None = Field(
        None, description="Band of the template (the frame's band unless substituted)."
    )
    band_substituted: bool = Field(
        False, description="True when no survey served the frame's band there and the "
        "nearest band was used (template_note says which)."
    )
    template_zero_point: float = Field(
        description="Template zero point at the target, mag (template ADU, same catalog)."
    )
    template_zero_point_err: float = Field(description="Its 1-sigma error, mag.")
    template_fwhm_arcsec: float = Field(description="Template PSF FWHM at the target, arcsec.")
    template_limiting_mag: float = Field(
        description="Template 5-sigma PSF-fit point-source depth at the target, mag."
    )
    flux_ratio: float = Field(description="Template counts per science count at the target.")
    flux_ratio_err: float = Field(
        description="Its 1-sigma error; times the static light under the target it is "
        "included in fluxerr."
    )
    flux_ratio_source: str = Field(
        description="How the ratio was found: 'N stars on both frames' (nearest the target) "
        "or 'zero points'."
    )
    cutout_px: int = Field(
        description="Side of the subtracted region around the target (longer side of the "
        "frame when the whole frame was subtracted), px."
    )
    difference_noise_ratio: float | None = Field(
        description="Robust std of the difference image over its predicted noise near the "
        "target (1 = as expected; well above 1 = subtraction residuals). None: too few pixels."
    )
    difference_noise_pixels: int = Field(description="Pixels the noise ratio was measured on.")
    science_mag: float | None = Field(
        description="PSF-fit magnitude on the science frame alone (host light included); "
        "None if not detected there."
    )
    science_magerr: float | None = Field(description="Its 1-sigma error.")
    science_flux: float = Field(description="Science-frame flux, µJy (AB).")
    science_fluxerr: float = Field(description="Its 1-sigma error, µJy.")
    timings: dict[str, float] = Field(
        description="Seconds for align, match, subtract, photometry and their total."
    )


class PhotometryResult(BaseModel):
    """Calibrated photometry of the target on one frame, with everything needed to trust it."""

    model_config = ConfigDict(frozen=True)

    # --- the answer
    mjd: float = Field(description="Mid-exposure time, MJD (UTC).")
    mjd_source: str = Field(description="How the time was derived.")
    exptime: float = Field(description="Exposure time, seconds.")
    filter: str = Field(description="Frame filter as given or read from the header.")
    band: str = Field(description="Catalog band the magnitudes are calibrated to.")
    magsys: str = Field(
        description="Magnitude system of the band in the reference catalog: AB or Vega."
    )
    detected: bool = Field(description="True when snr >= limit_nsigma.")
    mag: float | None = Field(description="Calibrated PSF-fit magnitude; None if not detected.")
    magerr: float | None = Field(
        description="1-sigma error of mag: photometric error, zero-point error at the target "
        "and the calibration stars' intrinsic scatter, in quadrature; None if not detected."
    )
    snr: float = Field(description="Signal-to-noise ratio of the PSF-fit flux.")
    flux: float = Field(
        description="Calibrated flux, µJy (23.9 AB mag = 1 µJy; a Vega band is converted with "
        "its Vega-AB offset); may be negative."
    )
    fluxerr: float = Field(
        description="1-sigma flux error, µJy, including the zero-point error and intrinsic scatter."
    )
    limiting_mag: float = Field(
        description="limit_nsigma-sigma point-source depth at the target position: from "
        "background and read noise only (target photon noise excluded), PSF-fit method."
    )
    limit_nsigma: float = Field(description="Sigma level of limiting_mag and of the detection.")
    # --- calibration
    zero_point: float = Field(
        description="Zero point at the target (position and colour): mag = -2.5 log10(ADU) + ZP."
    )
    zero_point_err: float = Field(description="1-sigma error of zero_point at the target.")
    color_term: float | None = Field(description="Fitted colour-term coefficient (None: unfit).")
    color_term_err: float | None = Field(description="Its 1-sigma error.")
    color_bands: tuple[str, str] | None = Field(description="Colour used: (c1, c2) for c1-c2.")
    target_color: float | None = Field(description="Colour applied to the target.")
    color_source: str = Field(
        description="'given', 'calibrators_median' (assumed, flagged) or 'none'."
    )
    n_calib: int = Field(description="Calibration stars used in the final fit.")
    calib_scatter: float = Field(description="Robust rms of calibration residuals, mag.")
    calib_intrinsic_scatter: float = Field(description="Fitted extra scatter per star, mag.")
    calib_error_scale: float = Field(
        1.0,
        description="Fitted factor (>= 1) on the calibration stars' stated variances; each "
        "star's variance in the zero-point fit is this times its stated one plus the "
        "intrinsic scatter squared (REML).",
    )
    catalog: str = Field(description="Reference catalog used.")
    # --- image quality and astrometry
    fwhm_px: float = Field(description="PSF FWHM at the target, pixels.")
    fwhm_arcsec: float = Field(description="PSF FWHM at the target, arcsec.")
    pixel_scale_arcsec: float = Field(description="Pixel scale, arcsec per pixel.")
    astrometry_method: str = Field(description="How the WCS was obtained.")
    astrometry_rms_arcsec: float = Field(description="Astrometric residual rms, arcsec.")
    n_astrometry: int = Field(description="Stars in the astrometric fit.")
    # --- target
    ra: float = Field(description="Target right ascension, degrees.")
    dec: float = Field(description="Target declination, degrees.")
    x: float = Field(description="Target x pixel (0-based).")
    y: float = Field(description="Target y pixel (0-based).")
    local_background: float = Field(description="Local background under the target, ADU.")
    psf_chi2: float | None = Field(
        None, description="Reduced chi-square of the target's PSF fit on the science frame; "
        "None when the profile was not tested (a difference image, the STDPipe engine)."
    )
    psf_chi2_expected: float | None = Field(
        None, description="The reduced chi-square the calibration stars give at the target's "
        "S/N (1 + median(q) snr^2 with q = (chi2 - 1) / snr^2 over those with S/N >= 20); "
        "PROFILE_MISMATCH is set when psf_chi2 lies more than 5 spreads above it. None when "
        "fewer than 8 such stars tell it."
    )
    aperture: ApertureMeasurement = Field(description="Aperture photometry of the target.")
    # --- provenance
    instrument: str | None = Field(description="Instrument.")
    telescope: str | None = Field(description="Telescope.")
    image: str = Field(description="Image file measured.")
    flags: int = Field(description="Quality bit flags (see QualityFlag).")
    flag_names: list[str] = Field(description="Names of the set quality flags.")
    notes: list[str] = Field(
        default_factory=list,
        description="Degradations the analysis worked around, one line each (colour term "
        "dropped, spatial order lowered, detection threshold raised, frame problems); each "
        "also sets a flag bit.",
    )
    assumptions: list[str] = Field(description="Values that were assumed, in words.")
    timings: dict[str, float] = Field(description="Seconds per stage, plus 'total'.")
    software_version: str = Field(description="skyphot version.")
    config: MeasureConfig = Field(description="The full configuration used.")
    subtraction: SubtractionReport | None = Field(
        None, description="Template subtraction details; None when no template was subtracted."
    )
