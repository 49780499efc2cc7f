"""``skyphot template prefetch|import``: fill the template cache ahead of a campaign."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from skyphot.errors import TemplateError, UnknownFilterError

# The template cache and the cutout service are imported by the handlers that use them:
# registering these commands is part of every `skyphot` start-up.


def _band(name: str) -> str:
    from skyphot.catalogs.filters import resolve_filter

    try:
        return resolve_filter(name).band
    except UnknownFilterError:
        return name


def cmd_prefetch(args: argparse.Namespace) -> int:
    """Fetch the survey template(s) covering a circle into the cache."""
    from skyphot.templates.cache import TemplateCache
    from skyphot.templates.service import choose_survey, fetch_ps1

    if not args.radius > 0:
        raise TemplateError(f"--radius must be positive degrees, got {args.radius}")
    survey, band, note = choose_survey(_band(args.filter), args.dec, args.survey)
    cache = TemplateCache(args.cache_dir)
    max_side = survey.max_size_px * survey.pixel_scale / 3600.0  # degrees
    n = max(1, math.ceil(2 * args.radius / (0.9 * max_side)))
    step = 2 * args.radius / n
    side_px = min(math.ceil((step * 1.1) * 3600.0 / survey.pixel_scale), survey.max_size_px)
    stored = []
    cosd = max(math.cos(math.radians(args.dec)), 1e-3)
    for i in range(n):
        for j in range(n):
            dec = args.dec - args.radius + (j + 0.5) * step
            ra = (args.ra + (-args.radius + (i + 0.5) * step) / cosd) % 360.0
            margin = 0.45 * side_px * survey.pixel_scale
            hit = cache.find(ra, dec, band, survey=survey.name, min_margin_arcsec=margin)
            if hit is not None:
                stored.append({"path": str(hit.path), "cached": True})
                continue
            tmp = fetch_ps1(ra, dec, band, side_px, base_url=args.service_url or survey.url,
                            timeout=args.timeout, retries=args.retries)
            item = cache.store(tmp, survey=survey.name, band=band, ra=ra, dec=dec,
                               size_px=side_px)
            tmp.unlink(missing_ok=True)
            stored.append({"path": str(item.path), "cached": False})
    summary = {"survey": survey.name, "band": band, "note": note, "files": stored}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Copy a local template into the cache for offline use."""
    from astropy.io import fits

    from skyphot.templates.cache import TemplateCache

    band = args.band
    if band is None:
        try:
            filt = fits.getval(args.file, "FILTER")
        except (OSError, KeyError) as err:
            raise TemplateError(
                f"template {args.file} names no FILTER in its header; give --band"
            ) from err
        band = _band(str(filt).strip())
    item = TemplateCache(args.cache_dir).import_file(args.file, survey=args.survey, band=band)
    sys.stdout.write(json.dumps({"path": str(item.path), "survey": item.survey,
                                 "band": item.band}) + "\n")
    return 0


def add_parsers(sub: Any) -> None:
    """Register ``template prefetch|import`` on the top-level sub-command parser."""
    template = sub.add_parser("template", help="fill the template cache (image subtraction)")
    inner = template.add_subparsers(dest="template_command", metavar="ACTION", required=True)

    p = inner.add_parser("prefetch", help="download survey templates of a field")
    p.add_argument("--ra", type=float, required=True, help="centre RA, degrees")
    p.add_argument("--dec", type=float, required=True, help="centre Dec, degrees")
    p.add_argument("--filter", required=True, help="filter or band of the frames to come")
    p.add_argument("--radius", type=float, required=True, help="radius to cover, degrees")
    p.add_argument("--survey", help="survey (default: chosen from band and Dec; 'ps1')")
    p.add_argument("--service-url", help="cutout service base URL (default: the survey's)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=3, help="attempts per request")
    p.add_argument("--cache-dir", help="template cache directory")
    p.set_defaults(handler=cmd_prefetch)

    p = inner.add_parser("import", help="add a local template file for offline use")
    p.add_argument("file", help="FITS image with a WCS (.fits, .fz, .gz)")
    p.add_argument("--survey", default="local", help="name to file it under (default local)")
    p.add_argument("--band", help="band (default: from the header's FILTER)")
    p.add_argument("--cache-dir", help="template cache directory")
    p.set_defaults(handler=cmd_import)
