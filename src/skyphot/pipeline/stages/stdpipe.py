"""STDPipe variants of the detect, astrometry, psf, calibrate and target stages.

``recipe_for`` plugs them into the one recipe when ``engine: stdpipe`` (``--engine stdpipe``):
skyphot's own reading, header, mask, background and catalog stages run as always, and these
hand detection, astrometric refinement, the PSF, the photometric calibration and the target
photometry to STDPipe through :mod:`skyphot.adapters.stdpipe` and its sibling modules.

Every variant fills the same ``FrameState`` fields with the same types as the built-in
stage of the same name, so the runner and ``build_result`` are shared and the two engines
can be compared on the same frames (``benchmarks/compare_engines.py``). Where STDPipe's
products differ from the built-in ones, the result fields mean, with this engine:

- ``flux``/``mag`` (and every zero point): flux inside the PSFEx model's footprint, as
  STDPipe normalises its PSF stamps; the zero point absorbs the constant difference to the
  total flux, so calibrated magnitudes are unaffected, but ``zero_point`` itself is not
  comparable between engines to better than ~0.03 mag;
- ``limiting_mag``: from STDPipe's background-only optimal-extraction error, which leaves out
  the local-background uncertainty (the built-in engine includes it);
- ``aperture``: STDPipe's aperture photometry (no local-background error either), corrected
  with STDPipe's enclosed PSF fraction;
- ``astrometry_method`` "stdpipe-quadhash"; ``astrometry_rms_arcsec``, ``n_astrometry``:
  measured by skyphot on the pairs within ``match_radius_arcsec`` of STDPipe's WCS;
- ``n_calib``, ``calib_scatter``, ``calib_intrinsic_scatter``, ``color_term``: STDPipe's fit
  (stars kept by its robust fit, robust scatter of their residuals, its intrinsic rms).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from skyphot.adapters.stdpipe import (
    assess_solution,
    detect_objects,
    fit_psfex,
    load_stdpipe,
    refine_wcs,
    require_stdpipe,
)
from skyphot.adapters.stdpipe_calibration import StdpipeCalibrationSettings, calibrate
from skyphot.adapters.stdpipe_photometry import ForcedInputs, measure_target
from skyphot.adapters.stdpipe_psf import StdpipePSF
from skyphot.core.astrometry import AstrometricSolution, world_to_pixel
from skyphot.errors import ConfigError, TargetOutsideFrameError
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.state import (
    CalibrationStars,
    FrameState,
    TargetMeasurement,
    frame_pixels,
    need,
)

# Astrometry methods this engine can honour; the others belong to the built-in engine.
SUPPORTED_ASTROMETRY = ("refine", "header")


def check_stdpipe_engine(config: MeasureConfig) -> None:
    """Refuse what the STDPipe engine cannot do, before any work.

    Raises ``ConfigError`` for an astrometry method it does not offer, and
    ``ToolNotFoundError`` when STDPipe (the ``stdpipe`` extra) or the SExtractor / PSFEx
    programs are missing.
    """
    if config.astrometry.method not in SUPPORTED_ASTROMETRY:
        raise ConfigError(
            f"astrometry method {config.astrometry.method!r} is not available with the "
            f"STDPipe engine; use {' or '.join(repr(m) for m in SUPPORTED_ASTROMETRY)}, or "
            "the built-in engine (engine 'skyphot')"
        )
    require_stdpipe()


def _forced_inputs(state: FrameState) -> ForcedInputs:
    """The pixels and noise model the STDPipe photometry shares, from the state."""
    frame = need(state.frame, "the frame")
    meta = need(state.meta, "the header")
    background = need(state.background, "the background")
    data_sub = need(state.data_sub, "the background-subtracted image")
    mask = need(state.mask, "the mask")
    return ForcedInputs(
        data=np.asarray(frame_pixels(frame), dtype=np.float64),
        background=np.asarray(background.level, dtype=np.float64),
        data_sub=np.asarray(data_sub, dtype=np.float64),
        rms=np.asarray(background.rms, dtype=np.float64),
        mask=mask != 0,
        gain=float(meta.gain),
    )


def _stdpipe_psf(state: FrameState) -> StdpipePSF:
    """The PSF of the state, which this engine's PSF stage made."""
    psf = need(state.psf, "the PSF")
    if not isinstance(psf, StdpipePSF):
        raise RuntimeError(
            "pipeline recipe error: the STDPipe photometry stages need the PSF from the "
            f"STDPipe PSF stage, got a {type(psf).__name__}"
        )
    return psf


@dataclass(frozen=True)
class StdpipeDetect:
    """Sources and FWHM from SExtractor, run by STDPipe on the frame with skyphot's mask.

    SExtractor estimates its own background (mesh ``detection.background_box_px``); masked
    pixels are flagged, not removed, as STDPipe does.
    """

    name: str = "detect"

    def run(self, state: FrameState) -> FrameState:
        frame = need(state.frame, "the frame")
        meta = need(state.meta, "the header")
        mask = need(state.mask, "the mask")
        cfg = state.config.detection
        sources, fwhm = detect_objects(
            load_stdpipe(),
            frame_pixels(frame),
            mask != 0,
            gain=meta.gain,
            threshold_sigma=cfg.threshold_sigma,
            min_area_px=cfg.min_area_px,
            edge_px=state.config.masking.edge_px,
            background_box_px=cfg.background_box_px,
            max_sources=cfg.max_sources,
        )
        return replace(state, sources=sources, fwhm=fwhm)


@dataclass(frozen=True)
class StdpipeAstrometry:
    """STDPipe's quad-hash matching and TAN-SIP fit of order ``astrometry.sip_order``."""

    name: str = "astrometry"

    def run(self, state: FrameState) -> FrameState:
        frame = need(state.frame, "the frame")
        header_wcs = need(state.header_wcs, "the header WCS")
        sources = need(state.sources, "the detections")
        catalog = need(state.catalog, "the reference catalog")
        bands = need(state.bands, "the bands")
        cfg = state.config.astrometry
        if cfg.method == "header":
            return replace(state, astrometry=AstrometricSolution.unrefined(header_wcs))
        ra = np.asarray(catalog.table["ra"], dtype=float)
        dec = np.asarray(catalog.table["dec"], dtype=float)
        wcs = refine_wcs(
            load_stdpipe(),
            sources,
            ra,
            dec,
            np.asarray(catalog.table[bands.band], dtype=float),
            header_wcs=header_wcs,
            match_radius_arcsec=cfg.match_radius_arcsec,
            sip_order=cfg.sip_order,
        )
        solution = assess_solution(
            wcs,
            sources,
            ra,
            dec,
            shape=frame.shape,
            match_radius_arcsec=cfg.match_radius_arcsec,
            min_matches=cfg.min_matches,
            max_rms_arcsec=cfg.max_rms_arcsec,
            method="stdpipe-quadhash",
        )
        return replace(state, astrometry=solution)


@dataclass(frozen=True)
class StdpipeFitPSF:
    """A PSFEx model (quadratic over the frame) built by STDPipe's ``run_psfex``."""

    name: str = "psf"

    def run(self, state: FrameState) -> FrameState:
        frame = need(state.frame, "the frame")
        meta = need(state.meta, "the header")
        mask = need(state.mask, "the mask")
        psf = fit_psfex(
            load_stdpipe(),
            frame_pixels(frame),
            mask != 0,
            gain=meta.gain,
            min_area_px=state.config.detection.min_area_px,
        )
        return replace(state, psf=psf)


@dataclass(frozen=True)
class StdpipeCalibrate:
    """Optimal-extraction photometry of every detection, then STDPipe's zero-point fit
    (see ``skyphot.adapters.stdpipe_calibration.calibrate`` for the star selection)."""

    name: str = "calibrate"

    def run(self, state: FrameState) -> FrameState:
        sources = need(state.sources, "the detections")
        catalog = need(state.catalog, "the reference catalog")
        bands = need(state.bands, "the bands")
        solution = need(state.astrometry, "the astrometric solution")
        config = state.config
        cal = config.calibration
        settings = StdpipeCalibrationSettings(
            match_radius_arcsec=config.astrometry.match_radius_arcsec,
            spatial_order=cal.spatial_order,
            clip_sigma=cal.clip_sigma,
            max_mag_err=cal.max_mag_err,
            min_stars=cal.min_stars,
            fit_color_term=cal.fit_color_term,
            psf_radius_fwhm=config.photometry.psf_radius_fwhm,
            annulus_fwhm=config.photometry.annulus_fwhm,
        )
        result = calibrate(
            load_stdpipe(),
            _forced_inputs(state),
            sources,
            solution.wcs,
            catalog.table,
            psf=_stdpipe_psf(state),
            band=bands.band,
            color_bands=bands.color_bands,
            settings=settings,
        )
        stars = CalibrationStars(
            x=result.x,
            y=result.y,
            cat_mag=result.cat_mag,
            cat_err=result.cat_err,
            inst_mag=result.inst_mag,
            inst_err=result.inst_err,
            color=result.color,
            n_candidates=result.n_candidates,
        )
        return replace(state, calib_stars=stars, zero_point=result.zero_point)


@dataclass(frozen=True)
class StdpipeMeasureTarget:
    """Optimal-extraction (PSF) flux and aperture flux of the target, through STDPipe.

    The target is measured at the position the refined WCS gives, never re-centred, exactly
    like the calibration stars' photometry method so the zero point applies to it unchanged.
    """

    name: str = "target"

    def run(self, state: FrameState) -> FrameState:
        frame = need(state.frame, "the frame")
        solution = need(state.astrometry, "the astrometric solution")
        psf = _stdpipe_psf(state)
        cfg = state.config.photometry
        target = state.config.target
        xs, ys = world_to_pixel(solution.wcs, np.array([target.ra]), np.array([target.dec]))
        x, y = float(xs[0]), float(ys[0])
        ny, nx = frame.shape
        if not (
            np.isfinite(x) and np.isfinite(y) and -0.5 <= x < nx - 0.5 and -0.5 <= y < ny - 0.5
        ):
            raise TargetOutsideFrameError(
                f"the target (RA {target.ra:.6f}, Dec {target.dec:.6f}) falls at pixel "
                f"({x:.1f}, {y:.1f}) with the STDPipe astrometry, outside the {nx}x{ny} frame"
            )
        measured = measure_target(
            load_stdpipe(),
            _forced_inputs(state),
            x,
            y,
            psf=psf,
            psf_radius_fwhm=cfg.psf_radius_fwhm,
            aperture_radius_fwhm=cfg.aperture_radius_fwhm,
            annulus_fwhm=cfg.annulus_fwhm,
        )
        measurement = TargetMeasurement(
            x=x,
            y=y,
            psf=measured.psf,
            aperture=measured.aperture,
            aperture_radius=measured.aperture_radius,
            encircled_energy=measured.encircled_energy,
            fwhm=measured.fwhm,
        )
        return replace(state, target=measurement)
