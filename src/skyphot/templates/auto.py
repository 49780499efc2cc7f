"""``--template auto``: the best survey template of the target, from the cache or a service.

Order: first the cache — templates imported by hand (any survey name skyphot does not serve,
'local' by default) in the frame's band, then each planned survey's cached cutouts in plan
order (``skyphot.templates.surveys.plan``: the deepest survey serving the band first, then
nearest-band substitutes) — and only then the services in the same order, falling back to
the next when one is down or has no image there. The first image found is stored in the
cache, so the next frame of the field needs no request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from skyphot.errors import TemplateCoverageError, TemplateServiceError
from skyphot.templates.cache import TemplateCache
from skyphot.templates.service import FetchRequest
from skyphot.templates.surveys import SURVEYS, Candidate, plan

# A cached template is used when the target is at least this far inside it; the subtraction
# masks whatever part of the region it does not cover.
_COVER_ARCSEC = 60.0


@dataclass(frozen=True)
class AutoTemplate:
    """The template chosen for a frame and how it was found."""

    path: Path
    label: str
    survey: str
    band: str
    substituted: bool
    note: str | None
    cached: bool


def _notes(*parts: str | None) -> str | None:
    text = "; ".join(p for p in parts if p)
    return text or None


def _from_cache(
    cache: TemplateCache, cands: list[Candidate], ra: float, dec: float, band: str,
    *, imports: bool, margin: float,
) -> AutoTemplate | None:
    if imports and cache.root.is_dir():
        own = sorted(p.name for p in cache.root.iterdir() if p.is_dir() and p.name not in SURVEYS)
        for name in own:
            hit = cache.find(ra, dec, band, survey=name, min_margin_arcsec=margin)
            if hit is not None:
                return AutoTemplate(hit.path, f"{name} {band} (cache: {hit.path.name})", name,
                                    band, False, None, True)
    for cand in cands:
        hit = cache.find(ra, dec, cand.band, survey=cand.survey.name,
                         min_margin_arcsec=margin)
        if hit is not None:
            label = f"{cand.survey.title} {cand.band} (cache: {hit.path.name})"
            return AutoTemplate(hit.path, label, cand.survey.name, cand.band, cand.substituted,
                                cand.note(), True)
    return None


def auto_template(
    *,
    ra: float,
    dec: float,
    band: str,
    size_arcsec: float,
    survey_name: str | None = None,
    cache_dir: str | None = None,
    urls: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    retries: int = 3,
    cover_arcsec: float = _COVER_ARCSEC,
) -> AutoTemplate:
    """A survey template in ``band`` (or the nearest band) covering ``size_arcsec`` around
    (ra, dec). Raises ``TemplateError`` (no survey serves the band there, unknown survey),
    ``TemplateCoverageError`` (every service answered, none has an image) or
    ``TemplateServiceError`` naming every service that failed. A cached template counts
    when the target is ``cover_arcsec`` inside it."""
    cands = plan(band, ra, dec, survey=survey_name, urls=urls)
    cache = TemplateCache(cache_dir)
    hit = _from_cache(cache, cands, ra, dec, band, imports=survey_name is None,
                     margin=cover_arcsec)
    if hit is not None:
        return hit
    failed: list[str] = []
    down = False
    for cand in cands:
        survey = cand.survey
        size_px = min(math.ceil(size_arcsec / survey.pixel_scale), survey.max_size_px)
        request = FetchRequest(ra=ra, dec=dec, band=cand.band, size_px=size_px,
                               base_url=survey.url, timeout=timeout, retries=retries)
        try:
            fetched = survey.fetch(request)
        except TemplateServiceError as err:
            failed.append(str(err))
            down = True
            continue
        except TemplateCoverageError as err:
            failed.append(str(err))
            continue
        try:
            stored = cache.store(fetched, survey=survey.name, band=cand.band, ra=ra, dec=dec,
                                 size_px=size_px)
        finally:
            fetched.unlink(missing_ok=True)
            fetched.parent.rmdir()
        label = f"{survey.title} {cand.band} cutout {size_px} px at ({ra:.5f}, {dec:+.5f})"
        skipped = f"deeper surveys skipped: {'; '.join(failed)}" if failed else None
        return AutoTemplate(stored.path, label, survey.name, cand.band, cand.substituted,
                            _notes(cand.note(), skipped), False)
    where = f"band {band} at ({ra:.5f}, {dec:+.5f})"
    if down:
        raise TemplateServiceError(
            f"no survey template for {where}: {'; '.join(failed)}; try again later, or give a "
            "template file"
        )
    raise TemplateCoverageError(
        f"no survey has a template for {where}: {'; '.join(failed)}; give a template file"
    )
