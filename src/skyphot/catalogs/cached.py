"""Providers backed by the on-disk cache: ``CachedProvider`` (any provider, cached) and
``CacheOnlyProvider`` (a catalog imported into the cache)."""

from __future__ import annotations

from collections.abc import Sequence

from astropy.coordinates import SkyCoord

from skyphot.catalogs.base import CatalogProvider, ReferenceCatalog
from skyphot.catalogs.cache import CatalogCache
from skyphot.catalogs.local import check_bands, select_cone
from skyphot.catalogs.sky import center_degrees
from skyphot.catalogs.vizier import OFFLINE_ADVICE, ServiceUnavailableError
from skyphot.errors import CatalogError, CatalogServiceError


class CachedProvider:
    """Wrap ``provider`` with ``cache``: answer from disk when the cone is covered, else
    fetch (every band the provider serves, so later queries for other bands hit too),
    store and answer.

    When the service is down, stars already cached in the cone are returned (the table's
    ``meta["partial"]`` says whether the cache covered the whole cone); with none cached,
    ``CatalogServiceError`` says so and what to do.
    """

    def __init__(self, provider: CatalogProvider, cache: CatalogCache) -> None:
        self.provider = provider
        self.cache = cache
        self.name = provider.name

    @property
    def bands(self) -> tuple[str, ...]:
        """Bands the wrapped provider serves (empty if it does not say)."""
        return tuple(getattr(self.provider, "bands", ()))

    def query(
        self, center: SkyCoord, radius_deg: float, bands: Sequence[str]
    ) -> ReferenceCatalog:
        """Stars within ``radius_deg`` (degrees) of ``center`` with ``bands`` (all if empty)."""
        ra, dec = center_degrees(center)
        wanted = tuple(bands) if bands else self.bands
        if self.cache.covers(self.name, ra, dec, radius_deg, wanted):
            cached = self.cache.read(self.name, ra, dec, radius_deg, wanted)
            cached.table.meta["source"] = "cache"
            return cached
        unknown = [b for b in wanted if self.bands and b not in self.bands]
        if unknown:
            # let the provider word the error about a band it does not serve
            return self.provider.query(center, radius_deg, wanted)
        fetch_bands = self.bands or wanted
        try:
            fetched = self.provider.query(center, radius_deg, fetch_bands)
        except CatalogServiceError as exc:
            return self._offline_answer(exc, ra, dec, radius_deg, wanted)
        truncated = bool(fetched.table.meta.get("truncated", False))
        self.cache.store(fetched, name=self.name, cone=(ra, dec, radius_deg),
                         complete=not truncated)
        result = select_cone(fetched, center, radius_deg, wanted)
        result.table.meta.update({"source": "service", "truncated": truncated})
        return result

    def _offline_answer(
        self, exc: CatalogServiceError, ra: float, dec: float, radius_deg: float,
        bands: Sequence[str],
    ) -> ReferenceCatalog:
        summary = exc.summary if isinstance(exc, ServiceUnavailableError) else str(exc)
        cached = self.cache.read(self.name, ra, dec, radius_deg, bands)
        if len(cached) == 0:
            raise CatalogServiceError(
                f"{summary}; the cache has no stars for this field — {OFFLINE_ADVICE}"
            ) from exc
        cached.table.meta.update({"source": "cache", "partial": True,
                                  "service_error": summary})
        return cached


class CacheOnlyProvider:
    """A catalog that exists only in the cache (added with ``import_catalog``)."""

    def __init__(self, name: str, cache: CatalogCache) -> None:
        self.name = name
        self.cache = cache
        info = cache.info(name)
        if not info["bands"] and not info["cones"]:
            raise CatalogError(
                f"The cache ({cache.root}) holds no catalog named {name!r}; import a file "
                "with `skyphot catalog import FILE --name NAME` first."
            )
        self._bands = tuple(info["bands"])

    @property
    def bands(self) -> tuple[str, ...]:
        return self._bands

    def query(
        self, center: SkyCoord, radius_deg: float, bands: Sequence[str]
    ) -> ReferenceCatalog:
        """Cached stars of the imported catalog within ``radius_deg`` (degrees) of ``center``.

        Raises ``CatalogError`` for a band the catalog lacks or a cone with no star.
        """
        ra, dec = center_degrees(center)
        wanted = tuple(bands) if bands else self._bands
        check_bands(self._bands, wanted, source=f"Imported catalog {self.name!r}")
        result = self.cache.read(self.name, ra, dec, radius_deg, wanted)
        if len(result) == 0:
            raise CatalogError(
                f"Imported catalog {self.name!r} has no star within {radius_deg:.3f} deg of "
                f"RA {ra:.5f}, Dec {dec:+.5f}; import a catalog file covering this field "
                "(`skyphot catalog import FILE --name NAME`) or give --catalog FILE."
            )
        result.table.meta["source"] = "cache"
        return result
