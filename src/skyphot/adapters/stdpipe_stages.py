"""STDPipe-backed detection, astrometric refinement and PSF stages.

Each stage returns the same products as its built-in counterpart: a ``SourceList`` and the
FWHM, an ``AstrometricSolution``, a ``PSFModel``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from skyphot.adapters._process import find_tool
from skyphot.adapters.sextractor import (
    FLAG_SATURATED,
    SEP_APER_HASMASKED,
    SEP_APER_TRUNC,
    SEP_OBJ_DOVERFLOW,
    SEP_OBJ_MERGED,
    SEP_OBJ_TRUNC,
)
from skyphot.adapters.stdpipe import load_stdpipe, stdpipe_workspace
from skyphot.adapters.stdpipe_psf import StdpipePSF
from skyphot.core.astrometry import AstrometricSolution
from skyphot.core.detection import SourceList
from skyphot.core.matching import match_nearest
from skyphot.core.wcs_utils import celestial_wcs, pixel_scale_arcsec, pixel_to_world, world_to_pixel
from skyphot.errors import AstrometryError, DetectionError, ExternalToolError
from skyphot.pipeline.state import FrameState, need

# STDPipe's own default aperture radius (px) for the detection-stage flux, which only ranks
# sources by brightness for the astrometric matcher.
_DETECT_APERTURE_PX = 3.0
# Gaussian smoothing sigma (px) of the detection image: a matched filter for typical seeing
# (FWHM 2-5 px) that keeps the per-pixel threshold meaning what the configuration says.
_DETECT_SMOOTHING_PX = 1.0
# STDPipe drops detections whose aperture S/N is below this (its default).
_DETECT_MIN_SNR = 3.0
# Stars brighter than this aperture S/N, unflagged, give the FWHM estimate.
_FWHM_MIN_SNR = 20.0
# Spatial degree of the PSFEx model. Quadratic, as STDPipe's examples use: with a linear
# model the PSF's growth towards the corners (optical field curvature) biases corner fluxes
# by several per cent relative to the centre, which no zero-point polynomial absorbs.
_PSF_DEGREE = 2

# SExtractor FLAGS bits (plus STDPipe's 0x100: masked pixels in the footprint) -> SEP bits.
_FLAG_MAP = {
    0x01: SEP_APER_HASMASKED,
    0x02: SEP_OBJ_MERGED,
    0x04: FLAG_SATURATED,
    0x08: SEP_OBJ_TRUNC,
    0x10: SEP_APER_TRUNC,
    0x20: SEP_OBJ_TRUNC,
    0x40: SEP_OBJ_DOVERFLOW,
    0x80: SEP_OBJ_DOVERFLOW,
    0x100: SEP_APER_HASMASKED,
}

_NOTHING_SHOWN = (
    "STDPipe discards the program's output, so run it by hand on this frame to see why, or "
    "use the built-in engine (engine 'skyphot')"
)


def sep_flags(flags: np.ndarray) -> np.ndarray:
    """SExtractor/STDPipe detection flags translated to skyphot's SEP-style bits."""
    raw = np.asarray(flags, dtype=np.int64)
    out = np.zeros(raw.shape, dtype=np.int64)
    for sex_bit, sep_bit in _FLAG_MAP.items():
        out[(raw & sex_bit) != 0] |= sep_bit
    return out


def source_list_from_stdpipe(obj: Table) -> SourceList:
    """A ``SourceList`` from STDPipe's detection table (already 0-based, sorted by flux)."""
    return SourceList(
        x=np.asarray(obj["x"], dtype=np.float64),
        y=np.asarray(obj["y"], dtype=np.float64),
        flux=np.asarray(obj["flux"], dtype=np.float64),
        fluxerr=np.asarray(obj["fluxerr"], dtype=np.float64),
        a=np.asarray(obj["a"], dtype=np.float64),
        b=np.asarray(obj["b"], dtype=np.float64),
        # SExtractor's THETA_IMAGE is in degrees, counter-clockwise from +x; SEP's in radians.
        theta=np.deg2rad(np.asarray(obj["theta"], dtype=np.float64)),
        flag=sep_flags(np.asarray(obj["flags"])),
        peak=np.asarray(obj["FLUX_MAX"], dtype=np.float64),
        npix=np.asarray(obj["ISOAREA_IMAGE"], dtype=np.int64),
    )


def _median_fwhm(obj: Table) -> float:
    """Median SExtractor FWHM (px) of clean, bright detections (STDPipe's usual estimate)."""
    fwhm = np.asarray(obj["fwhm"], dtype=float)
    flux = np.asarray(obj["flux"], dtype=float)
    fluxerr = np.asarray(obj["fluxerr"], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = flux / fluxerr
    ok = np.isfinite(fwhm) & (fwhm > 0)
    good = ok & (np.asarray(obj["flags"]) == 0) & (snr > _FWHM_MIN_SNR)
    pick = good if good.any() else ok
    if not pick.any():
        raise DetectionError(
            f"none of the {len(obj)} sources SExtractor found has a measurable FWHM; the "
            "frame may be out of focus or contain no stars"
        )
    return float(np.median(fwhm[pick]))


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
        api = load_stdpipe()
        sextractor = find_tool("source-extractor")
        with stdpipe_workspace() as tmp:
            obj = api.photometry.get_objects_sextractor(
                np.asarray(frame.data, dtype=np.float64),
                mask=mask != 0,
                thresh=cfg.threshold_sigma,
                aper=_DETECT_APERTURE_PX,
                r0=_DETECT_SMOOTHING_PX,
                gain=meta.gain,
                minarea=cfg.min_area_px,
                edge=state.config.masking.edge_px,
                sn=_DETECT_MIN_SNR,
                bg_size=cfg.background_box_px,
                extra_params=["FLUX_MAX", "ISOAREA_IMAGE"],
                _tmpdir=tmp,
                _exe=str(sextractor),
                verbose=False,
            )
        if obj is None:
            raise ExternalToolError(
                f"SExtractor (run by STDPipe) failed on this frame; {_NOTHING_SHOWN}"
            )
        if len(obj) == 0:
            raise DetectionError(
                f"SExtractor found no source above {cfg.threshold_sigma:g} sigma (minimum "
                f"area {cfg.min_area_px} px); the frame may be empty or out of focus — check "
                "the image, or lower detection.threshold_sigma"
            )
        sources = source_list_from_stdpipe(obj)
        order = np.argsort(-sources.flux, kind="stable")[: cfg.max_sources]
        return replace(state, sources=sources.select(order), fwhm=_median_fwhm(obj))


def assess_solution(
    wcs: WCS,
    sources: SourceList,
    ra: np.ndarray,
    dec: np.ndarray,
    *,
    shape: tuple[int, int],
    match_radius_arcsec: float,
    min_matches: int,
    max_rms_arcsec: float,
    method: str,
) -> AstrometricSolution:
    """Match detections to the catalog through ``wcs`` and measure how well it fits.

    STDPipe returns only the WCS, so the pairs, residuals and rms are measured here, the
    same way for every WCS: one-to-one nearest pairs within ``match_radius_arcsec``.
    ``matched_fraction`` is matched pairs over the smaller of (detections, catalog stars on
    the frame). Raises ``AstrometryError`` with too few pairs or a large rms.
    """
    ny, nx = shape
    scale = pixel_scale_arcsec(wcs)
    xc, yc = world_to_pixel(wcs, ra, dec)
    on_frame = (
        np.isfinite(xc)
        & np.isfinite(yc)
        & (xc >= -0.5)
        & (xc <= nx - 0.5)
        & (yc >= -0.5)
        & (yc <= ny - 0.5)
    )
    i_src, i_cat, _ = match_nearest(
        sources.x, sources.y, xc, yc, radius=match_radius_arcsec / scale
    )
    hint = (
        "the STDPipe quad-hash refinement probably locked onto a wrong solution — check the "
        "header WCS, or use the built-in engine"
    )
    if i_src.size < min_matches:
        raise AstrometryError(
            f"only {i_src.size} detections lie within {match_radius_arcsec:g} arcsec of a "
            f"catalog star after the STDPipe astrometric fit (need {min_matches}); {hint}"
        )
    ra_d, dec_d = pixel_to_world(wcs, sources.x[i_src], sources.y[i_src])
    dra = (ra[i_cat] - ra_d + 180.0) % 360.0 - 180.0
    res_x = dra * np.cos(np.deg2rad(dec[i_cat])) * 3600.0
    res_y = (dec[i_cat] - dec_d) * 3600.0
    rms = float(np.sqrt(np.mean(res_x**2 + res_y**2)))
    if rms > max_rms_arcsec:
        raise AstrometryError(
            f"astrometric rms {rms:.2f} arcsec over {i_src.size} stars after the STDPipe fit "
            f"exceeds max_rms {max_rms_arcsec:g} arcsec; {hint}, or raise max_rms_arcsec"
        )
    expected = min(len(sources), int(on_frame.sum()))
    return AstrometricSolution(
        wcs=wcs,
        n_matched=int(i_src.size),
        rms_arcsec=rms,
        matched_fraction=min(1.0, i_src.size / expected) if expected else 0.0,
        matched_source=i_src,
        matched_catalog=i_cat,
        residual_x_arcsec=res_x,
        residual_y_arcsec=res_y,
        method=method,
    )


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
        api = load_stdpipe()
        ra = np.asarray(catalog.table["ra"], dtype=float)
        dec = np.asarray(catalog.table["dec"], dtype=float)
        obj = Table(
            {
                "x": sources.x,
                "y": sources.y,
                "flux": sources.flux,
                "fluxerr": sources.fluxerr,
                "flags": sources.flag,
            }
        )
        cat = Table(
            {"ra": ra, "dec": dec, "mag": np.asarray(catalog.table[bands.band], dtype=float)}
        )
        wcs = api.pipeline.refine_astrometry(
            obj,
            cat,
            sr=cfg.match_radius_arcsec / 3600.0,
            wcs=celestial_wcs(header_wcs),
            order=cfg.sip_order,
            cat_col_mag="mag",
            cat_col_ra="ra",
            cat_col_dec="dec",
            method="quadhash",
            update=False,
            verbose=False,
        )
        if wcs is None:
            raise AstrometryError(
                f"STDPipe's quad-hash matcher found no astrometric solution with "
                f"{len(sources)} detections and {len(cat)} catalog stars; the header WCS may "
                "be far off, or the catalog may not cover the frame — check both, or use the "
                "built-in engine"
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
        api = load_stdpipe()
        sextractor = find_tool("source-extractor")
        psfex = find_tool("psfex")
        with stdpipe_workspace() as tmp:
            model = api.psf.run_psfex(
                np.asarray(frame.data, dtype=np.float64),
                mask=mask != 0,
                gain=meta.gain,
                minarea=state.config.detection.min_area_px,
                order=_PSF_DEGREE,
                _tmpdir=tmp,
                _exe=str(psfex),
                _sex_exe=str(sextractor),
                verbose=False,
            )
        if model is None:
            raise ExternalToolError(
                "PSFEx (run by STDPipe) wrote no PSF model: too few usable stars, or the "
                f"program failed; {_NOTHING_SHOWN}"
            )
        return replace(state, psf=StdpipePSF(model=model, shape=frame.shape))
