"""Map a filter name as written in headers and forms to a catalog band and a colour.

Rules (documented for users):

* A bare letter keeps its case: ``r`` is SDSS/PS1 r, ``R`` is Cousins R; ``i``/``I``,
  ``u``/``U`` likewise. ``g`` is SDSS g, ``G`` is Gaia G (the catalog band naming of
  ``skyphot.catalogs.columns``). ``b``/``v`` have no Sloan counterpart and mean B/V.
* Prefixes fix the system whatever the case: ``sdss``/``sloan``/``ztf``/``ps1``/``lsst``/
  ``decam`` → Sloan-like lowercase band, ``johnson``/``bessell``/``cousins`` → uppercase.
  A prime or ``p`` suffix (``r'``, ``rp``) means Sloan; a ``c`` suffix (``Rc``, ``R_c``, ``Ic``)
  means Cousins.
* Unfiltered (``clear``, ``C``, ``L``, ``lum``, ``luminance``, ``none``, ``open``, ...) is
  calibrated to **r** (Sloan/PS1, AB) with colour g-r: a bare CCD's response peaks near r, and
  r is served by every catalog skyphot queries; the colour term absorbs the broad response.
* Colour for the colour term: g-r for u/g/r, r-i for i/z, i-z for y, B-V for U/B/V, **V-I**
  for R and I (the longer baseline has the smaller relative error, and one pair serves both
  bands), J-K for J/H/K, BP-RP for Gaia G/BP/RP, BT-VT for Tycho.
* Narrow-band filters (H-alpha, [OIII], [SII]) and anything else unknown raise
  ``UnknownFilterError``; give the band explicitly with ``overrides`` ({header name: band}).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from skyphot.errors import UnknownFilterError


@dataclass(frozen=True)
class FilterInfo:
    """The catalog band a filter is calibrated to, the colour for the colour term, and the
    photometric system (``"SDSS"``, ``"Johnson-Cousins"``, ``"2MASS"``, ``"Gaia"``,
    ``"Tycho"``). ``note`` says what was assumed (e.g. for unfiltered frames)."""

    band: str
    color_bands: tuple[str, str] | None
    system: str
    note: str = ""


_COLOR: dict[str, tuple[str, str]] = {
    "u": ("g", "r"), "g": ("g", "r"), "r": ("g", "r"),
    "i": ("r", "i"), "z": ("r", "i"), "y": ("i", "z"),
    "U": ("B", "V"), "B": ("B", "V"), "V": ("B", "V"),
    "R": ("V", "I"), "I": ("V", "I"),
    "J": ("J", "K"), "H": ("J", "K"), "K": ("J", "K"),
    "G": ("BP", "RP"), "BP": ("BP", "RP"), "RP": ("BP", "RP"),
    "BT": ("BT", "VT"), "VT": ("BT", "VT"),
}

_SYSTEM: dict[str, str] = {
    **dict.fromkeys("ugrizy", "SDSS"),
    **dict.fromkeys("UBVRI", "Johnson-Cousins"),
    **dict.fromkeys("JHK", "2MASS"),
    **dict.fromkeys(("G", "BP", "RP"), "Gaia"),
    **dict.fromkeys(("BT", "VT"), "Tycho"),
}

UNFILTERED_BAND = "r"
_UNFILTERED_NOTE = (
    "unfiltered frame calibrated to Sloan/PS1 r (AB) with a g-r colour term; the result is "
    "an r-equivalent magnitude"
)
_UNFILTERED = {
    "clear", "c", "l", "lum", "luminance", "none", "open", "unfiltered", "nofilter",
    "empty", "clr", "cl", "w", "white", "blank",
}

# Names after lower-casing and removing separators (space - _ . ' ` ′ ’).
_WORDS: dict[str, str] = {
    "gaiag": "G", "gaiabp": "BP", "gaiarp": "RP", "gbp": "BP", "grp": "RP",
    "tychob": "BT", "tychov": "VT", "bt": "BT", "vt": "VT",
    "ks": "K", "kshort": "K", "2massj": "J", "2massh": "H", "2massk": "K", "2massks": "K",
    "red": "R", "blue": "B", "green": "V",
    "cv": "V", "cr": "R",  # AAVSO: unfiltered reduced to a V or R zero point
}
_NARROW = re.compile(r"^(h?alpha|ha|hα|h-?a|oiii|o3|sii|s2|hbeta|hb|nii|he?ii)")

_SLOAN_PREFIX = re.compile(r"^(sdss|sloan|ztf|ps1|panstarrs|lsst|decam|megacam|hsc|"
                           r"skymapper)")
_JC_PREFIX = re.compile(r"^(johnson|bessell|bessel|cousins|jc|bess|kron)")
_SEPARATORS = re.compile(r"[\s\-_.'`′’\"]+")

KNOWN_NAMES = (
    "u g r i z y (Sloan/PS1; also r', rp, sdssr, SDSS-r, ztfr, ZTF_r), U B V R I (also Rc, "
    "R_c, Ic, Bessell-V), J H K Ks, G BP RP (Gaia), BT VT (Tycho), clear/C/L/lum/luminance/"
    "none/open (unfiltered -> r), CV/CR (AAVSO)"
)


def _info(band: str, *, system: str | None = None, note: str = "") -> FilterInfo:
    return FilterInfo(band=band, color_bands=_COLOR.get(band), system=system or
                      _SYSTEM.get(band, "custom"), note=note)


def _from_letter(raw: str) -> str | None:
    """A bare band name, case kept (the column naming rule)."""
    if raw in _COLOR:
        return raw
    return {"b": "B", "v": "V", "Y": "y", "Z": "z", "j": "J", "h": "H", "k": "K"}.get(raw)


def _resolve(name: str) -> FilterInfo | None:
    raw = name.strip()
    compact = _SEPARATORS.sub("", raw)
    key = compact.lower()
    if key in _UNFILTERED:
        return _info(UNFILTERED_BAND, system="unfiltered", note=_UNFILTERED_NOTE)
    # a prime suffix means Sloan whatever the case (R' is r')
    if raw.endswith(("'", "′", "’")) and len(key) == 1 and key in "ugriz":
        return _info(key)
    letter = _from_letter(compact)
    if letter is not None:
        return _info(letter)
    if key in _WORDS:
        band = _WORDS[key]
        note = "AAVSO unfiltered with a V/R zero point" if key in ("cv", "cr") else ""
        return _info(band, note=note)
    for prefix, lower in ((_SLOAN_PREFIX, True), (_JC_PREFIX, False)):
        match = prefix.match(key)
        if match is None:
            continue
        rest = key[match.end():]
        rest = rest[:-1] if rest.endswith("p") and len(rest) == 2 else rest
        rest = rest[:-3] if rest.endswith("mag") else rest
        if len(rest) == 1 and rest in "ugrizy" and lower:
            return _info(rest)
        if len(rest) in (1, 2) and rest[0] in "ubvri" and not lower and rest[1:] in ("", "c"):
            return _info(rest[0].upper())
        return None
    if len(key) == 2 and key[1] == "p" and key[0] in "ugriz":
        return _info(key[0])  # rp = r prime
    if len(key) == 2 and key[1] == "c" and key[0] in "ri":
        return _info(key[0].upper())  # Rc, Ic: Cousins
    if len(key) == 2 and key[1] == "j" and key[0] in "ubv":
        return _info(key[0].upper())  # Vj, Bj: Johnson
    return None


def resolve_filter(name: str, *, overrides: Mapping[str, str] | None = None) -> FilterInfo:
    """The catalog band and colour for filter ``name`` (see the module rules).

    ``overrides`` maps a filter name (matched exactly, then ignoring case and separators)
    to a band; an override's colour is the band's usual one. Raises ``UnknownFilterError``
    listing the known names and how to override.
    """
    if overrides:
        key = _SEPARATORS.sub("", name.strip()).lower()
        band = overrides.get(name)
        if band is None:
            band = next((b for f, b in overrides.items()
                         if _SEPARATORS.sub("", f.strip()).lower() == key), None)
        if band is not None:
            return _info(band, note=f"band {band!r} given for filter {name!r}")
    info = _resolve(name)
    if info is not None:
        return info
    compact = _SEPARATORS.sub("", name.strip()).lower()
    why = (
        "it is a narrow-band filter, which no broad-band catalog calibrates"
        if _NARROW.match(compact) else "the name is not known"
    )
    raise UnknownFilterError(
        f"Cannot calibrate filter {name!r}: {why}. Known filter names: {KNOWN_NAMES}. "
        f"Say which catalog band to use, e.g. set calibration.band (or --band) to 'r', or "
        f"pass overrides={{{name!r}: 'r'}}."
    )
