"""STDPipe (https://github.com/karpov-sv/stdpipe) called with plain values.

This module and its siblings wrap the STDPipe calls the ``stdpipe`` engine uses and turn
their products into skyphot's types; they know nothing of the pipeline. The stages that use
them, and what each result field means with this engine, are in
:mod:`skyphot.pipeline.stages.stdpipe`.

- detection: ``stdpipe.photometry.get_objects_sextractor`` (SExtractor) -> ``SourceList``;
- astrometry: ``stdpipe.pipeline.refine_astrometry`` with its quad-hash matcher and a TAN-SIP
  fit, checked against the catalog by ``assess_solution``;
- PSF: ``stdpipe.psf.run_psfex`` (PSFEx) -> ``StdpipePSF`` (:mod:`.stdpipe_psf`);
- photometry: ``stdpipe.photometry.measure_objects`` (:mod:`.stdpipe_photometry`);
- calibration: ``stdpipe.photometry.match`` -> ``ZeroPointFit`` (:mod:`.stdpipe_calibration`).

STDPipe is an optional extra: importing these modules never imports it; ``load_stdpipe``
raises ``ToolNotFoundError`` with the install command when it is missing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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
from skyphot.adapters.stdpipe_psf import StdpipePSF
from skyphot.core.astrometry import AstrometricSolution
from skyphot.core.detection import SourceList
from skyphot.core.matching import match_nearest
from skyphot.core.wcs_utils import celestial_wcs, pixel_scale_arcsec, pixel_to_world, world_to_pixel
from skyphot.errors import AstrometryError, DetectionError, ExternalToolError, ToolNotFoundError

MISSING_EXTRA = "the STDPipe engine needs the optional extra: pip install 'skyphot[stdpipe]'"

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


@dataclass(frozen=True)
class StdpipeAPI:
    """The STDPipe modules the engine calls (typed ``Any``: STDPipe ships no type hints)."""

    photometry: Any
    pipeline: Any
    psf: Any


def load_stdpipe() -> StdpipeAPI:
    """Import STDPipe, or raise ``ToolNotFoundError`` saying how to install it."""
    try:
        from stdpipe import photometry, pipeline
        from stdpipe import psf as psf_module
    except ImportError as err:
        raise ToolNotFoundError(MISSING_EXTRA) from err
    return StdpipeAPI(photometry=photometry, pipeline=pipeline, psf=psf_module)


def require_stdpipe() -> None:
    """Fail before any work when STDPipe or a program it calls (SExtractor, PSFEx) is missing.

    Raises ``ToolNotFoundError`` saying what to install.
    """
    load_stdpipe()
    find_tool("source-extractor")
    find_tool("psfex")


@contextmanager
def stdpipe_workspace() -> Iterator[str]:
    """A private directory for STDPipe's temporary files, removed afterwards.

    STDPipe makes its own temporary directory inside this one for every external program
    and only cleans it up on success; this one goes in any case.
    """
    with tempfile.TemporaryDirectory(prefix="skyphot-stdpipe-") as name:
        yield name


# --- detection -----------------------------------------------------------------------------


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


def detect_objects(
    api: StdpipeAPI,
    data: np.ndarray,
    mask: np.ndarray,
    *,
    gain: float,
    threshold_sigma: float,
    min_area_px: int,
    edge_px: int,
    background_box_px: int,
    max_sources: int,
) -> tuple[SourceList, float]:
    """Sources (brightest ``max_sources``) and the median FWHM (px) from SExtractor via STDPipe.

    SExtractor estimates its own background (mesh ``background_box_px``); pixels where
    ``mask`` (bool, True = bad) is set are flagged, not removed, as STDPipe does.
    """
    sextractor = find_tool("source-extractor")
    with stdpipe_workspace() as tmp:
        obj = api.photometry.get_objects_sextractor(
            np.asarray(data, dtype=np.float64),
            mask=mask,
            thresh=threshold_sigma,
            aper=_DETECT_APERTURE_PX,
            r0=_DETECT_SMOOTHING_PX,
            gain=gain,
            minarea=min_area_px,
            edge=edge_px,
            sn=_DETECT_MIN_SNR,
            bg_size=background_box_px,
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
            f"SExtractor found no source above {threshold_sigma:g} sigma (minimum "
            f"area {min_area_px} px); the frame may be empty or out of focus — check "
            "the image, or lower detection.threshold_sigma"
        )
    sources = source_list_from_stdpipe(obj)
    order = np.argsort(-sources.flux, kind="stable")[:max_sources]
    return sources.select(order), _median_fwhm(obj)


# --- astrometry ----------------------------------------------------------------------------


def refine_wcs(
    api: StdpipeAPI,
    sources: SourceList,
    ra: np.ndarray,
    dec: np.ndarray,
    mag: np.ndarray,
    *,
    header_wcs: WCS,
    match_radius_arcsec: float,
    sip_order: int,
) -> WCS:
    """STDPipe's quad-hash matching of ``sources`` to the catalog and its TAN-SIP fit.

    ``ra``, ``dec`` (deg) and ``mag`` are the catalog stars. Raises ``AstrometryError`` when
    STDPipe finds no solution; the WCS it returns is not checked here (``assess_solution``).
    """
    obj = Table(
        {
            "x": sources.x,
            "y": sources.y,
            "flux": sources.flux,
            "fluxerr": sources.fluxerr,
            "flags": sources.flag,
        }
    )
    cat = Table({"ra": ra, "dec": dec, "mag": mag})
    wcs = api.pipeline.refine_astrometry(
        obj,
        cat,
        sr=match_radius_arcsec / 3600.0,
        wcs=celestial_wcs(header_wcs),
        order=sip_order,
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
    solved: WCS = wcs
    return solved


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


# --- PSF -----------------------------------------------------------------------------------


def fit_psfex(
    api: StdpipeAPI, data: np.ndarray, mask: np.ndarray, *, gain: float, min_area_px: int
) -> StdpipePSF:
    """A PSFEx model, quadratic over the frame, built by STDPipe's ``run_psfex``.

    ``mask`` is bool, True = bad. Raises ``ExternalToolError`` when PSFEx makes no model.
    """
    sextractor = find_tool("source-extractor")
    psfex = find_tool("psfex")
    with stdpipe_workspace() as tmp:
        model = api.psf.run_psfex(
            np.asarray(data, dtype=np.float64),
            mask=mask,
            gain=gain,
            minarea=min_area_px,
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
    shape = np.shape(data)
    return StdpipePSF(model=model, shape=(int(shape[0]), int(shape[1])))
