"""The magnitude system of every band of every provider, and how it travels with the stars
(VizieR answer -> cache -> pipeline result)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from fake_vizier_server import FakeVizier, votable_document

from skyphot.catalogs.base import ReferenceCatalog
from skyphot.catalogs.cache import CatalogCache
from skyphot.catalogs.vizier import PROVIDERS, RefCat2Provider

EXPECTED: dict[str, dict[str, str]] = {
    # Gaia DR3 GSPC: Johnson-Kron-Cousins in Vega, SDSS in AB
    "gaia_synth": {**dict.fromkeys("UBVRI", "Vega"), **dict.fromkeys("ugriz", "AB")},
    "ps1": dict.fromkeys("grizy", "AB"),
    "skymapper": dict.fromkeys("ugriz", "AB"),
    # PS1-system g r i z (AB), Gaia DR2 G BP RP and 2MASS J H K (Vega)
    "refcat2": {**dict.fromkeys("griz", "AB"), **dict.fromkeys(("G", "BP", "RP"), "Vega"),
                **dict.fromkeys("JHK", "Vega")},
    "apass": {"B": "Vega", "V": "Vega", "g": "AB", "r": "AB", "i": "AB"},
    "sdss": dict.fromkeys("ugriz", "AB"),
    "2mass": dict.fromkeys("JHK", "Vega"),
}


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_band_of_every_provider_has_its_system(name: str) -> None:
    assert PROVIDERS[name].SPEC.band_systems() == EXPECTED[name]


def test_refcat2_answer_carries_per_band_systems(fake_vizier: FakeVizier) -> None:
    fields = [("RA_ICRS", "double", "deg"), ("DE_ICRS", "double", "deg"),
              ("rmag", "float", "mag"), ("e_rmag", "float", "mag"),
              ("Gmag", "float", "mag"), ("e_Gmag", "float", "mag"),
              ("Jmag", "float", "mag"), ("e_Jmag", "float", "mag"), ("dupvar", "int", "")]
    fake_vizier.body = votable_document(
        "J/ApJ/867/105/refcat2", fields, [[150.0, 2.0, 15.0, 0.01, 15.2, 0.01, 14.0, 0.02, 0]]
    )
    provider = RefCat2Provider(server=fake_vizier.url, timeout=2.0, retries=1, backoff=0.01)
    result = provider.query(SkyCoord(150.0 * u.deg, 2.0 * u.deg), 0.1, ["r", "G", "J"])
    assert result.band_systems() == {"r": "AB", "G": "Vega", "J": "Vega"}


def test_cache_keeps_each_bands_system(tmp_path: Path) -> None:
    table = Table({"ra": [150.0], "dec": [2.0], "r": [15.0], "r_err": [0.01], "J": [14.0],
                   "J_err": [0.02]})
    catalog = ReferenceCatalog(table=table, bands=("r", "J"), name="refcat2", magsys="AB",
                               systems={"J": "Vega"})
    cache = CatalogCache(tmp_path)
    cache.store(catalog, cone=(150.0, 2.0, 0.1))
    back = cache.read("refcat2", 150.0, 2.0, 0.1, ())
    assert back.system("r") == "AB" and back.system("J") == "Vega"
    assert math.isclose(float(np.asarray(back.table["J"])[0]), 14.0)
