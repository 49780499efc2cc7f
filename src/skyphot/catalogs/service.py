"""What the CLI and the pipeline call: make a provider, prefetch a field, import a file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from astropy import units as u
from astropy.coordinates import SkyCoord

from skyphot.catalogs.base import CatalogProvider
from skyphot.catalogs.cache import CatalogCache
from skyphot.catalogs.cached import CachedProvider, CacheOnlyProvider
from skyphot.catalogs.local import LocalCatalog, load_catalog_file
from skyphot.catalogs.registry import ALIASES, canonical_name, choose_catalog
from skyphot.catalogs.sky import bounding_cone
from skyphot.catalogs.vizier import PROVIDERS
from skyphot.errors import CatalogError


def make_provider(
    name: str,
    *,
    cache: CatalogCache | None = None,
    server: str | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
) -> CatalogProvider:
    """The provider for catalog ``name``: an online catalog (name or alias), cached when
    ``cache`` is given, or a catalog imported into ``cache`` under that name.

    Raises ``CatalogError`` for a name that is neither.
    """
    key = name.strip().lower()
    if key in ALIASES:
        online = PROVIDERS[ALIASES[key]](server=server, timeout=timeout, retries=retries,
                                          backoff=backoff)
        return CachedProvider(online, cache) if cache is not None else online
    if cache is not None and name in cache.names():
        return CacheOnlyProvider(name, cache)
    imported = ", ".join(cache.names()) if cache is not None else "no cache in use"
    raise CatalogError(
        f"Unknown catalog {name!r}: not an online catalog ({', '.join(PROVIDERS)}) and not "
        f"imported into the cache (imported/cached: {imported or 'none'}). Import a file "
        "with `skyphot catalog import FILE --name NAME` or give --catalog FILE."
    )


def choose_provider(
    *,
    band: str | None,
    ra: float,
    dec: float,
    path: str | None = None,
    name: str | None = None,
    columns: Mapping[str, str] | None = None,
    magsys: str = "AB",
    cache: CatalogCache | None = None,
    server: str | None = None,
    timeout: float = 30.0,
    retries: int = 3,
) -> CatalogProvider:
    """The provider to calibrate ``band`` at (``ra``, ``dec``) (degrees): the local file
    ``path`` (read with ``columns``, every band in ``magsys``), else the catalog ``name``,
    else a catalog imported into ``cache`` that covers (ra, dec) and carries ``band``, else
    the automatic online choice for ``band`` (``choose_catalog``). ``server``, ``timeout``
    (s) and ``retries`` go to online providers.
    """
    if path is not None:
        return LocalCatalog(path, columns=columns or None, magsys=magsys)
    if name is not None:
        return make_provider(name, cache=cache, server=server, timeout=timeout,
                             retries=retries)
    if band is None:
        raise CatalogError(
            "No catalog given and no band to choose one for: give --catalog FILE, a catalog "
            "name, or the band (--band)."
        )
    if cache is not None:
        # An observatory without internet imports its catalog once; it is used from then on
        # for every frame it covers, before any online service is tried.
        imported = cache.imported_covering(ra, dec, band)
        if imported:
            return CacheOnlyProvider(imported[0], cache)
    return make_provider(choose_catalog(band, ra, dec), cache=cache, server=server,
                         timeout=timeout, retries=retries)


def prefetch(
    name: str,
    ra: float,
    dec: float,
    radius_deg: float,
    bands: Sequence[str],
    *,
    cache: CatalogCache,
    provider: CatalogProvider | None = None,
) -> int:
    """Fetch the cone (degrees) of online catalog ``name`` into ``cache``; returns the number
    of stars stored. ``bands`` empty fetches every band the catalog serves. Raises
    ``CatalogServiceError`` when the service is down."""
    online = provider if provider is not None else PROVIDERS[canonical_name(name)]()
    key = getattr(online, "name", canonical_name(name))
    served = tuple(getattr(online, "bands", ()))
    fetch = served or tuple(bands)
    unknown = [b for b in bands if served and b not in served]
    if unknown:
        raise CatalogError(
            f"Catalog {key} has no {'/'.join(unknown)} magnitudes; it serves "
            f"{', '.join(served)}."
        )
    center = SkyCoord(ra * u.deg, dec * u.deg)
    catalog = online.query(center, radius_deg, fetch)
    truncated = bool(catalog.table.meta.get("truncated", False))
    return cache.store(catalog, name=key, cone=(ra, dec, radius_deg), complete=not truncated)


def import_catalog(
    path: str | Path,
    *,
    name: str | None = None,
    columns: Mapping[str, str] | None = None,
    cache: CatalogCache,
    magsys: str = "AB",
) -> tuple[str, int]:
    """Add a local catalog file to ``cache`` under ``name`` (default: the file's stem) so
    later frames of that field use it offline: chosen automatically for a field it covers
    in a band it carries, or by name (``make_provider(name, cache=cache)``). Every band is
    taken to be in ``magsys``. Returns the name used and the number of stars.

    The region recorded as covered is the smallest circle around the file's stars. Raises
    ``CatalogError`` for an unreadable file or a name that belongs to an online catalog.
    """
    name = name if name is not None else Path(path).stem
    if name.strip().lower() in ALIASES:
        raise CatalogError(
            f"{name!r} is the name of an online catalog; import the file under another name "
            "with --name NAME (e.g. the field or survey it comes from)."
        )
    catalog = load_catalog_file(path, columns=columns, name=name, magsys=magsys)
    ra0, dec0, radius = bounding_cone(catalog.table["ra"], catalog.table["dec"])
    return name, cache.store(catalog, name=name, cone=(ra0, dec0, radius), imported=True)
