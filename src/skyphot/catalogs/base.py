"""The reference-catalog interface that every provider (local file, online service) meets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from astropy.coordinates import SkyCoord
from astropy.table import Table


@dataclass(frozen=True)
class ReferenceCatalog:
    """Reference stars with normalised column names.

    ``table`` has float columns ``ra`` and ``dec`` (degrees, ICRS) and, for every band ``b``
    in ``bands``, ``b`` (magnitude) and ``b_err`` (its 1-sigma error; NaN where unknown).
    ``magsys`` is "AB" or "Vega".
    """

    table: Table
    bands: tuple[str, ...]
    name: str
    magsys: str = "AB"

    def __len__(self) -> int:
        return len(self.table)


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
