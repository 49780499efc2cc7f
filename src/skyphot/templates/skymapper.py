"""SkyMapper DR4 images (u v g r i z, southern sky) through its Simple Image Access service.

Two steps: ``query?POS=ra,dec&SIZE=deg&BAND=b&FORMAT=image/fits&INTERSECT=covers&
RESPONSEFORMAT=CSV`` lists the images covering the whole square (one CSV row per CCD image:
``band``, ``image_type`` main/short, ``exptime``, ``mean_fwhm``, ``zpapprox``, and the
``get_image`` URL that cuts that square out of it); the chosen URL answers the FITS cutout.
SkyMapper serves single exposures, not stacks, so the deepest row is taken: a Main Survey
image (``image_type`` main) with the longest exposure, the best seeing among those. Cutouts
are at most 0.17 deg on a side. The images are in counts with an approximate AB zero point
(ZPAPPROX); the engine calibrates them against the catalog itself.
"""

from __future__ import annotations

import csv
import io
import math
import urllib.parse
from pathlib import Path

from skyphot.errors import TemplateCoverageError, TemplateServiceError
from skyphot.templates.service import FetchRequest, Survey, http_get, read_image, write_template

SKYMAPPER_URL = "https://api.skymapper.nci.org.au/public/siap/dr4"
MAX_SIZE_DEG = 0.17


def _number(row: dict[str, str], key: str, default: float) -> float:
    try:
        value = float(row.get(key) or "nan")
    except ValueError:
        return default
    return value if math.isfinite(value) else default


def choose_image(rows: list[dict[str, str]], band: str) -> dict[str, str] | None:
    """The deepest image of ``band`` among the SIAP rows (None: none in the band)."""
    mine = [r for r in rows if (r.get("band") or "").strip() == band and r.get("get_image")]
    if not mine:
        return None
    return max(mine, key=lambda r: (
        (r.get("image_type") or "").strip() == "main",
        _number(r, "exptime", 0.0),
        -_number(r, "mean_fwhm", 99.0),
    ))


def fetch_skymapper(survey: Survey, req: FetchRequest) -> Path:
    """The deepest SkyMapper image of ``req`` cut out, in a temporary file."""
    service = survey.service()
    size_deg = min(req.size_px * survey.pixel_scale / 3600.0, MAX_SIZE_DEG)
    query = urllib.parse.urlencode({
        "POS": f"{req.ra:.6f},{req.dec:.6f}", "SIZE": f"{size_deg:.4f}", "BAND": req.band,
        "FORMAT": "image/fits", "INTERSECT": "covers", "RESPONSEFORMAT": "CSV",
    })
    text = http_get(f"{req.base_url.rstrip('/')}/query?{query}", service=service,
                    timeout=req.timeout, retries=req.retries).decode(errors="replace")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if reader.fieldnames is not None and "get_image" not in reader.fieldnames:
        raise TemplateServiceError(
            f"the {service} answered a table without a get_image column; is the service URL "
            "a SkyMapper SIAP endpoint?"
        )
    row = choose_image(list(reader), req.band)
    if row is None:
        raise TemplateCoverageError(
            f"{survey.title} has no {req.band} image covering ({req.ra:.5f}, {req.dec:+.5f})"
        )
    body = http_get(row["get_image"].strip(), service=service, timeout=req.timeout,
                    retries=req.retries)
    data, header = read_image(body, service=service)
    zp = header.get("ZPAPPROX")
    zero_point = float(zp) if isinstance(zp, (int, float)) else None
    return write_template(data, header, survey=survey, band=req.band, ra=req.ra, dec=req.dec,
                          zero_point=zero_point)
