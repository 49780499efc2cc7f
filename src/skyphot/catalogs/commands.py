"""``skyphot catalog prefetch`` and ``skyphot catalog import``: the cache, from a shell."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

# The handlers import what they use: registering these commands is part of every `skyphot`
# start-up, and the cache and the catalog services (Parquet, HEALPix, VizieR) are only
# needed when one of them runs.
if TYPE_CHECKING:
    from skyphot.catalogs.cache import CatalogCache


def _cache(args: argparse.Namespace) -> CatalogCache:
    from skyphot.catalogs.cache import CatalogCache

    return CatalogCache(args.cache_dir)


def cmd_prefetch(args: argparse.Namespace) -> int:
    from skyphot.catalogs.registry import choose_catalog
    from skyphot.catalogs.service import make_provider, prefetch

    cache = _cache(args)
    name = args.name or choose_catalog(args.band, args.ra, args.dec)
    provider = make_provider(name, server=args.server, timeout=args.timeout, retries=args.retries)
    stored = prefetch(
        name,
        args.ra,
        args.dec,
        args.radius,
        tuple(args.bands or ()),
        cache=cache,
        provider=provider,
    )
    sys.stdout.write(
        json.dumps({"catalog": name, "stars": stored, "cache": str(cache.root)}) + "\n"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from skyphot.catalogs.columns import parse_columns
    from skyphot.catalogs.service import import_catalog

    cache = _cache(args)
    name, stored = import_catalog(
        args.file,
        name=args.name,
        columns=parse_columns(args.catalog_columns) or None,
        cache=cache,
        magsys=args.magsys,
    )
    sys.stdout.write(
        json.dumps({"catalog": name, "stars": stored, "cache": str(cache.root)}) + "\n"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    cache = _cache(args)
    listing = {}
    for name in cache.names():
        info = cache.info(name)
        listing[name] = {
            "bands": info.get("bands", []),
            "cones": len(info.get("cones", [])),
            "imported": bool(info.get("imported")),
        }
    sys.stdout.write(
        json.dumps({"cache": str(cache.root), "bytes": cache.size_bytes(), "catalogs": listing})
        + "\n"
    )
    return 0


def add_parsers(sub: Any) -> None:
    """Register ``catalog prefetch|import|list`` on the top-level sub-command parser."""
    catalog = sub.add_parser("catalog", help="fill or inspect the reference-catalog cache")
    inner = catalog.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)

    p = inner.add_parser("prefetch", help="download a field ahead of an observing night")
    p.add_argument("--ra", type=float, required=True, help="centre RA, degrees")
    p.add_argument("--dec", type=float, required=True, help="centre Dec, degrees")
    p.add_argument("--radius", type=float, required=True, help="cone radius, degrees")
    p.add_argument("--name", help="catalog (default: the best one for --band there)")
    p.add_argument("--band", default="r", help="band the automatic choice is made for")
    p.add_argument("--bands", nargs="+", help="bands to fetch (default: all it serves)")
    p.add_argument("--server", help="VizieR server (mirror)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=3, help="attempts per request")
    p.add_argument("--cache-dir", help="cache directory")
    p.set_defaults(handler=cmd_prefetch)

    p = inner.add_parser("import", help="add a local catalog file for offline use")
    p.add_argument("file", help="ECSV, CSV, FITS or Parquet table with ra, dec, magnitudes")
    p.add_argument("--name", help="name to use it by (--catalog-name NAME); default: the "
                   "file name without its extension. Without --catalog-name, frames of the "
                   "field it covers use it automatically, before any online catalog")
    p.add_argument("--catalog-columns", help="column mapping, e.g. ra=RA_deg,r=rPSF")
    p.add_argument("--magsys", choices=["AB", "Vega"], default="AB",
                   help="magnitude system of every band in the file")
    p.add_argument("--cache-dir", help="cache directory")
    p.set_defaults(handler=cmd_import)

    p = inner.add_parser("list", help="what the cache holds")
    p.add_argument("--cache-dir", help="cache directory")
    p.set_defaults(handler=cmd_list)
