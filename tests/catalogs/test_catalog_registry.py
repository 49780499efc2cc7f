"""Catalog names, automatic choice, and building providers from the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyphot.catalogs.cache import CatalogCache
from skyphot.catalogs.cached import CachedProvider
from skyphot.catalogs.filters import resolve_filter
from skyphot.catalogs.local import LocalCatalog
from skyphot.catalogs.registry import canonical_name, catalog_names, choose_catalog
from skyphot.catalogs.service import choose_provider, make_provider
from skyphot.catalogs.vizier import PROVIDERS, GaiaSynthProvider, PS1Provider
from skyphot.errors import CatalogError


def test_every_catalog_is_listed_with_its_vizier_table() -> None:
    tables = {name: cls.SPEC.table_id for name, cls in PROVIDERS.items()}
    assert tables == {
        "gaia_synth": "I/360/syntphot", "ps1": "II/349/ps1", "skymapper": "II/379/smssdr4",
        "refcat2": "J/ApJ/867/105/refcat2", "apass": "II/336/apass9",
        "sdss": "V/154/sdss16", "2mass": "II/246/out",
    }
    assert catalog_names() == tuple(PROVIDERS)


@pytest.mark.parametrize(
    ("band", "dec", "expected"),
    [("r", 20.0, "ps1"), ("g", -29.9, "ps1"), ("y", 0.0, "ps1"), ("i", -30.0, "skymapper"),
     ("z", -70.0, "skymapper"), ("V", 45.0, "gaia_synth"), ("B", -60.0, "gaia_synth"),
     ("R", 0.0, "gaia_synth"), ("I", 0.0, "gaia_synth"), ("U", 10.0, "gaia_synth"),
     ("u", 10.0, "gaia_synth"), ("J", 0.0, "2mass"), ("K", -80.0, "2mass"),
     ("G", 0.0, "refcat2")],
)
def test_automatic_choice(band: str, dec: float, expected: str) -> None:
    assert choose_catalog(band, 150.0, dec) == expected


def test_unfiltered_frames_get_a_catalog_everywhere() -> None:
    band = resolve_filter("clear").band
    assert choose_catalog(band, 10.0, 40.0) == "ps1"
    assert choose_catalog(band, 10.0, -60.0) == "skymapper"


def test_forced_catalog_and_aliases() -> None:
    assert choose_catalog("r", 150.0, -60.0, catalog="Gaia") == "gaia_synth"
    assert choose_catalog("g", 150.0, 10.0, catalog="ATLAS") == "refcat2"
    assert canonical_name("Pan-STARRS") == "ps1"
    with pytest.raises(CatalogError, match=r"Catalog ps1 \(Pan-STARRS1 DR1\) has no V "
                                           r"magnitudes; it serves g, r, i, z, y"):
        choose_catalog("V", 150.0, 10.0, catalog="ps1")
    with pytest.raises(CatalogError, match=r"Unknown online catalog 'usno'. Known: gaia_synth"):
        canonical_name("usno")


def test_no_catalog_for_band() -> None:
    with pytest.raises(CatalogError, match=r"No online catalog serves band 'y' at Dec -45.00 "
                                           r"\(ps1 serve it elsewhere\)"):
        choose_catalog("y", 150.0, -45.0)
    with pytest.raises(CatalogError, match=r"No online catalog serves band 'VT' anywhere.*"
                                           r"--catalog FILE"):
        choose_catalog("VT", 150.0, 0.0)


def test_make_provider(tmp_path: Path) -> None:
    online = make_provider("panstarrs", server="http://127.0.0.1:9")
    assert isinstance(online, PS1Provider)
    assert online.server == "http://127.0.0.1:9"
    cached = make_provider("gaia", cache=CatalogCache(tmp_path))
    assert isinstance(cached, CachedProvider)
    assert isinstance(cached.provider, GaiaSynthProvider)
    assert cached.bands == ("U", "B", "V", "R", "I", "u", "g", "r", "i", "z")


def test_server_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYPHOT_VIZIER_SERVER", "vizier.example.org")
    assert PS1Provider().server == "vizier.example.org"
    monkeypatch.delenv("SKYPHOT_VIZIER_SERVER")
    assert PS1Provider().server  # astroquery's configured mirror


def test_choose_provider(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("ra,dec,r\n1,2,15\n")
    local = choose_provider(path=str(path), band="r", ra=1.0, dec=2.0)
    assert isinstance(local, LocalCatalog)
    named = choose_provider(name="apass", band="V", ra=1.0, dec=2.0, server="http://127.0.0.1:9")
    assert named.name == "apass"
    auto = choose_provider(band="r", ra=1.0, dec=-50.0, cache=CatalogCache(tmp_path / "cache"))
    assert isinstance(auto, CachedProvider) and auto.name == "skymapper"
    with pytest.raises(CatalogError, match="No catalog given and no band"):
        choose_provider(band=None, ra=1.0, dec=2.0)
