"""Stages that choose the reference catalog and fix the astrometry against it."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from skyphot.catalogs.base import CatalogProvider, ReferenceCatalog
from skyphot.core.astrometry import (
    AstrometricSolution,
    footprint_radius_deg,
    refine_wcs,
)
from skyphot.errors import CatalogError, ConfigError, HeaderError, UnknownFilterError
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.state import Bands, FrameState, need


def catalog_provider(config: MeasureConfig) -> CatalogProvider:
    """The provider the configuration asks for (a local file for now)."""
    if config.catalog.path is not None:
        from skyphot.catalogs.local import LocalCatalog

        return LocalCatalog(
            config.catalog.path,
            columns=config.catalog.columns or None,
            magsys=config.catalog.magsys,
        )
    raise ConfigError(
        "no reference catalog given: pass --catalog FILE (a table with ra, dec and magnitudes)"
    )


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
        from skyphot.catalogs.filters import resolve_filter

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
        from skyphot.catalogs.filters import resolve_filter

        info = resolve_filter(band)
    except UnknownFilterError:
        return None
    if info.color_bands is not None and all(b in available for b in info.color_bands):
        return info.color_bands
    return None


@dataclass(frozen=True)
class LoadCatalog:
    """Query the reference catalog over the frame and decide band and colour."""

    name: str = "catalog"

    def run(self, state: FrameState) -> FrameState:
        frame = need(state.frame, "the frame")
        meta = need(state.meta, "the header")
        wcs = need(state.header_wcs, "the header WCS")
        config = state.config
        (ra0, dec0), radius = footprint_radius_deg(wcs, frame.shape)
        radius += config.astrometry.max_offset_arcsec / 3600.0
        if config.catalog.radius_deg is not None:
            radius = config.catalog.radius_deg
        provider = catalog_provider(config)
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
    return ReferenceCatalog(
        table=table[keep], bands=catalog.bands, name=catalog.name, magsys=catalog.magsys
    )


@dataclass(frozen=True)
class RefineAstrometry:
    """Match detections to the catalog and fit TAN + SIP (or trust the header)."""

    name: str = "astrometry"

    def run(self, state: FrameState) -> FrameState:
        frame = need(state.frame, "the frame")
        wcs = need(state.header_wcs, "the header WCS")
        sources = need(state.sources, "the detections")
        catalog = need(state.catalog, "the reference catalog")
        bands = need(state.bands, "the bands")
        cfg = state.config.astrometry
        table = catalog.table
        if cfg.method == "header":
            solution = _header_solution(wcs)
        else:
            solution = refine_wcs(
                sources.x,
                sources.y,
                sources.flux,
                np.asarray(table["ra"], dtype=float),
                np.asarray(table["dec"], dtype=float),
                wcs=wcs,
                shape=frame.shape,
                mag=np.asarray(table[bands.band], dtype=float),
                sip_order=cfg.sip_order,
                max_offset_arcsec=cfg.max_offset_arcsec,
                match_radius_arcsec=cfg.match_radius_arcsec,
                min_matches=cfg.min_matches,
                max_rms_arcsec=cfg.max_rms_arcsec,
            )
        return replace(state, astrometry=solution)


def _header_solution(wcs: WCS) -> AstrometricSolution:
    empty = np.zeros(0, dtype=int)
    return AstrometricSolution(
        wcs=wcs,
        n_matched=0,
        rms_arcsec=float("nan"),
        matched_fraction=float("nan"),
        matched_source=empty,
        matched_catalog=empty,
        residual_x_arcsec=np.zeros(0),
        residual_y_arcsec=np.zeros(0),
        method="header",
    )
