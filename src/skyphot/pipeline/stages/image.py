"""Stages on the pixels: masking, background, detection, PSF, cosmic rays."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from skyphot.core.annulus import SourceDiscs, source_discs
from skyphot.core.detection import (
    SourceList,
    detect_sources,
    estimate_background,
    estimate_fwhm,
)
from skyphot.core.masking import MaskBits, build_mask, find_cosmic_rays
from skyphot.core.psf import fit_psf
from skyphot.pipeline.state import FrameState, frame_pixels, need

_ROWS_PER_BLOCK = 256  # rows handled at once in whole-frame passes that need a temporary


@dataclass(frozen=True)
class BuildMask:
    """Non-finite, saturated (grown), edge and bad-column pixels."""

    name: str = "mask"

    def run(self, state: FrameState) -> FrameState:
        frame = need(state.frame, "the frame")
        meta = need(state.meta, "the header")
        cfg = state.config.masking
        mask = build_mask(
            frame_pixels(frame),
            saturation=meta.saturation,
            saturation_fraction=cfg.saturation_fraction,
            saturation_grow_px=cfg.saturation_grow_px,
            edge_px=cfg.edge_px,
            bad_columns=cfg.bad_columns,
        )
        return replace(state, mask=mask)


@dataclass(frozen=True)
class SubtractBackground:
    """Smooth sky level and noise map; the background-subtracted image.

    Unless ``keep_pixels`` (an engine whose later stages read the raw frame), the frame's
    own pixels are released once the background-subtracted image exists: every later stage
    works on that image, and a large frame is then held once, not twice.
    """

    name: str = "background"
    keep_pixels: bool = False

    def run(self, state: FrameState) -> FrameState:
        frame = need(state.frame, "the frame")
        mask = need(state.mask, "the mask")
        cfg = state.config.detection
        data = frame_pixels(frame)
        background = estimate_background(
            data,
            mask=mask,
            box_size=cfg.background_box_px,
            filter_size=cfg.background_filter,
        )
        data_sub = background.subtract_from(data)  # a new array: ours to write into
        # Keep NaN/saturated values out of every later sum; in row blocks, so that no
        # frame-sized boolean map is added to this stage's peak (the frame is held twice here).
        for start in range(0, mask.shape[0], _ROWS_PER_BLOCK):
            rows = slice(start, start + _ROWS_PER_BLOCK)
            data_sub[rows][mask[rows] != 0] = 0.0
        kept = frame if self.keep_pixels else frame.without_pixels()
        return replace(state, frame=kept, background=background, data_sub=data_sub)


@dataclass(frozen=True)
class DetectSources:
    """Detect sources and estimate the FWHM from isolated stars."""

    name: str = "detect"

    def run(self, state: FrameState) -> FrameState:
        data_sub = need(state.data_sub, "the background-subtracted image")
        background = need(state.background, "the background")
        mask = need(state.mask, "the mask")
        cfg = state.config.detection
        bad = mask != 0  # made once: each frame-sized copy counts on a large frame
        if cfg.method == "sextractor":
            from skyphot.adapters.sextractor import detect_sources_sextractor

            meta = need(state.meta, "the header")
            sources = detect_sources_sextractor(
                data_sub,
                rms=background.rms,
                mask=bad,
                threshold_sigma=cfg.threshold_sigma,
                min_area=cfg.min_area_px,
                gain=meta.gain,
            )
            sources = sources.select(np.argsort(-sources.flux)[: cfg.max_sources])
        else:
            sources = detect_sources(
                data_sub,
                rms=background.rms,
                mask=bad,
                threshold_sigma=cfg.threshold_sigma,
                min_area=cfg.min_area_px,
                max_sources=cfg.max_sources,
                max_pixstack=cfg.max_pixstack,
            )
        fwhm = estimate_fwhm(data_sub, sources, mask=bad)
        return replace(state, sources=sources, fwhm=fwhm)


@dataclass(frozen=True)
class MaskCosmicRays:
    """Flag sharp cosmic-ray hits (optional: only in recipes that ask for it)."""

    name: str = "cosmic_rays"

    def run(self, state: FrameState) -> FrameState:
        data_sub = need(state.data_sub, "the background-subtracted image")
        background = need(state.background, "the background")
        fwhm = need(state.fwhm, "the FWHM")
        hits = find_cosmic_rays(data_sub, rms=background.rms, fwhm=fwhm)
        return mask_hits(state, np.nonzero(hits)) if hits.any() else state


# Detections centred this close (px, per axis) to a cosmic-ray pixel are taken for the hit.
_HIT_REACH_PX = 2


def mask_hits(state: FrameState, hits: tuple[np.ndarray, ...]) -> FrameState:
    """The state with the cosmic-ray pixels ``hits`` (rows, columns) masked and zeroed in
    the subtracted image, and the detections centred within 2 px of one dropped: hits found
    as sources, or a source's centroid pulled off by a hit (a 1,000 e- hit 2 px from a
    target moved its detection 1.3 px, where it counted as a blended neighbour)."""
    mask = need(state.mask, "the mask").copy()
    mask[hits] |= np.uint8(MaskBits.COSMIC_RAY)
    data_sub = need(state.data_sub, "the background-subtracted image").copy()
    data_sub[hits] = 0.0
    sources = need(state.sources, "the detections")
    ny, nx = mask.shape
    finite, row, col = _nearest_pixels(sources, mask.shape)
    hit = np.uint8(MaskBits.COSMIC_RAY)
    on_hit = np.zeros(len(sources), dtype=bool)
    for dy in range(-_HIT_REACH_PX, _HIT_REACH_PX + 1):
        for dx in range(-_HIT_REACH_PX, _HIT_REACH_PX + 1):
            near = mask[np.clip(row + dy, 0, ny - 1), np.clip(col + dx, 0, nx - 1)]
            on_hit |= (near & hit) != 0
    on_hit &= finite
    return replace(state, mask=mask, data_sub=data_sub, sources=sources.select(~on_hit))


@dataclass(frozen=True)
class FitPSF:
    """Fit a PSF model that may vary across the field."""

    name: str = "psf"

    def run(self, state: FrameState) -> FrameState:
        data_sub = need(state.data_sub, "the background-subtracted image")
        background = need(state.background, "the background")
        mask = need(state.mask, "the mask")
        sources = need(state.sources, "the detections")
        meta = need(state.meta, "the header")
        psf = fit_psf(
            data_sub,
            sources,
            rms=background.rms,
            mask=mask,
            saturation=meta.saturation,
        )
        return replace(state, psf=psf)


def source_discs_of(state: FrameState) -> SourceDiscs:
    """The detections' discs that local-background annuli leave out (``core.annulus``),
    sized by the frame's FWHM, the PSF's ``beta`` (3 for models without one) and the
    background noise at each detection."""
    sources = need(state.sources, "the detections")
    rms = need(state.background, "the background").rms
    fwhm = need(state.fwhm, "the FWHM")
    _, row, col = _nearest_pixels(sources, rms.shape)
    beta = float(getattr(state.psf, "beta", 3.0))
    return source_discs(
        sources.x, sources.y, sources.flux, sources.a, rms[row, col], fwhm=fwhm, beta=beta
    )


def _nearest_pixels(
    sources: SourceList, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which detections have finite centroids, and the row and column of the pixel nearest
    each (clipped to the frame; (0, 0) for a non-finite one)."""
    ny, nx = shape
    finite = np.isfinite(sources.x) & np.isfinite(sources.y)
    col = np.clip(np.rint(np.where(finite, sources.x, 0.0)), 0, nx - 1).astype(np.intp)
    row = np.clip(np.rint(np.where(finite, sources.y, 0.0)), 0, ny - 1).astype(np.intp)
    return finite, row, col
