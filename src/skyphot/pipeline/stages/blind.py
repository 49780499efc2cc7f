"""Blind astrometry: solve a frame whose header WCS is missing or wrong.

Index files come from the user (``astrometry.index_dir``) or are built on the fly from the
reference catalog of the field, so any field the catalog covers can be solved offline.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
from astropy.io.fits import Header
from astropy.wcs import WCS

from skyphot.catalogs.base import ReferenceCatalog
from skyphot.core.detection import SourceList
from skyphot.core.wcs_utils import pixel_scale_arcsec
from skyphot.pipeline.config import MeasureConfig

# Header keywords that state the pixel scale in arcsec/px, in order of trust.
_SCALE_KEYS = ("PIXSCALE", "SECPIX", "PIXSCAL1", "SECPIX1", "SCALE")
# Blind solving searches this factor around a known pixel scale.
_SCALE_SLACK = 1.25


def scale_hint(config: MeasureConfig, header: Header, wcs: WCS | None) -> float | None:
    """Pixel scale, arcsec/px: the caller's hint, else the header WCS, else a scale keyword."""
    if config.astrometry.pixel_scale_arcsec is not None:
        return config.astrometry.pixel_scale_arcsec
    if wcs is not None:
        return pixel_scale_arcsec(wcs)
    for key in _SCALE_KEYS:
        value = header.get(key)
        if isinstance(value, int | float) and math.isfinite(value) and 0 < value < 3600:
            return float(value)
    return None


def blind_solve(
    sources: SourceList,
    catalog: ReferenceCatalog,
    *,
    band: str,
    shape: tuple[int, int],
    config: MeasureConfig,
    scale: float | None,
    center: tuple[float, float],
    radius_deg: float,
) -> WCS:
    """A WCS from astrometry.net for the detections; raises ``AstrometryError`` if unsolved."""
    from skyphot.adapters.astrometry_net import build_index, solve_field

    cfg = config.astrometry
    ny, nx = shape
    scale_low = scale / _SCALE_SLACK if scale is not None else None
    scale_high = scale * _SCALE_SLACK if scale is not None else None
    with tempfile.TemporaryDirectory(prefix="skyphot-index-") as tmp:
        index_dirs: list[str | Path] = []
        if cfg.index_dir is not None:
            index_dirs.append(cfg.index_dir)
        else:
            table = catalog.table
            field_arcmin = (
                math.hypot(nx, ny) * scale / 60.0 if scale is not None else 120.0 * radius_deg
            )
            build_index(
                np.asarray(table["ra"], dtype=float),
                np.asarray(table["dec"], dtype=float),
                np.asarray(table[band], dtype=float),
                out_dir=tmp,
                field_arcmin=field_arcmin,
            )
            index_dirs.append(tmp)
        return solve_field(
            (sources.x, sources.y, sources.flux),
            shape=shape,
            index_dir=index_dirs,
            scale_low=scale_low,
            scale_high=scale_high,
            ra=center[0],
            dec=center[1],
            radius=radius_deg,
            timeout=cfg.solve_timeout_s,
        )
