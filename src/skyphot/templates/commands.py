"""``skyphot template prefetch|import``: fill the template cache ahead of a campaign."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from skyphot.errors import TemplateError, UnknownFilterError

# The template cache and the cutout services are imported by the handlers that use them:
# registering these commands is part of every `skyphot` start-up.

SURVEY_NAMES = ("des", "legacy", "ps1", "skymapper")
"""The surveys ``--survey`` accepts: the keys of ``templates.surveys.SURVEYS`` (a test
holds them equal), spelled out so that registering the command imports no astropy."""


def _band(name: str) -> str:
    from skyphot.catalogs.filters import resolve_filter

    try:
        return resolve_filter(name).band
    except UnknownFilterError:
        return name


def cmd_prefetch(args: argparse.Namespace) -> int:
    """Fetch the survey template(s) covering a circle into the cache: the same choice and
    fallback as ``--template auto``, tile by tile."""
    from skyphot.templates.auto import auto_template
    from skyphot.templates.surveys import plan

    if not args.radius > 0:
        raise TemplateError(f"--radius must be positive degrees, got {args.radius}")
    if args.service_url and not args.survey:
        raise TemplateError("--service-url needs --survey (the survey whose service it is)")
    urls = {args.survey: args.service_url} if args.service_url else {}
    band = _band(args.filter)
    cands = plan(band, args.ra, args.dec, survey=args.survey, urls=urls)
    # Tiles small enough for every planned survey's largest cutout.
    side_arcsec = min(c.survey.max_size_px * c.survey.pixel_scale for c in cands)
    n = max(1, math.ceil(2 * args.radius * 3600.0 / (0.9 * side_arcsec)))
    step = 2 * args.radius / n
    size_arcsec = min(step * 1.1 * 3600.0, side_arcsec)
    cosd = max(math.cos(math.radians(args.dec)), 1e-3)
    stored = []
    for i in range(n):
        for j in range(n):
            dec = args.dec - args.radius + (j + 0.5) * step
            ra = (args.ra + (-args.radius + (i + 0.5) * step) / cosd) % 360.0
            got = auto_template(
                ra=ra, dec=dec, band=band, size_arcsec=size_arcsec, survey_name=args.survey,
                cache_dir=args.cache_dir, urls=urls, timeout=args.timeout,
                retries=args.retries, cover_arcsec=0.45 * size_arcsec,
            )
            stored.append({"path": str(got.path), "cached": got.cached, "survey": got.survey,
                           "band": got.band, "note": got.note})
    summary = {"band": band, "files": stored}
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
    p.add_argument("--survey", choices=SURVEY_NAMES,
                   help="survey (default: the deepest serving the band there, then the next)")
    p.add_argument("--service-url", help="cutout service base URL of --survey (default: its "
                   "own)")
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
