"""Stages that choose the reference catalog and fix the astrometry against it."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
from astropy.coordinates import ICRS, SkyCoord
from astropy.wcs import WCS

from skyphot.catalogs.base import CatalogProvider, ReferenceCatalog
from skyphot.catalogs.filters import resolve_filter
from skyphot.core.astrometry import AstrometricSolution, footprint_radius_deg, refine_wcs
from skyphot.core.wcs_utils import celestial_frame, express_in_frame, solution_in_system_of
from skyphot.errors import (
    AstrometryError,
    CatalogError,
    HeaderError,
    SkyphotError,
    UnknownFilterError,
    WCSError,
)
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.stages.blind import blind_solve, scale_hint
from skyphot.pipeline.state import Bands, FrameState, need

logger = logging.getLogger("skyphot.pipeline")


def catalog_provider(
    config: MeasureConfig, *, band: str | None, ra: float, dec: float
) -> CatalogProvider:
    """The provider the configuration asks for: a local file, a named catalog, or the best
    online catalog for ``band`` at (ra, dec) — behind the on-disk cache unless disabled."""
    cfg = config.catalog
    if cfg.path is not None:
        # A file needs neither the cache (Parquet, HEALPix) nor the online services, so a
        # measurement with one does not import them (the same rule as choose_provider's).
        from skyphot.catalogs.local import LocalCatalog

        return LocalCatalog(cfg.path, columns=cfg.columns or None, magsys=cfg.magsys)
    from skyphot.catalogs.cache import CatalogCache
    from skyphot.catalogs.service import choose_provider

    cache = CatalogCache(cfg.cache_dir) if cfg.use_cache else None
    return choose_provider(
        band=band,
        ra=ra,
        dec=dec,
        name=cfg.name,
        columns=cfg.columns,
        magsys=cfg.magsys,
        cache=cache,
        server=cfg.server,
        timeout=cfg.timeout_s,
        retries=cfg.retries,
    )


def wanted_band(filter_name: str | None, config: MeasureConfig) -> str | None:
    """The band to calibrate to, when it can be told before the catalog is read."""
    if config.calibration.band is not None:
        return config.calibration.band
    if filter_name is None:
        return None
    return resolve_filter(filter_name).band


def choose_bands(
    filter_name: str | None, config: MeasureConfig, available: tuple[str, ...]
) -> Bands:
    """Map the frame's filter to a catalog band and a colour, checking the catalog has them."""
    cal = config.calibration
    if cal.band is not None:
        band = cal.band
        label = filter_name or band
    elif filter_name is None:
        raise HeaderError(
            "no filter in the header (looked for FILTER, FILTER1, FILTNAME, ...); "
            "give it with --filter"
        )
    elif filter_name in available:
        band = filter_name
        label = filter_name
    else:
        band = resolve_filter(filter_name).band
        label = filter_name
    if band not in available:
        raise CatalogError(
            f"the catalog has no {band!r} magnitudes for filter {label!r}; "
            f"it has {', '.join(available) or 'no bands'} — choose one with --filter"
        )
    color_bands = cal.color_bands
    if color_bands is None and cal.fit_color_term:
        color_bands = _default_color(band, available)
    if color_bands is not None:
        missing = [b for b in color_bands if b not in available]
        if missing:
            raise CatalogError(
                f"colour band(s) {', '.join(missing)} not in the catalog "
                f"(it has {', '.join(available)}); choose others with --color"
            )
    return Bands(filter=label, band=band, color_bands=color_bands)


def _default_color(band: str, available: tuple[str, ...]) -> tuple[str, str] | None:
    """The colour conventionally used with ``band``, if the catalog has both bands."""
    try:
        info = resolve_filter(band)
    except UnknownFilterError:
        return None  # a band with no conventional colour: calibrate without a colour term
    if info.color_bands is not None and all(b in available for b in info.color_bands):
        return info.color_bands
    return None


def catalog_cone(state: FrameState) -> tuple[tuple[float, float], float]:
    """Centre and radius (degrees) of the sky the frame may cover.

    With a header WCS: the frame's footprint plus the largest offset searched for. Without:
    a circle around the target wide enough for the target to sit anywhere on the frame.
    """
    frame = need(state.frame, "the frame")
    config = state.config
    if config.catalog.radius_deg is not None and state.header_wcs is not None:
        center, _ = footprint_radius_deg(state.header_wcs, frame.shape)
        return center, config.catalog.radius_deg
    if state.header_wcs is not None:
        center, radius = footprint_radius_deg(state.header_wcs, frame.shape)
        return center, radius + config.astrometry.max_offset_arcsec / 3600.0
    scale = scale_hint(config, frame.header, None)
    target = (config.target.ra, config.target.dec)
    if config.catalog.radius_deg is not None:
        return target, config.catalog.radius_deg
    if scale is None:  # NormaliseHeader refuses this case; kept for other recipes
        raise WCSError(
            "the header has no usable WCS and no pixel scale (PIXSCALE/SECPIX), so the field "
            "size is unknown: give the pixel scale (--pixel-scale ARCSEC) for blind solving"
        )
    ny, nx = frame.shape
    return target, math.hypot(nx, ny) * scale / 3600.0


@dataclass(frozen=True)
class LoadCatalog:
    """Query the reference catalog over the frame and decide band and colour."""

    name: str = "catalog"

    def run(self, state: FrameState) -> FrameState:
        meta = need(state.meta, "the header")
        config = state.config
        (ra0, dec0), radius = catalog_cone(state)
        provider = catalog_provider(
            config,
            band=None if config.catalog.path else wanted_band(meta.filter, config),
            ra=ra0,
            dec=dec0,
        )
        full = provider.query(SkyCoord(ra0, dec0, unit="deg"), radius, ())
        bands = choose_bands(meta.filter, config, full.bands)
        catalog = _usable_rows(full, bands, config)
        return replace(state, catalog=catalog, bands=bands)


def _usable_rows(
    catalog: ReferenceCatalog, bands: Bands, config: MeasureConfig
) -> ReferenceCatalog:
    """Rows with a finite magnitude in the band, within the configured magnitude range."""
    table = catalog.table
    mag = np.asarray(table[bands.band], dtype=float)
    keep = np.isfinite(mag) & np.isfinite(np.asarray(table["ra"], dtype=float))
    if config.catalog.mag_min is not None:
        keep &= mag >= config.catalog.mag_min
    if config.catalog.mag_max is not None:
        keep &= mag <= config.catalog.mag_max
    if not keep.any():
        raise CatalogError(
            f"no star of catalog {catalog.name!r} with a {bands.band} magnitude falls near the "
            "frame: check that the catalog covers this field"
        )
    return replace(catalog, table=table[keep])


@dataclass(frozen=True)
class RefineAstrometry:
    """Fix the WCS: refine the header's (default), solve blind when it is missing or wrong,
    run SCAMP, or trust the header as is."""

    name: str = "astrometry"

    def run(self, state: FrameState) -> FrameState:
        cfg = state.config.astrometry
        guess = state.header_wcs
        if cfg.method == "header":
            return replace(
                state, astrometry=AstrometricSolution.unrefined(need(guess, "the header WCS"))
            )
        if cfg.method == "scamp":
            return replace(state, astrometry=_scamp(state, need(guess, "the header WCS")))
        blind_first = guess is None or cfg.method == "astrometry.net" or cfg.blind == "always"
        if blind_first:
            return replace(state, astrometry=_blind_then_refine(state, reason=None))
        try:
            return replace(state, astrometry=_refine(state, guess))
        except AstrometryError as err:
            if cfg.blind == "never":
                raise
            logger.info("refining the header WCS failed (%s); solving blind", err)
            return replace(
                state,
                astrometry=_blind_then_refine(state, reason=str(err)),
                notes=(*state.notes, f"header WCS could not be refined ({err}); the frame "
                       "was solved blind"),
            )


def _refine(state: FrameState, guess: WCS) -> AstrometricSolution:
    frame = need(state.frame, "the frame")
    sources = need(state.sources, "the detections")
    catalog = need(state.catalog, "the reference catalog")
    bands = need(state.bands, "the bands")
    cfg = state.config.astrometry
    table = catalog.table
    return refine_wcs(
        sources.x,
        sources.y,
        sources.flux,
        np.asarray(table["ra"], dtype=float),
        np.asarray(table["dec"], dtype=float),
        wcs=guess,
        shape=frame.shape,
        mag=np.asarray(table[bands.band], dtype=float),
        sip_order=cfg.sip_order,
        max_offset_arcsec=cfg.max_offset_arcsec,
        match_radius_arcsec=cfg.match_radius_arcsec,
        min_matches=cfg.min_matches,
        max_rms_arcsec=cfg.max_rms_arcsec,
    )


def _blind_then_refine(state: FrameState, *, reason: str | None) -> AstrometricSolution:
    """Solve with astrometry.net, then refine that solution like a header WCS."""
    frame = need(state.frame, "the frame")
    sources = need(state.sources, "the detections")
    catalog = need(state.catalog, "the reference catalog")
    bands = need(state.bands, "the bands")
    center, radius = catalog_cone(state)
    try:
        solved = blind_solve(
            sources,
            catalog,
            band=bands.band,
            shape=frame.shape,
            config=state.config,
            scale=scale_hint(state.config, frame.header, state.header_wcs),
            center=center,
            radius_deg=radius,
        )
    except SkyphotError as err:
        if reason is None:
            raise
        raise AstrometryError(f"{reason}; blind solving failed too: {err}") from err
    # The frame keeps its own sky system (galactic, FK4 B1950, ...); refinement keeps that
    # of its starting WCS.
    solved = solution_in_system_of(solved, state.header_wcs)
    solution = _refine(state, solved)
    return replace(solution, method="astrometry.net")


def _scamp(state: FrameState, guess: WCS) -> AstrometricSolution:
    from skyphot.adapters.scamp import refine_wcs_scamp

    frame = need(state.frame, "the frame")
    cfg = state.config.astrometry
    if not isinstance(celestial_frame(guess), ICRS):
        # SCAMP matches in the reference catalog's system (ICRS)
        guess = express_in_frame(guess, ICRS())
    return refine_wcs_scamp(
        need(state.sources, "the detections"),
        wcs=guess,
        reference=need(state.catalog, "the reference catalog"),
        shape=frame.shape,
        band=need(state.bands, "the bands").band,
        match_radius_arcsec=cfg.match_radius_arcsec,
        min_matches=cfg.min_matches,
        max_rms_arcsec=cfg.max_rms_arcsec,
    )
