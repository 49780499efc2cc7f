"""The HEALPix/Parquet cache, the cached provider, prefetch and import (no network)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from fake_vizier_server import FakeVizier, votable_document

from skyphot.catalogs.base import ReferenceCatalog
from skyphot.catalogs.cache import CatalogCache, default_cache_dir
from skyphot.catalogs.cached import CachedProvider, CacheOnlyProvider
from skyphot.catalogs.local import LocalCatalog
from skyphot.catalogs.service import import_catalog, make_provider, prefetch
from skyphot.catalogs.sky import separation_deg
from skyphot.catalogs.vizier import PS1Provider
from skyphot.errors import CatalogError, CatalogServiceError

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
PS1_FIELDS = [("RAJ2000", "double", "deg"), ("DEJ2000", "double", "deg"),
              ("gmag", "float", "mag"), ("e_gmag", "float", "mag"),
              ("rmag", "float", "mag"), ("e_rmag", "float", "mag")]


def _field(ra0: float, dec0: float, radius: float, n: int, seed: int) -> list[list[object]]:
    """``n`` stars spread uniformly over a cone (degrees)."""
    rng = np.random.default_rng(seed)
    r = radius * np.sqrt(rng.uniform(0, 1, n))
    theta = rng.uniform(0, 2 * np.pi, n)
    dec = dec0 + r * np.sin(theta)
    ra = ra0 + r * np.cos(theta) / np.cos(np.radians(dec0))
    g = rng.uniform(14, 20, n)
    return [[round(a, 7), round(d, 7), round(m, 3), 0.01, round(m - 0.4, 3), 0.012]
            for a, d, m in zip(ra, dec, g, strict=True)]


def _serve(fake: FakeVizier, rows: list[list[object]]) -> None:
    fake.body = votable_document("II/349/ps1", PS1_FIELDS, rows)


def _cached(fake: FakeVizier, cache: CatalogCache) -> CachedProvider:
    return CachedProvider(PS1Provider(server=fake.url, timeout=2, retries=2, backoff=0.01),
                          cache)


def test_default_location_follows_environment(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv("SKYPHOT_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert CatalogCache().root == tmp_path / "c"
    monkeypatch.delenv("SKYPHOT_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "skyphot" / "catalogs"


def test_miss_then_hit(fake_vizier: FakeVizier, tmp_path: Path) -> None:
    rows = _field(150.0, 2.0, 0.3, 3000, seed=1)
    _serve(fake_vizier, rows)
    cache = CatalogCache(tmp_path)
    provider = _cached(fake_vizier, cache)
    center = SkyCoord(150.0 * u.deg, 2.0 * u.deg)
    first = provider.query(center, 0.3, ["r"])
    assert fake_vizier.count == 1
    assert first.table.meta["source"] == "service"
    # the same cone, a cone inside it, and another band: all from disk
    start = time.perf_counter()
    second = provider.query(center, 0.3, ["r"])
    hit_time = time.perf_counter() - start
    inner = provider.query(SkyCoord(150.05 * u.deg, 2.05 * u.deg), 0.2, ["g"])
    assert fake_vizier.count == 1
    assert second.table.meta["source"] == "cache"
    assert hit_time < 0.25  # ~5 ms measured; generous for a loaded CI machine
    # the cached answer is the fetched one (order aside)
    order1 = np.lexsort((first.table["dec"], first.table["ra"]))
    order2 = np.lexsort((second.table["dec"], second.table["ra"]))
    for col in ("ra", "dec", "r", "r_err"):
        np.testing.assert_array_equal(np.asarray(first.table[col])[order1],
                                      np.asarray(second.table[col])[order2])
    sep = separation_deg(np.array([r[0] for r in rows], dtype=float),
                         np.array([r[1] for r in rows], dtype=float), 150.05, 2.05)
    assert len(inner) == int(np.sum(sep <= 0.2))
    assert inner.bands == ("g",)


def test_partially_covered_cone_is_fetched(fake_vizier: FakeVizier, tmp_path: Path) -> None:
    _serve(fake_vizier, _field(150.0, 2.0, 0.5, 500, seed=2))
    provider = _cached(fake_vizier, CatalogCache(tmp_path))
    provider.query(SkyCoord(150.0 * u.deg, 2.0 * u.deg), 0.2, ["r"])
    provider.query(SkyCoord(150.15 * u.deg, 2.0 * u.deg), 0.2, ["r"])  # half outside
    assert fake_vizier.count == 2
    # a bigger cone around both is not covered either
    provider.query(SkyCoord(150.07 * u.deg, 2.0 * u.deg), 0.3, ["r"])
    assert fake_vizier.count == 3
    # ... and now its inside is
    provider.query(SkyCoord(150.1 * u.deg, 2.1 * u.deg), 0.1, ["r"])
    assert fake_vizier.count == 3


def test_complete_tiles_answer_a_cone_no_single_fetch_covered(
    fake_vizier: FakeVizier, tmp_path: Path
) -> None:
    cache = CatalogCache(tmp_path, nside=256)  # tiles of 0.23 deg
    _serve(fake_vizier, _field(150.0, 2.0, 3.6, 4000, seed=3))
    provider = _cached(fake_vizier, cache)
    provider.query(SkyCoord(148.5 * u.deg, 2.0 * u.deg), 2.0, [])
    provider.query(SkyCoord(151.5 * u.deg, 2.0 * u.deg), 2.0, [])
    assert fake_vizier.count == 2
    ra, dec, radius = 150.0, 2.0, 0.6  # straddles both cones, inside neither
    tiles = cache.tiles_for_cone(ra, dec, radius)
    complete = cache.info("ps1")["complete"]
    assert all(str(t) in complete for t in tiles)
    assert not any(
        separation_deg(ra, dec, c["ra"], c["dec"]) + radius <= c["radius"]
        for c in cache.info("ps1")["cones"]
    )
    provider.query(SkyCoord(ra * u.deg, dec * u.deg), radius, ["g"])
    assert fake_vizier.count == 2


def test_service_down_answers_from_cache(fake_vizier: FakeVizier, tmp_path: Path,
                                         closed_port_url: str) -> None:
    cache = CatalogCache(tmp_path)
    _serve(fake_vizier, _field(150.0, 2.0, 0.3, 400, seed=4))
    _cached(fake_vizier, cache).query(SkyCoord(150.0 * u.deg, 2.0 * u.deg), 0.3, ["r"])
    offline = CachedProvider(PS1Provider(server=closed_port_url, timeout=1, retries=2,
                                         backoff=0.01), cache)
    covered = offline.query(SkyCoord(150.0 * u.deg, 2.0 * u.deg), 0.2, ["r"])
    assert len(covered) > 0 and covered.table.meta["source"] == "cache"
    partial = offline.query(SkyCoord(150.3 * u.deg, 2.0 * u.deg), 0.2, ["r"])
    assert len(partial) > 0
    assert partial.table.meta["partial"] is True
    assert "did not answer" in partial.table.meta["service_error"]
    with pytest.raises(CatalogServiceError) as info:
        offline.query(SkyCoord(10.0 * u.deg, -5.0 * u.deg), 0.2, ["r"])
    assert str(info.value).startswith(
        "VizieR (Pan-STARRS1 DR1) did not answer after 2 attempts: cannot connect to")
    assert str(info.value).endswith(
        "; the cache has no stars for this field — run `skyphot catalog prefetch` when "
        "online or give --catalog FILE")


def test_truncated_answer_is_not_marked_complete(fake_vizier: FakeVizier,
                                                 tmp_path: Path) -> None:
    _serve(fake_vizier, _field(150.0, 2.0, 0.2, 50, seed=5))
    online = PS1Provider(server=fake_vizier.url, timeout=2, retries=1, row_limit=50)
    cache = CatalogCache(tmp_path)
    provider = CachedProvider(online, cache)
    provider.query(SkyCoord(150.0 * u.deg, 2.0 * u.deg), 0.2, ["r"])
    provider.query(SkyCoord(150.0 * u.deg, 2.0 * u.deg), 0.2, ["r"])
    assert fake_vizier.count == 2
    assert cache.info("ps1")["cones"] == []


def test_storing_twice_does_not_duplicate(tmp_path: Path) -> None:
    cache = CatalogCache(tmp_path)
    table = Table({"ra": [10.0, 10.01], "dec": [5.0, 5.0], "r": [15.0, 16.0],
                   "r_err": [0.01, 0.02]})
    catalog = ReferenceCatalog(table=table, bands=("r",), name="x")
    cache.store(catalog, cone=(10.0, 5.0, 0.05))
    table2 = Table({"ra": [10.0, 10.02], "dec": [5.0, 5.0], "r": [15.5, 17.0],
                    "r_err": [0.01, 0.02], "g": [16.0, 18.0], "g_err": [0.01, 0.01]})
    cache.store(ReferenceCatalog(table=table2, bands=("r", "g"), name="x"),
                cone=(10.0, 5.0, 0.05))
    out = cache.read("x", 10.0, 5.0, 0.05, ["r", "g"])
    order = np.argsort(out.table["ra"])
    np.testing.assert_allclose(out.table["ra"][order], [10.0, 10.01, 10.02])
    np.testing.assert_allclose(out.table["r"][order], [15.5, 16.0, 17.0])  # new value wins
    np.testing.assert_allclose(out.table["g"][order], [16.0, np.nan, 18.0], equal_nan=True)


def test_tiles_for_cone_never_miss_a_tile(tmp_path: Path) -> None:
    cache = CatalogCache(tmp_path)
    healpix = cache._healpix
    rng = np.random.default_rng(7)
    for _ in range(200):
        ra0, dec0 = rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-1, 1)))
        radius = rng.uniform(0.01, 1.0)
        tiles = set(cache.tiles_for_cone(ra0, dec0, radius).tolist())
        # random points inside the cone
        r = radius * np.sqrt(rng.uniform(0, 1, 2000))
        theta = rng.uniform(0, 2 * np.pi, 2000)
        center = SkyCoord(ra0 * u.deg, dec0 * u.deg)
        points = center.directional_offset_by(theta * u.rad, r * u.deg)
        hit = healpix.lonlat_to_healpix(points.ra, points.dec)
        assert set(hit.tolist()) <= tiles


def test_eviction_removes_least_recently_used(tmp_path: Path) -> None:
    cache = CatalogCache(tmp_path, max_bytes=10**9)
    rng = np.random.default_rng(8)
    for ra0 in (10.0, 40.0, 70.0):  # three fields far apart: disjoint tiles
        n = 2000
        table = Table({"ra": ra0 + rng.uniform(-0.1, 0.1, n),
                       "dec": 5.0 + rng.uniform(-0.1, 0.1, n),
                       "r": rng.uniform(14, 20, n), "r_err": rng.uniform(0.01, 0.1, n)})
        cache.store(ReferenceCatalog(table=table, bands=("r",), name="x"),
                    cone=(ra0, 5.0, 0.15))
    files = list(cache.root.glob("x/n*/*.parquet"))
    assert len(files) >= 3
    for path in files:  # all equally old ...
        os.utime(path, (1_000_000, 1_000_000))
    cache.read("x", 70.0, 5.0, 0.15, ["r"])  # ... until these two are read
    cache.read("x", 40.0, 5.0, 0.15, ["r"])
    tiles_field0 = {int(t) for t in cache.tiles_for_cone(10.0, 5.0, 0.15)}
    cache.max_bytes = cache.size_bytes() - 1  # one tile too many
    removed = cache.evict()
    assert removed
    assert {int(p.stem) for p in removed} <= tiles_field0
    assert cache.size_bytes() <= cache.max_bytes
    assert not cache.covers("x", 10.0, 5.0, 0.1, ["r"])  # its cone is forgotten
    assert cache.covers("x", 40.0, 5.0, 0.1, ["r"])
    assert cache.covers("x", 70.0, 5.0, 0.1, ["r"])


def test_store_evicts_beyond_the_limit(tmp_path: Path) -> None:
    cache = CatalogCache(tmp_path, max_bytes=1)  # every store is immediately too big
    table = Table({"ra": [10.0], "dec": [5.0], "r": [15.0], "r_err": [0.01]})
    cache.store(ReferenceCatalog(table=table, bands=("r",), name="x"), cone=(10.0, 5.0, 0.1))
    assert cache.size_bytes() == 0
    assert not cache.covers("x", 10.0, 5.0, 0.1, ["r"])


def test_crash_during_write_leaves_old_tile(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    cache = CatalogCache(tmp_path)
    table = Table({"ra": [10.0], "dec": [5.0], "r": [15.0], "r_err": [0.01]})
    cache.store(ReferenceCatalog(table=table, bands=("r",), name="x"), cone=(10.0, 5.0, 0.1))
    tile_files = list(cache.root.glob("x/n*/*.parquet"))
    before = {p: p.read_bytes() for p in tile_files}
    index_before = (cache.root / "x" / "index.json").read_bytes()
    real_write = pq.write_table

    def crash(table: object, where: str, **kwargs: object) -> None:
        real_write(table, where, **kwargs)  # the temporary file is complete...
        with open(where, "r+b") as handle:  # ... then half of it is lost
            handle.truncate(10)
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    bigger = Table({"ra": [10.0, 10.01], "dec": [5.0, 5.0], "r": [15.2, 16.0],
                    "r_err": [0.01, 0.01]})
    with pytest.raises(OSError, match="disk full"):
        cache.store(ReferenceCatalog(table=bigger, bands=("r",), name="x"),
                    cone=(10.0, 5.0, 0.1))
    assert {p: p.read_bytes() for p in tile_files} == before
    assert (cache.root / "x" / "index.json").read_bytes() == index_before
    assert not [p for p in cache.root.rglob("*") if p.name.endswith(".tmp")]
    np.testing.assert_allclose(cache.read("x", 10.0, 5.0, 0.1, ["r"]).table["r"], [15.0])


def test_damaged_index_and_bad_names(tmp_path: Path) -> None:
    cache = CatalogCache(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "index.json").write_text("{not json")
    with pytest.raises(CatalogError, match=r"index .*index\.json is damaged .* delete the "
                                           r"directory"):
        cache.covers("x", 1.0, 1.0, 0.1, [])
    with pytest.raises(CatalogError, match=r"'../evil' cannot be used in the cache"):
        cache.read("../evil", 1.0, 1.0, 0.1, [])


def test_prefetch_then_offline_query(fake_vizier: FakeVizier, tmp_path: Path,
                                     closed_port_url: str) -> None:
    rows = _field(150.0, 2.0, 0.5, 800, seed=9)
    _serve(fake_vizier, rows)
    cache = CatalogCache(tmp_path)
    online = PS1Provider(server=fake_vizier.url, timeout=2, retries=1)
    stored = prefetch("panstarrs", 150.0, 2.0, 0.5, ["r"], cache=cache, provider=online)
    assert stored == 800
    offline = make_provider("ps1", cache=cache, server=closed_port_url, timeout=1, retries=1)
    result = offline.query(SkyCoord(150.1 * u.deg, 2.0 * u.deg), 0.3, ["g", "r"])
    sep = separation_deg(np.array([r[0] for r in rows], dtype=float),
                         np.array([r[1] for r in rows], dtype=float), 150.1, 2.0)
    assert len(result) == int(np.sum(sep <= 0.3))
    with pytest.raises(CatalogError, match=r"Catalog ps1 has no V magnitudes"):
        prefetch("ps1", 150.0, 2.0, 0.5, ["V"], cache=cache, provider=online)


def test_import_then_query(tmp_path: Path) -> None:
    path = REAL / "all_refcat2_ey_uma.ecsv"
    if not path.exists():
        pytest.skip("real data not available")
    cache = CatalogCache(tmp_path)
    assert import_catalog(path, name="eyuma-refcat2", cache=cache) == ("eyuma-refcat2", 187)
    provider = make_provider("eyuma-refcat2", cache=cache)
    assert isinstance(provider, CacheOnlyProvider)
    center = SkyCoord(135.55 * u.deg, 49.84 * u.deg)
    from_cache = provider.query(center, 0.15, ["r", "g"])
    from_file = LocalCatalog(path).query(center, 0.15, ["r", "g"])
    assert len(from_cache) == len(from_file) > 0
    order_c = np.argsort(from_cache.table["ra"])
    order_f = np.argsort(from_file.table["ra"])
    np.testing.assert_allclose(from_cache.table["r"][order_c], from_file.table["r"][order_f])
    np.testing.assert_allclose(from_cache.table["r_err"][order_c],
                               from_file.table["r_err"][order_f])
    assert cache.covers("eyuma-refcat2", 135.55, 49.84, 0.1, ["r"])
    assert json.loads((tmp_path / "eyuma-refcat2" / "index.json").read_text())["imported"]
    with pytest.raises(CatalogError, match=r"no star within 0.100 deg of RA 10.00000"):
        provider.query(SkyCoord(10 * u.deg, 10 * u.deg), 0.1, ["r"])
    with pytest.raises(CatalogError, match=r"Imported catalog 'eyuma-refcat2' has no V"):
        provider.query(center, 0.1, ["V"])


def test_import_refuses_online_names_and_unknown_provider(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("ra,dec,r\n1,2,15\n")
    cache = CatalogCache(tmp_path / "cache")
    with pytest.raises(CatalogError, match=r"'PS1' is the name of an online catalog"):
        import_catalog(path, name="PS1", cache=cache)
    with pytest.raises(CatalogError, match=r"Unknown catalog 'mine': not an online catalog"):
        make_provider("mine", cache=cache)
    with pytest.raises(CatalogError, match=r"holds no catalog named 'mine'"):
        CacheOnlyProvider("mine", cache)
