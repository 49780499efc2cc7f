"""Forced photometry of the target at its (refined) position."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from skyphot.core.blend import fit_close_neighbours
from skyphot.core.deblend import (
    CLOSE_NEIGHBOUR_FWHM,
    ForcedFit,
    NeighbourLight,
    point_sources,
    subtract_neighbours,
)
from skyphot.core.masking import CR_MIN_FWHM, cosmic_rays_near
from skyphot.core.photometry import (
    PSFPhotometry,
    aperture_photometry,
    encircled_energy,
    ring_level,
)
from skyphot.core.profile import ProfileCheck, check_profile
from skyphot.errors import PhotometryError
from skyphot.io.header import target_pixel
from skyphot.pipeline.stages.image import mask_hits, source_discs_of
from skyphot.pipeline.state import FrameState, TargetMeasurement, need


@dataclass(frozen=True)
class MeasureTarget:
    """PSF-fit flux (primary) and aperture flux (alongside) at the target, local background.

    The PSF-fit flux is scaled by the calibration's aperture correction (when one was
    measured), so it is a total flux like the calibration stars' fluxes.
    """

    name: str = "target"

    def run(self, state: FrameState) -> FrameState:
        frame = need(state.frame, "the frame")
        meta = need(state.meta, "the header")
        data_sub = need(state.data_sub, "the background-subtracted image")
        background = need(state.background, "the background")
        mask = need(state.mask, "the mask")
        solution = need(state.astrometry, "the astrometric solution")
        psf = need(state.psf, "the PSF")
        cfg = state.config.photometry
        target = state.config.target
        x, y = target_pixel(solution.wcs, target.ra, target.dec, shape=frame.shape)
        fwhm = psf.fwhm_at(x, y)
        annulus = (cfg.annulus_fwhm[0] * fwhm, cfg.annulus_fwhm[1] * fwhm)
        radius = cfg.psf_radius_fwhm * fwhm
        ap_radius = cfg.aperture_radius_fwhm * fwhm
        # A hit on the target is its flux's worst enemy and, unlike one on a calibration
        # star, no robust fit leaves it out: masked here even when the frame is not searched.
        hits = _cosmic_rays(state, data_sub, x, y, radius=max(radius, ap_radius), fwhm=fwhm)
        if hits[0].size:
            state = mask_hits(state, hits)
            mask = need(state.mask, "the mask")
            data_sub = need(state.data_sub, "the background-subtracted image")
        bad = mask != 0
        # other sources' light is left out of the annulus, as for the calibration stars
        discs = source_discs_of(state)
        # Detected neighbours whose wings reach the fit circle are fitted and subtracted
        # first (a bright star 3 FWHM away made an undetectable target a 6-sigma source).
        sources = need(state.sources, "the detections")
        stellar = point_sources(sources, mask, psf_peak=float(psf.render(x, y, 5)[0].max()))
        # The target's forced fit, which its neighbours are measured like.
        fit = ForcedFit(psf=psf, rms=background.rms, gain=meta.gain, mask=bad, radius=radius,
                        annulus=annulus, discs=discs)
        far = subtract_neighbours(data_sub, x, y, fit=fit, stellar=stellar)
        # Stars within 2 FWHM share the target's fit circle: fitted with it, not before it.
        close = fit_close_neighbours(far.image, x, y, fit=fit, stellar=stellar)
        neighbours = _combined(far, close)
        image = neighbours.image
        phot = fit.photometry(image, np.array([x]), np.array([y]))
        if neighbours.count:
            # the subtraction's own error (the PSF model's wings) is not the target's noise
            # but limits its flux like it: both errors take it
            phot = replace(
                phot, fluxerr=np.hypot(phot.fluxerr, neighbours.error),
                fluxerr_background=np.hypot(phot.fluxerr_background, neighbours.error),
            )
        if not np.isfinite(phot.flux[0]):
            raise PhotometryError(
                f"the target at pixel ({x:.1f}, {y:.1f}) cannot be measured: every pixel around "
                "it is masked (saturated, bad column or off the frame)"
            )
        profile = _profile(state, phot, radius)
        if state.aperture_correction is not None:
            # The zero point was fitted on total fluxes: put the target on the same scale.
            k = float(state.aperture_correction.factor_at(np.array([x]), np.array([y]))[0])
            phot = replace(
                phot, flux=phot.flux * k, fluxerr=phot.fluxerr * k,
                fluxerr_background=phot.fluxerr_background * k,
            )
        aperture = aperture_photometry(
            image,
            np.array([x]),
            np.array([y]),
            radius=ap_radius,
            rms=background.rms,
            gain=meta.gain,
            mask=bad,
            annulus=annulus,
            exclude=discs,
        )
        measurement = TargetMeasurement(
            x=x,
            y=y,
            psf=phot,
            aperture=aperture,
            aperture_radius=ap_radius,
            # Less the target's own wing light that the annulus level takes out of the aperture.
            encircled_energy=encircled_energy(psf, x, y, ap_radius)
            - float(aperture.area[0]) * float(ring_level(psf, np.array([x]), np.array([y]),
                                                         annulus)[0]),
            fwhm=fwhm,
            neighbours_subtracted=neighbours.count,
            close_neighbours=int(np.count_nonzero(
                np.hypot(close.x - x, close.y - y) < CLOSE_NEIGHBOUR_FWHM * fwhm)),
            neighbour_flux=neighbours.flux_at_target,
            neighbour_error=neighbours.error,
            profile=profile,
            cosmic_ray_pixels=int(hits[0].size),
        )
        return replace(state, target=measurement)


def _cosmic_rays(
    state: FrameState, data_sub: np.ndarray, x: float, y: float, *, radius: float, fwhm: float
) -> tuple[np.ndarray, np.ndarray]:
    """The hits within ``radius`` of the target (rows, columns), unless the configuration
    or an undersampled PSF rules the search out."""
    if not state.config.masking.target_cosmic_rays or fwhm < CR_MIN_FWHM:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    rms = need(state.background, "the background").rms
    return cosmic_rays_near(data_sub, x, y, radius=radius, rms=rms, fwhm=fwhm)


def _profile(state: FrameState, phot: PSFPhotometry, radius: float) -> ProfileCheck | None:
    """The target's PSF-fit chi-square against the calibration stars' (None when their
    fits' chi-squares are not known)."""
    stars = need(state.calib_stars, "the calibration stars")
    if stars.fit_chi2 is None or stars.snr is None:
        return None
    return check_profile(
        float(phot.chi2[0]), float(phot.flux[0] / phot.fluxerr[0]),
        dof=np.pi * radius**2 - 1.0, star_chi2=stars.fit_chi2, star_snr=stars.snr,
    )


def _combined(far: NeighbourLight, close: NeighbourLight) -> NeighbourLight:
    """Both subtractions as one: the last image, every neighbour, the light at the target
    summed and the errors in quadrature."""
    if not close.count:
        return far
    return NeighbourLight(
        image=close.image,
        x=np.concatenate([far.x, close.x]),
        y=np.concatenate([far.y, close.y]),
        flux=np.concatenate([far.flux, close.flux]),
        flux_at_target=far.flux_at_target + close.flux_at_target,
        error=float(np.hypot(far.error, close.error)),
    )
