"""Stages that read the frame and its header and refuse unusable input early."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
from astropy.wcs import WCS

from skyphot.core.wcs_utils import pixel_scale_arcsec, world_to_pixel
from skyphot.errors import WCSError
from skyphot.io.fits import read_frame
from skyphot.io.header import celestial_wcs, normalise_header, target_pixel
from skyphot.pipeline.stages.blind import scale_hint
from skyphot.pipeline.state import FrameState, need

logger = logging.getLogger("skyphot.pipeline")


@dataclass(frozen=True)
class ReadFrame:
    """Read the image plane (plain, .fz, .gz, multi-extension; integer or float)."""

    name: str = "read"

    def run(self, state: FrameState) -> FrameState:
        frame = read_frame(state.image_path, hdu=state.config.hdu)
        return replace(state, frame=frame)


@dataclass(frozen=True)
class NormaliseHeader:
    """Normalise the header, read the WCS, and refuse a target that is off the frame.

    The target check happens here, before any expensive work.
    """

    name: str = "header"

    def run(self, state: FrameState) -> FrameState:
        frame = need(state.frame, "the frame")
        meta = normalise_header(frame.header, overrides=state.config.header)
        try:
            wcs = celestial_wcs(frame.header, shape=frame.shape)
        except WCSError as err:
            if state.config.astrometry.blind == "never" or state.config.astrometry.method in (
                "header",
                "scamp",
            ):
                raise
            if scale_hint(state.config, frame.header, None) is None:
                raise WCSError(
                    f"{err}; to solve the frame blind instead, give its pixel scale "
                    "(--pixel-scale ARCSEC)"
                ) from err
            # Not swallowed: the astrometry stage solves blind and says so in the result.
            logger.info("no usable header WCS (%s): the frame will be solved blind", err)
            return replace(state, meta=meta, notes=(*state.notes, f"header WCS unusable: {err}"))
        _refuse_target_off_frame(wcs, state)
        return replace(state, meta=meta, header_wcs=wcs)


def _refuse_target_off_frame(wcs: WCS, state: FrameState) -> None:
    """Raise ``TargetOutsideFrameError`` unless the target may fall on the frame.

    The header WCS may be off by up to ``astrometry.max_offset_arcsec`` until it is refined,
    so a target just beyond the edge by less than that is given the benefit of the doubt;
    the target stage checks again with the refined WCS.
    """
    frame = need(state.frame, "the frame")
    target = state.config.target
    cfg = state.config.astrometry
    ny, nx = frame.shape
    xs, ys = world_to_pixel(wcs, np.array([target.ra]), np.array([target.dec]))
    x, y = float(xs[0]), float(ys[0])
    margin = 0.0 if cfg.method == "header" else cfg.max_offset_arcsec / pixel_scale_arcsec(wcs)
    inside = (
        math.isfinite(x)
        and math.isfinite(y)
        and -0.5 - margin <= x <= nx - 0.5 + margin
        and -0.5 - margin <= y <= ny - 0.5 + margin
    )
    if not inside:
        target_pixel(wcs, target.ra, target.dec, shape=frame.shape)  # raises, with details
