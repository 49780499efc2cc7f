"""``--template auto``: a survey template from the cache, else from the cutout service."""

from __future__ import annotations

import math

from skyphot.pipeline.config import SubtractionConfig
from skyphot.templates.cache import TemplateCache
from skyphot.templates.service import choose_survey, fetch_ps1

# Cached templates must hold this fraction of the wanted half-size around the target.
_COVER_FRACTION = 0.9


def auto_template(
    sub: SubtractionConfig, *, ra: float, dec: float, band: str, size_arcsec: float
) -> tuple[str, str, str | None]:
    """(path, label, band note) of a survey template in ``band`` covering ``size_arcsec``
    around (ra, dec). Raises ``TemplateError`` or ``TemplateServiceError``."""
    survey, sband, note = choose_survey(band, dec, sub.survey)
    cache = TemplateCache(sub.cache_dir)
    size_px = min(math.ceil(size_arcsec / survey.pixel_scale), survey.max_size_px)
    hit = cache.find(ra, dec, sband, survey=survey.name,
                     min_margin_px=_COVER_FRACTION * size_px / 2)
    if hit is not None:
        return str(hit.path), f"{survey.name} {sband} (cache: {hit.path.name})", note
    fetched = fetch_ps1(ra, dec, sband, size_px, base_url=sub.service_url or survey.url,
                        timeout=sub.timeout_s, retries=sub.retries)
    stored = cache.store(fetched, survey=survey.name, band=sband, ra=ra, dec=dec, size_px=size_px)
    fetched.unlink(missing_ok=True)
    label = f"{survey.name} {sband} cutout {size_px} px at ({ra:.5f}, {dec:+.5f})"
    return str(stored.path), label, note
