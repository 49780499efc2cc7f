"""The surveys that serve templates, their footprints and depths, and the order in which
``--template auto`` asks them.

Depth table: typical 5-sigma point-source depth (AB mag) of the image a template is cut from.
PS1: 3pi stacks (Chambers et al. 2016). Legacy Survey: DR10 coadds, median over the footprint
(DECaLS/DES area; BASS/MzLS in the north are similar). DES: DR1 coadds, the 10-sigma depths
of Abbott et al. (2018) plus 0.75 mag. SkyMapper: one DR4 Main Survey exposure (100 s), the
deepest single image it serves. The numbers only order the surveys; the result reports the
template's own measured depth (``template_limiting_mag``).

Order for a band at a position: surveys serving the band itself, deepest first; then those
serving only a neighbouring band (nearest effective wavelength first, within
``MAX_SUBSTITUTION_NM``), deepest first — the result says which band was used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from skyphot.errors import TemplateCoverageError, TemplateError
from skyphot.templates.ps1 import PS1_URL, fetch_ps1
from skyphot.templates.service import Survey
from skyphot.templates.skymapper import SKYMAPPER_URL, fetch_skymapper
from skyphot.templates.viewer import VIEWER_URL, fetch_viewer

SURVEYS: dict[str, Survey] = {
    "ps1": Survey(
        name="ps1", title="Pan-STARRS1", bands=("g", "r", "i", "z", "y"),
        depth={"g": 23.3, "r": 23.2, "i": 23.1, "z": 22.3, "y": 21.4},
        dec_min=-30.0, dec_max=90.0, pixel_scale=0.25, max_size_px=6000, url=PS1_URL,
        fetcher=fetch_ps1, unit="linear counts of the PS1 stack (asinh scaling undone)",
        epoch_mjd=55900.0,
    ),
    "legacy": Survey(
        name="legacy", title="Legacy Survey", bands=("g", "r", "i", "z"),
        depth={"g": 24.7, "r": 24.1, "i": 23.6, "z": 23.2},
        dec_min=-70.0, dec_max=84.0, min_abs_galactic_lat=15.0, band_dec_max={"i": 32.0},
        pixel_scale=0.262, max_size_px=3000, url=VIEWER_URL, fetcher=fetch_viewer,
        unit="nanomaggies (AB zero point 22.5)", zero_point=22.5, layer="ls-dr10",
        epoch_mjd=58400.0,
    ),
    "des": Survey(
        name="des", title="DES", bands=("g", "r", "i", "z", "y"),
        depth={"g": 25.1, "r": 24.8, "i": 24.2, "z": 23.4, "y": 22.2},
        dec_min=-68.0, dec_max=6.0, min_abs_galactic_lat=20.0, ra_ranges=((300.0, 360.0),
                                                                        (0.0, 100.0)),
        pixel_scale=0.263, max_size_px=3000, url=VIEWER_URL, fetcher=fetch_viewer,
        unit="DES coadd counts (zero point 30)", zero_point=30.0, layer="des-dr1",
        epoch_mjd=57100.0,
    ),
    "skymapper": Survey(
        name="skymapper", title="SkyMapper", bands=("u", "v", "g", "r", "i", "z"),
        depth={"u": 19.7, "v": 19.9, "g": 21.5, "r": 21.3, "i": 20.8, "z": 20.0},
        dec_min=-90.0, dec_max=2.0, pixel_scale=0.5, max_size_px=1224, url=SKYMAPPER_URL,
        fetcher=fetch_skymapper, unit="counts of one exposure (ZPAPPROX: AB zero point)",
    ),
}

# Effective wavelengths (nm) of skyphot's bands and the survey bands, for substitution.
WAVELENGTH_NM = {
    "u": 355, "U": 365, "v": 384, "BT": 420, "B": 440, "g": 475, "BP": 510, "VT": 530,
    "V": 550, "G": 620, "r": 620, "R": 650, "i": 760, "RP": 780, "I": 800, "z": 900,
    "y": 980, "J": 1250, "H": 1650, "K": 2200,
}
MAX_SUBSTITUTION_NM = 160


@dataclass(frozen=True)
class Candidate:
    """One survey to ask, in which of its bands, for a template in ``requested``."""

    survey: Survey
    band: str
    requested: str

    @property
    def substituted(self) -> bool:
        """True when the survey band is not the requested one."""
        return self.band != self.requested

    def note(self) -> str | None:
        """The substitution in words (None when the band is the requested one)."""
        if not self.substituted:
            return None
        return (f"no {self.survey.title} {self.requested} image: the nearest band {self.band} "
                "is used")


def galactic_latitude(ra: float, dec: float) -> float:
    """|b| in degrees of an ICRS position (J2000 pole; close enough for a footprint)."""
    ra_p, dec_p = math.radians(192.85948), math.radians(27.12825)
    a, d = math.radians(ra), math.radians(dec)
    sin_b = math.sin(d) * math.sin(dec_p) + math.cos(d) * math.cos(dec_p) * math.cos(a - ra_p)
    return abs(math.degrees(math.asin(max(-1.0, min(1.0, sin_b)))))


def outside(survey: Survey, ra: float, dec: float, band: str) -> str | None:
    """Why (ra, dec) in ``band`` is outside the survey's footprint; None when inside."""
    if not survey.dec_min <= dec <= survey.dec_max:
        return f"covers Dec {survey.dec_min:+g} to {survey.dec_max:+g} only"
    top = survey.band_dec_max.get(band)
    if top is not None and dec > top:
        return f"has {band} only south of Dec {top:+g}"
    if survey.ra_ranges and not any(lo <= ra % 360.0 <= hi for lo, hi in survey.ra_ranges):
        return "does not reach this right ascension"
    if galactic_latitude(ra, dec) < survey.min_abs_galactic_lat:
        return f"avoids the Galactic plane (|b| < {survey.min_abs_galactic_lat:g})"
    return None


def _nearest(survey: Survey, band: str) -> str | None:
    if band in survey.bands:
        return band
    wl = WAVELENGTH_NM.get(band)
    if wl is None:
        return None
    best = min(survey.bands, key=lambda b: abs(WAVELENGTH_NM[b] - wl))
    return best if abs(WAVELENGTH_NM[best] - wl) <= MAX_SUBSTITUTION_NM else None


def with_urls(urls: Mapping[str, str]) -> dict[str, Survey]:
    """The surveys with their service base URLs replaced where ``urls`` names one."""
    unknown = sorted(set(urls) - set(SURVEYS))
    if unknown:
        raise TemplateError(
            f"template service URL given for unknown survey(s) {', '.join(unknown)}; the "
            f"surveys are {', '.join(SURVEYS)}"
        )
    empty = sorted(name for name, url in urls.items() if not url.strip())
    if empty:
        raise TemplateError(f"template service URL of {', '.join(empty)} is empty; give a URL "
                            "or leave the survey out to use its own service")
    return {name: replace(s, url=urls[name]) if name in urls else s
            for name, s in SURVEYS.items()}


def plan(
    band: str,
    ra: float,
    dec: float,
    *,
    survey: str | None = None,
    urls: Mapping[str, str] | None = None,
) -> list[Candidate]:
    """The surveys to ask for a template in ``band`` at (ra, dec), best first (see the
    module docstring). Raises ``TemplateError`` for an unknown survey and
    ``TemplateCoverageError`` when no survey covers the position in a usable band."""
    surveys = with_urls(urls or {})
    if survey is not None and survey not in surveys:
        raise TemplateError(
            f"template survey {survey!r} is not served; choose one of {', '.join(surveys)} "
            "or give a template file (skyphot template import)"
        )
    names = [survey] if survey is not None else list(surveys)
    exact: list[Candidate] = []
    near: list[Candidate] = []
    why: list[str] = []
    for name in names:
        info = surveys[name]
        sband = _nearest(info, band)
        if sband is None:
            why.append(f"{info.title} has no band near {band}")
            continue
        reason = outside(info, ra, dec, sband)
        if reason is not None:
            why.append(f"{info.title} {reason}")
            continue
        (exact if sband == band else near).append(Candidate(info, sband, band))
    exact.sort(key=lambda c: -c.survey.depth[c.band])
    wl = WAVELENGTH_NM.get(band, 0)
    near.sort(key=lambda c: (abs(WAVELENGTH_NM[c.band] - wl), -c.survey.depth[c.band]))
    found = exact + near
    if not found:
        raise TemplateCoverageError(
            f"no survey serves a template in band {band} at ({ra:.5f}, {dec:+.5f}): "
            f"{'; '.join(why)}; give a template file or import one (skyphot template import)"
        )
    return found
