"""The reference-catalog interface that every provider (local file, online service) meets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from astropy.coordinates import SkyCoord
from astropy.table import Table


@dataclass(frozen=True)
class ReferenceCatalog:
    """Reference stars with normalised column names.

    ``table`` has float columns ``ra`` and ``dec`` (degrees, ICRS) and, for every band ``b``
    in ``bands``, ``b`` (magnitude) and ``b_err`` (its 1-sigma error; NaN where unknown).
    Each band has its own magnitude system ("AB" or "Vega"): ``systems`` maps a band to it,
    and ``magsys`` is the system of any band ``systems`` does not name (a catalog may mix
    systems, e.g. ATLAS-RefCat2 has AB g r i z beside Vega G BP RP and J H K).
    """

    table: Table
    bands: tuple[str, ...]
    name: str
    magsys: str = "AB"
    systems: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)

    def system(self, band: str) -> str:
        """The magnitude system of ``band``."""
        return self.systems.get(band, self.magsys)

    def band_systems(self) -> dict[str, str]:
        """The system of every band of the catalog."""
        return {band: self.system(band) for band in self.bands}


class CatalogProvider(Protocol):
    """Anything that answers a cone search with a ``ReferenceCatalog``."""

    name: str

    def query(
        self, center: SkyCoord, radius_deg: float, bands: Sequence[str]
    ) -> ReferenceCatalog:
        """Stars within ``radius_deg`` of ``center`` carrying the requested bands.

        Raises ``CatalogError`` (bad data) or ``CatalogServiceError`` (service down).
        """
        ...
