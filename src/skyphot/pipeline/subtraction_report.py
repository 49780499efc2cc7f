"""The ``subtraction`` block of a result: template provenance, quality and the science-frame
measurement kept beside the difference-image one."""

from __future__ import annotations

import math

from skyphot.core.astrometry import pixel_scale_arcsec
from skyphot.core.units import MAG_ERR_FACTOR
from skyphot.pipeline.result import SubtractionReport
from skyphot.pipeline.state import FrameState, need


def subtraction_report(
    state: FrameState, zp: float, calib_err: float, nsigma: float, *, ujy_per_adu: float
) -> SubtractionReport | None:
    """The ``subtraction`` block (None when no template was subtracted); ``ujy_per_adu``
    converts the frame's fluxes to µJy (a Vega band's offset included)."""
    sub = state.subtraction
    if sub is None:
        return None
    t_state = sub.template.state
    t_wcs = need(t_state.astrometry, "the template astrometry").wcs
    science = sub.science_target
    flux_adu = float(science.psf.flux[0])
    err_adu = float(science.psf.fluxerr[0])
    snr = flux_adu / err_adu if err_adu > 0 else 0.0
    scale = ujy_per_adu
    mag = magerr = None
    if snr >= nsigma:
        mag = zp - 2.5 * math.log10(flux_adu)
        magerr = math.hypot(MAG_ERR_FACTOR / snr, calib_err)
    flux = flux_adu * scale
    noise = sub.noise_measured if math.isfinite(sub.noise_measured) else None
    return SubtractionReport(
        method=state.config.subtraction.method,
        template=sub.template.label,
        template_origin=sub.template.origin,
        template_note=sub.template.band_note,
        template_survey=sub.template.survey,
        template_band=sub.template.band,
        band_substituted=sub.template.band_substituted,
        template_zero_point=sub.template_zero_point,
        template_zero_point_err=sub.template_zero_point_err,
        template_fwhm_arcsec=sub.template_fwhm_px * pixel_scale_arcsec(t_wcs),
        template_limiting_mag=sub.template_zero_point - 2.5 * math.log10(sub.template_limit_flux),
        flux_ratio=sub.flux_ratio,
        flux_ratio_err=sub.flux_ratio_err,
        flux_ratio_source=sub.flux_ratio_source,
        cutout_px=int(max(sub.difference.shape)),
        difference_noise_ratio=noise,
        difference_noise_pixels=sub.noise_pixels,
        science_mag=mag,
        science_magerr=magerr,
        science_flux=flux,
        science_fluxerr=math.hypot(err_adu * scale, abs(flux) * calib_err / MAG_ERR_FACTOR),
        timings=sub.timings,
    )
