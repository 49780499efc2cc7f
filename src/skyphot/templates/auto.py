"""``--template auto``: a survey template from the cache, else from the cutout service."""

from __future__ import annotations

import math

from skyphot.templates.cache import TemplateCache
from skyphot.templates.service import choose_survey, fetch_ps1

# A cached template is used when the target is at least this far inside it; the subtraction
# masks whatever part of the region it does not cover.
_COVER_ARCSEC = 60.0


def auto_template(
    *,
    ra: float,
    dec: float,
    band: str,
    size_arcsec: float,
    survey_name: str | None = None,
    cache_dir: str | None = None,
    service_url: str | None = None,
    timeout: float = 60.0,
    retries: int = 3,
) -> tuple[str, str, str | None]:
    """(path, label, band note) of a survey template in ``band`` covering ``size_arcsec``
    around (ra, dec). Raises ``TemplateError`` or ``TemplateServiceError``."""
    survey, sband, note = choose_survey(band, dec, survey_name)
    cache = TemplateCache(cache_dir)
    size_px = min(math.ceil(size_arcsec / survey.pixel_scale), survey.max_size_px)
    hit = cache.find(ra, dec, sband, survey=survey.name,
                     min_margin_arcsec=_COVER_ARCSEC)
    if hit is not None:
        return str(hit.path), f"{survey.name} {sband} (cache: {hit.path.name})", note
    fetched = fetch_ps1(ra, dec, sband, size_px, base_url=service_url or survey.url,
                        timeout=timeout, retries=retries)
    stored = cache.store(fetched, survey=survey.name, band=sband, ra=ra, dec=dec, size_px=size_px)
    fetched.unlink(missing_ok=True)
    label = f"{survey.name} {sband} cutout {size_px} px at ({ra:.5f}, {dec:+.5f})"
    return str(stored.path), label, note
