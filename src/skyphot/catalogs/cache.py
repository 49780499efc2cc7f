"""On-disk cache of reference stars, partitioned by HEALPix tile.

Layout under the cache root (default ``~/.cache/skyphot/catalogs``, or ``SKYPHOT_CACHE_DIR``)::

    <catalog>/index.json              cones fetched, complete tiles, bands, magnitude system
    <catalog>/n<nside>/<tile>.parquet the stars of one tile (nested HEALPix numbering)

A query is answered from disk when its cone lies inside one cone fetched before (with the
bands asked for), or when every tile it touches is complete (inside a fetched cone). Every
write goes to a temporary file that is renamed into place, so a crash never leaves half a
tile or half an index. Tile files are touched when read; when the cache grows beyond
``max_bytes`` the least recently used tiles are removed, and the cones and complete tiles
that relied on them are forgotten.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import Table
from numpy.typing import NDArray

from skyphot.catalogs.base import ReferenceCatalog
from skyphot.catalogs.sky import cone_mask, separation_deg
from skyphot.errors import CatalogError, ToolNotFoundError

try:  # POSIX advisory locks keep two processes from interleaving index updates
    import fcntl
except ImportError:  # pragma: no cover - Windows: single-process use only
    fcntl = None  # type: ignore[assignment]

DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_NSIDE = 64  # tiles of ~0.92 deg: a 0.3 deg cone touches 1-4 of them
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
_INDEX_VERSION = 1


def default_cache_dir() -> Path:
    """``$SKYPHOT_CACHE_DIR`` if set, else ``~/.cache/skyphot/catalogs``."""
    env = os.environ.get("SKYPHOT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "skyphot" / "catalogs"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


def _write_parquet_atomic(path: Path, columns: dict[str, NDArray[np.float64]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(pa.table(columns), tmp, compression="zstd")
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


def _read_parquet(path: Path) -> dict[str, NDArray[np.float64]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return {name: np.asarray(table.column(name).to_numpy(), dtype=np.float64)
            for name in table.column_names}


@dataclass(frozen=True)
class Cone:
    """A cone fetched into the cache (degrees)."""

    ra: float
    dec: float
    radius: float
    bands: tuple[str, ...]
    tiles: tuple[int, ...]

    def contains(self, ra: float, dec: float, radius: float) -> bool:
        """True if the cone (ra, dec, radius) lies inside this one."""
        sep = float(separation_deg(ra, dec, self.ra, self.dec))
        return sep + radius <= self.radius + 1e-9


class CatalogCache:
    """HEALPix-partitioned Parquet cache of reference catalogs (see the module docstring).

    ``root`` defaults to ``default_cache_dir()``; ``max_bytes`` bounds the tile files;
    ``nside`` is the HEALPix resolution of the tiles (nested ordering).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        nside: int = DEFAULT_NSIDE,
    ) -> None:
        try:  # deferred: part of the "online" extra
            from astropy_healpix import HEALPix
        except ImportError as exc:
            raise ToolNotFoundError(
                "The catalog cache needs astropy-healpix: pip install 'skyphot[online]'"
            ) from exc

        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.max_bytes = int(max_bytes)
        self.nside = int(nside)
        self._healpix = HEALPix(nside=self.nside, order="nested")

    # --- paths and index -----------------------------------------------------------------

    def _catalog_dir(self, name: str) -> Path:
        if not _NAME.match(name):
            raise CatalogError(
                f"Catalog name {name!r} cannot be used in the cache: use letters, digits, "
                "'_', '-', '.' or '+' (at most 64 characters)."
            )
        return self.root / name

    def _tile_path(self, name: str, tile: int) -> Path:
        return self._catalog_dir(name) / f"n{self.nside}" / f"{tile}.parquet"

    def _index_path(self, name: str) -> Path:
        return self._catalog_dir(name) / "index.json"

    def _empty_index(self) -> dict[str, Any]:
        return {"version": _INDEX_VERSION, "nside": self.nside, "magsys": "AB", "bands": [],
                "cones": [], "complete": {}, "imported": False}

    def _load_index(self, name: str) -> dict[str, Any]:
        path = self._index_path(name)
        try:
            index: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return self._empty_index()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CatalogError(
                f"The cache index {path} is damaged ({exc}); delete the directory "
                f"{path.parent} and fetch the catalog again."
            ) from exc
        if index.get("nside") != self.nside or index.get("version") != _INDEX_VERSION:
            return self._empty_index()  # written with other settings: treat as empty
        return index

    def _save_index(self, name: str, index: dict[str, Any]) -> None:
        _atomic_write_bytes(self._index_path(name), json.dumps(index, indent=1).encode())

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        directory = self._catalog_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / ".lock").open("a") as handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # --- geometry ------------------------------------------------------------------------

    def tiles_for_cone(self, ra: float, dec: float, radius_deg: float) -> NDArray[np.int64]:
        """Nested HEALPix tiles overlapping the cone (degrees); a slight superset.

        astropy-healpix's cone search can miss a tile the cone clips (by up to ~0.3 tile
        sizes), so candidates come from a cone one tile larger and are kept if they hold the
        centre or their sampled boundary comes within the radius (plus the sampling slack).
        """
        step = 8
        size = float(self._healpix.pixel_resolution.to_value(u.deg))
        candidates = np.asarray(self._healpix.cone_search_lonlat(
            ra * u.deg, dec * u.deg, min(radius_deg + size, 180.0) * u.deg), dtype=np.int64)
        if len(candidates) == 0:
            return candidates
        lon, lat = self._healpix.boundaries_lonlat(candidates, step=step)
        sep = separation_deg(lon.to_value(u.deg), lat.to_value(u.deg), ra, dec)
        near = sep.min(axis=1) <= radius_deg + size / step
        home = int(self._healpix.lonlat_to_healpix(ra * u.deg, dec * u.deg))
        keep = near | (candidates == home)
        return np.sort(candidates[keep])

    def _tiles_inside(self, tiles: NDArray[np.int64], ra: float, dec: float,
                      radius_deg: float) -> list[int]:
        """Those of ``tiles`` lying wholly inside the cone (boundary sampled finely)."""
        if len(tiles) == 0:
            return []
        lon, lat = self._healpix.boundaries_lonlat(tiles, step=8)
        sep = separation_deg(lon.to_value(u.deg), lat.to_value(u.deg), ra, dec)
        inside = np.all(sep <= radius_deg - 1e-6, axis=1)
        return [int(t) for t in tiles[inside]]

    # --- public API ----------------------------------------------------------------------

    def names(self) -> tuple[str, ...]:
        """Catalogs with something in the cache."""
        if not self.root.exists():
            return ()
        return tuple(sorted(p.parent.name for p in self.root.glob("*/index.json")))

    def info(self, name: str) -> dict[str, Any]:
        """The index of ``name`` (bands, magsys, per-band systems, cones, complete tiles,
        imported flag)."""
        return self._load_index(name)

    def imported_covering(self, ra: float, dec: float, band: str) -> tuple[str, ...]:
        """Imported catalogs carrying ``band`` whose recorded region contains (``ra``,
        ``dec``) (degrees), the most specific (smallest region) first."""
        found: list[tuple[float, str]] = []
        for name in self.names():
            index = self._load_index(name)
            if not index.get("imported") or band not in index["bands"]:
                continue
            radii = [float(c["radius"]) for c in index["cones"]
                     if band in c["bands"]
                     and float(separation_deg(c["ra"], c["dec"], ra, dec)) <= c["radius"]]
            if radii:
                found.append((min(radii), name))
        return tuple(name for _, name in sorted(found))

    def covers(self, name: str, ra: float, dec: float, radius_deg: float,
               bands: Sequence[str]) -> bool:
        """True if the cache can answer the cone (degrees) with ``bands`` without fetching."""
        index = self._load_index(name)
        wanted = set(bands)
        cones = [c for c in index["cones"] if wanted <= set(c["bands"])]
        if cones:
            # vectorised: the index may hold thousands of cones after months of use
            cra, cdec, crad = (np.array([c[k] for c in cones], dtype=np.float64)
                               for k in ("ra", "dec", "radius"))
            sep = separation_deg(cra, cdec, ra, dec)
            if bool(np.any(sep + radius_deg <= crad + 1e-9)):
                return True
        complete = index["complete"]
        tiles = self.tiles_for_cone(ra, dec, radius_deg)
        return bool(len(tiles)) and all(
            str(t) in complete and wanted <= set(complete[str(t)]) for t in tiles
        )

    def read(self, name: str, ra: float, dec: float, radius_deg: float,
             bands: Sequence[str]) -> ReferenceCatalog:
        """Stars of ``name`` in the cache within the cone (whatever the coverage).

        ``bands`` empty means every band the cache holds for ``name``. Bands absent from a
        tile read as NaN. Touches the tiles read (for least-recently-used eviction).
        """
        index = self._load_index(name)
        keep = tuple(bands) if bands else tuple(index["bands"])
        chunks: list[dict[str, NDArray[np.float64]]] = []
        now = time.time()
        for tile in self.tiles_for_cone(ra, dec, radius_deg):
            path = self._tile_path(name, int(tile))
            try:
                columns = _read_parquet(path)
            except FileNotFoundError:
                continue  # a tile with no star (or evicted)
            with contextlib.suppress(FileNotFoundError):
                os.utime(path, (now, now))  # mark as recently used
            mask = cone_mask(columns["ra"], columns["dec"], ra, dec, radius_deg)
            chunks.append({k: v[mask] for k, v in columns.items()})
        table = Table()
        names = ["ra", "dec"] + [n for b in keep for n in (b, f"{b}_err")]
        for column in names:
            parts = [c.get(column, np.full(len(c["ra"]), np.nan)) for c in chunks]
            table[column] = np.concatenate(parts) if parts else np.zeros(0)
        return ReferenceCatalog(table=table, bands=keep, name=name,
                                magsys=str(index.get("magsys", "AB")),
                                systems=dict(index.get("systems", {})))

    def store(
        self,
        catalog: ReferenceCatalog,
        *,
        name: str | None = None,
        cone: tuple[float, float, float] | None,
        complete: bool = True,
        imported: bool = False,
    ) -> int:
        """Add the stars of ``catalog`` to the cache under ``name`` (default its own name).

        ``cone`` (ra, dec, radius; degrees) is the region the catalog fully covers; with
        ``complete`` it is recorded so later queries inside it are answered from disk (pass
        ``complete=False`` for a truncated answer). Stars already cached at the same
        position are replaced. Returns the number of stars stored.
        """
        key = name or catalog.name
        table = catalog.table
        ra = np.asarray(table["ra"], dtype=np.float64)
        dec = np.asarray(table["dec"], dtype=np.float64)
        star_tiles = np.asarray(
            self._healpix.lonlat_to_healpix(ra * u.deg, dec * u.deg), dtype=np.int64
        )
        if cone is not None:
            cone_tiles = self.tiles_for_cone(*cone)
            touched = np.union1d(cone_tiles, np.unique(star_tiles))
        else:
            cone_tiles = np.zeros(0, dtype=np.int64)
            touched = np.unique(star_tiles)
        with self._locked(key):
            index = self._load_index(key)
            for tile in touched:
                in_tile = star_tiles == tile
                if not in_tile.any():
                    continue
                new = {"ra": ra[in_tile], "dec": dec[in_tile]}
                for band in catalog.bands:
                    new[band] = np.asarray(table[band], dtype=np.float64)[in_tile]
                    new[f"{band}_err"] = np.asarray(table[f"{band}_err"],
                                                    dtype=np.float64)[in_tile]
                path = self._tile_path(key, int(tile))
                try:
                    old = _read_parquet(path)
                except FileNotFoundError:
                    old = None
                _write_parquet_atomic(path, _merge(old, new))
            index["bands"] = sorted(set(index["bands"]) | set(catalog.bands),
                                    key=_band_order)
            index["magsys"] = catalog.magsys
            index["systems"] = {**index.get("systems", {}), **catalog.band_systems()}
            index["imported"] = bool(index.get("imported")) or imported
            if cone is not None and complete:
                self._record_cone(index, cone, catalog.bands, cone_tiles)
            self._save_index(key, index)
        self.evict()
        return len(table)

    def _record_cone(self, index: dict[str, Any], cone: tuple[float, float, float],
                     bands: Sequence[str], tiles: NDArray[np.int64]) -> None:
        ra, dec, radius = cone
        new = Cone(ra, dec, radius, tuple(bands), tuple(int(t) for t in tiles))
        kept = []
        for entry in index["cones"]:
            old = Cone(entry["ra"], entry["dec"], entry["radius"], tuple(entry["bands"]),
                       tuple(entry["tiles"]))
            if set(old.bands) <= set(new.bands) and new.contains(old.ra, old.dec, old.radius):
                continue  # the new cone supersedes it
            if set(new.bands) <= set(old.bands) and old.contains(ra, dec, radius):
                return  # nothing new: an older cone already holds this one
            kept.append(entry)
        kept.append({"ra": ra, "dec": dec, "radius": radius, "bands": list(bands),
                     "tiles": list(new.tiles)})
        index["cones"] = kept
        for tile in self._tiles_inside(tiles, ra, dec, radius):
            previous = set(index["complete"].get(str(tile), []))
            index["complete"][str(tile)] = sorted(previous | set(bands), key=_band_order)

    def size_bytes(self) -> int:
        """Total size of the tile files, bytes."""
        return sum(p.stat().st_size for p in self.root.glob("*/n*/*.parquet"))

    def evict(self) -> list[Path]:
        """Remove least-recently-used tiles until the tiles fit in ``max_bytes``.

        Cones and complete tiles relying on a removed tile are forgotten. Returns the paths
        removed.
        """
        files = [(p.stat().st_mtime, p.stat().st_size, p)
                 for p in self.root.glob("*/n*/*.parquet")]
        total = sum(size for _, size, _ in files)
        removed: list[Path] = []
        for _, size, path in sorted(files, key=lambda f: f[0]):
            if total <= self.max_bytes:
                break
            name = path.parent.parent.name
            tile = int(path.stem)
            with self._locked(name):
                index = self._load_index(name)
                index["cones"] = [c for c in index["cones"] if tile not in c["tiles"]]
                index["complete"].pop(str(tile), None)
                self._save_index(name, index)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            total -= size
            removed.append(path)
        return removed


_BAND_RANK = {b: i for i, b in enumerate(("u", "g", "r", "i", "z", "y", "U", "B", "V", "R",
                                         "I", "J", "H", "K", "G", "BP", "RP", "BT", "VT"))}


def _band_order(band: str) -> tuple[int, str]:
    return _BAND_RANK.get(band, len(_BAND_RANK)), band


def _merge(
    old: dict[str, NDArray[np.float64]] | None, new: dict[str, NDArray[np.float64]]
) -> dict[str, NDArray[np.float64]]:
    """Union of two tiles' stars; a star at the same position (to 1e-7 deg) takes the new
    values, and bands only one side has are NaN on the other."""
    if old is None or len(old["ra"]) == 0:
        return new
    names = ["ra", "dec", *sorted((set(old) | set(new)) - {"ra", "dec"})]
    n_old, n_new = len(old["ra"]), len(new["ra"])
    merged = {
        c: np.concatenate([old.get(c, np.full(n_old, np.nan)),
                           new.get(c, np.full(n_new, np.nan))])
        for c in names
    }
    keys = np.stack([np.round(merged["ra"] * 1e7), np.round(merged["dec"] * 1e7)], axis=1)
    # keep the last occurrence of every position: the new answer wins
    _, first_in_reversed = np.unique(keys[::-1], axis=0, return_index=True)
    keep = np.sort(len(keys) - 1 - first_in_reversed)
    return {c: v[keep] for c, v in merged.items()}
