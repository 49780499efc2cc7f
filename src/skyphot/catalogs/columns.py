"""Recognise the coordinate, magnitude and error columns of a catalog table.

Band naming rule (the case of a band token matters, the decoration around it does not):

* lowercase ``u g r i z y`` — SDSS / Pan-STARRS-like bands (AB);
* uppercase ``U B V R I`` — Johnson-Cousins;
* ``J H K`` — 2MASS (``Ks`` is read as ``K``);
* ``G BP RP`` — Gaia broad bands; ``BT VT`` — Tycho-2.

So ``rmag`` and ``r_err`` are SDSS r, ``Rmag`` and ``e_Rmag`` Cousins R, ``Gmag`` Gaia G and
``gmag`` SDSS g. Decorations (``mag``, ``_mag``, ``'mag``, ``MeanPSFMag``, ``e_``, ``_err``,
``err_``, ``Err``, ``d``...) are matched case-insensitively. Gaia archive names
(``phot_g_mean_mag``, ``phot_bp_mean_mag``, ``phot_rp_mean_mag``) are recognised as G, BP, RP
and their errors derived from ``phot_*_mean_flux_over_error`` when present.

A column is taken as a magnitude only if its finite values look like magnitudes (median
between -10 and 40), so pixel columns such as ``y`` are not mistaken for PS1 y.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, partial

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray

from skyphot.errors import ConfigError

BANDS: tuple[str, ...] = (
    "u", "g", "r", "i", "z", "y",
    "U", "B", "V", "R", "I",
    "J", "H", "K",
    "G", "BP", "RP",
    "BT", "VT",
)
"""Every band name recognised automatically, in the order catalogs list them."""

COORD_PAIRS: tuple[tuple[str, str], ...] = (
    ("ra", "dec"), ("ra_icrs", "de_icrs"), ("ra_icrs", "dec_icrs"), ("raj2000", "dej2000"),
    ("_raj2000", "_dej2000"), ("ra_deg", "dec_deg"), ("radeg", "dedeg"), ("radeg", "decdeg"),
    ("ra_j2000", "dec_j2000"), ("ra_j2000", "de_j2000"), ("raj2000", "decj2000"),
    ("ra2000", "dec2000"), ("ra2000", "de2000"), ("alpha_j2000", "delta_j2000"),
    ("alphawin_j2000", "deltawin_j2000"), ("ramean", "decmean"), ("ra", "de"),
    ("right_ascension", "declination"), ("alpha", "delta"), ("_ra", "_dec"), ("_ra", "_de"),
)
"""Recognised (RA, Dec) column names, lowercase, best first; each pair is tried together."""

RA_NAMES: tuple[str, ...] = tuple(dict.fromkeys(r for r, _ in COORD_PAIRS))
DEC_NAMES: tuple[str, ...] = tuple(dict.fromkeys(d for _, d in COORD_PAIRS))

_BAND_ALT = {"K": ("K", "Ks", "KS")}  # 2MASS writes Ks; read it as K

# Magnitude column patterns, best first. "{b}" is the band token, matched case-sensitively;
# everything else is wrapped in (?i:...) so the decoration is case-insensitive.
_MAG_PATTERNS: tuple[str, ...] = (
    r"{b}(?i:meanpsfmag)",
    r"{b}",
    r"{b}(?i:'?_?mag)",
    r"(?i:mag_?){b}",
    r"(?i:psfmag_){b}",
    r"{b}(?i:_?psf(?:_?mag)?)",
    r"(?i:sdss_?|ps1_?|sm_?){b}(?i:_?mag)?",
    r"{b}(?i:_?mag_?(?:auto|best|psf|ab|vega))",
)

# Error patterns for a band, best first.
_ERR_PATTERNS: tuple[str, ...] = (
    r"{b}(?i:meanpsfmagerr)",
    r"(?i:e_){b}(?i:'?_?mag)",
    r"(?i:e_){b}",
    r"{b}(?i:'?_?(?:mag_?)?(?:err|error|sig|sigma))",
    r"(?i:err_?(?:mag_?)?){b}",
    r"(?i:sig(?:ma)?_?){b}",
    r"(?i:psfmagerr_){b}",
    r"(?i:e_?mag_?){b}",
    r"{b}(?i:_?psf_?(?:mag_?)?err)",
    r"(?i:d){b}",
)

# Error names derived from the magnitude column's own name, best first ("{c}" = that name).
_ERR_FROM_NAME: tuple[str, ...] = (
    r"{c}(?i:_?err(?:or)?)",
    r"(?i:e_?){c}",
    r"(?i:err_?){c}",
    r"(?i:sig(?:ma)?_?){c}",
    r"{c}(?i:_?sig(?:ma)?)",
)

_GAIA_NAMES = {"G": "g", "BP": "bp", "RP": "rp"}

MAG_RANGE = (-10.0, 40.0)
"""Median of a magnitude column must fall in this range (mag) for the column to count."""

SENTINEL_ABS_MAG = 50.0
"""Magnitudes with |m| >= this are "no value" markers (99, -99, 99.99, 999) and become NaN."""

SENTINEL_ERR = 9.0
"""Errors >= this (9.999, 99) or <= 0 (APASS writes 0.000 for unknown) become NaN."""


@dataclass(frozen=True)
class ColumnMap:
    """Which file column holds what. ``mags``/``errs`` map band -> file column name.

    ``err_from_flux_over_error`` maps band -> a Gaia-style flux-over-error column from which
    the magnitude error is derived (2.5/ln 10 / (flux/err)).
    """

    ra: str | None
    dec: str | None
    mags: dict[str, str] = field(default_factory=dict)
    errs: dict[str, str] = field(default_factory=dict)
    err_from_flux_over_error: dict[str, str] = field(default_factory=dict)


def parse_columns(text: str | None) -> dict[str, str]:
    """Parse ``ra=RA_deg,dec=DE_deg,r=rPSF`` (the ``--catalog-columns`` option) into a mapping."""
    if not text:
        return {}
    mapping: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(
                f"--catalog-columns item {item!r} is not NAME=COLUMN (e.g. ra=RA_deg,r=rPSF)"
            )
        mapping[key.strip()] = value.strip()
    return mapping


def _anchored(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + pattern + "$")


@cache
def _slot_regexes(patterns: tuple[str, ...], slot: str) -> tuple[re.Pattern[str], ...]:
    """Each of ``patterns`` compiled once, whatever the text in its ``slot`` (see ``_fits``).

    The slot (a band token, a column name) becomes a backreference to a ``TEXT\\0`` prefix
    of the subject, so one regex serves every band: compiling one per band and pattern cost
    each fresh process ~10 ms, more than the whole recognition.
    """
    return tuple(
        re.compile("(?P<slot>[^\\0]*)\\0" + p.replace(slot, "(?P=slot)")) for p in patterns
    )


def _fits(regex: re.Pattern[str], text: str, name: str) -> bool:
    """True if column ``name`` matches ``regex`` with ``text`` in its slot."""
    return regex.fullmatch(f"{text}\0{name}") is not None


def _band_tests(patterns: tuple[str, ...], band: str) -> list[Callable[[str], object]]:
    """Tests of a column name against ``patterns`` for ``band``, best first."""
    tokens = _BAND_ALT.get(band, (band,))
    return [partial(_fits, regex, tok) for regex in _slot_regexes(patterns, "{b}")
            for tok in tokens]


def to_float(column: object) -> NDArray[np.float64]:
    """Any column (masked, integer, text) as a float64 array; unparseable/masked -> NaN."""
    data: np.ma.MaskedArray = np.ma.asarray(column)
    if data.dtype.kind in "fiub":
        return np.asarray(np.ma.filled(data.astype(np.float64), np.nan), dtype=np.float64)
    mask = np.ma.getmaskarray(data)
    out = np.full(data.shape, np.nan, dtype=np.float64)
    for index, (value, masked) in enumerate(zip(np.ma.getdata(data), mask, strict=True)):
        if masked:
            continue
        text = value.decode() if isinstance(value, bytes) else str(value)
        try:
            out[index] = float(text.strip())
        except ValueError:
            continue  # blank, "NA", "--": a missing value, by design NaN
    return out


def clean_magnitudes(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Copy of ``values`` with non-finite and sentinel magnitudes set to NaN."""
    out = np.array(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out[~np.isfinite(out) | (np.abs(out) >= SENTINEL_ABS_MAG)] = np.nan
    return out


def clean_errors(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Copy of ``values`` with missing, non-positive and sentinel errors set to NaN."""
    out = np.array(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out[~np.isfinite(out) | (out <= 0) | (out >= SENTINEL_ERR)] = np.nan
    return out


def _looks_like_magnitudes(table: Table, column: str) -> bool:
    """True if the column holds plausible magnitudes (or only missing values)."""
    col = table[column]
    values = clean_magnitudes(to_float(col))
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        # an all-missing numeric band is still that band; unparseable text is not a band
        return bool(col.dtype.kind in "fiu")
    median = float(np.median(finite))
    return MAG_RANGE[0] <= median <= MAG_RANGE[1]


def find_coordinates(
    table: Table, candidates: Sequence[str] | None = None
) -> tuple[str | None, str | None]:
    """The RA and Dec column names (by name, then by VizieR UCD); None where not found.

    Only ``candidates`` (default: all columns) are considered. Names match
    case-insensitively; a consistent pair (``RA_ICRS``/``DE_ICRS``) is preferred.
    """
    names = list(table.colnames if candidates is None else candidates)
    lower: dict[str, str] = {}
    for name in names:
        lower.setdefault(name.lower(), name)
    for ra_name, dec_name in COORD_PAIRS:
        if ra_name in lower and dec_name in lower:
            return lower[ra_name], lower[dec_name]
    ra = next((lower[n] for n in RA_NAMES if n in lower), None)
    dec = next((lower[n] for n in DEC_NAMES if n in lower), None)
    if ra is None:
        ra = _find_by_ucd(table, names, "ra")
    if dec is None:
        dec = _find_by_ucd(table, names, "dec")
    return ra, dec


def _find_by_ucd(table: Table, names: Sequence[str], axis: str) -> str | None:
    """VizieR tables label the main position with UCD ``pos.eq.ra;meta.main`` (or the
    older ``POS_EQ_RA_MAIN``)."""
    wanted = {f"pos.eq.{axis};meta.main", f"pos.eq.{axis}.main"}
    for name in names:
        ucd = str(table[name].meta.get("ucd", "")).lower().replace("_", ".")
        if ucd in wanted:
            return name
    return None


def recognise_columns(
    table: Table, *, columns: Mapping[str, str] | None = None
) -> ColumnMap:
    """Map normalised names (``ra``, ``dec``, band, ``band_err``) to the table's columns.

    ``columns`` (normalised name -> file column) overrides recognition; file columns named
    there are not recognised again under another name. A mapped file column is looked up
    exactly first, then case-insensitively. Raises ``KeyError`` whose text names a mapped
    column that does not exist (the caller turns it into a ``CatalogError``).
    """
    colnames = list(table.colnames)
    resolved: dict[str, str] = {}
    for key, wanted in (columns or {}).items():
        if wanted in colnames:
            resolved[key] = wanted
            continue
        matches = [c for c in colnames if c.lower() == wanted.lower()]
        if len(matches) != 1:
            raise KeyError(f"{key!r} -> {wanted!r}")
        resolved[key] = matches[0]
    free = [c for c in colnames if c not in set(resolved.values())]

    ra, dec = resolved.get("ra"), resolved.get("dec")
    if ra is None or dec is None:
        auto_ra, auto_dec = find_coordinates(table, free)
        ra = ra or auto_ra
        dec = dec or auto_dec
    free = [c for c in free if c not in (ra, dec)]

    mags = {k: v for k, v in resolved.items() if k not in ("ra", "dec") and not
            k.endswith("_err")}
    errs = {k[: -len("_err")]: v for k, v in resolved.items() if k.endswith("_err")}
    has_x = any(c.lower() == "x" for c in colnames)
    for band in BANDS:
        if band in mags:
            continue
        found = _auto_magnitude(table, free, band, has_x=has_x)
        if found is not None:
            mags[band] = found
            free.remove(found)

    foe: dict[str, str] = {}
    for band, mag_col in mags.items():
        if band in errs:
            continue
        err = _error_named_after(free, mag_col) or _auto_error(free, band)
        if err is not None:
            errs[band] = err
            free.remove(err)
            continue
        gaia = _GAIA_NAMES.get(band)
        if gaia is not None:
            foe_col = next((c for c in free
                            if c.lower() == f"phot_{gaia}_mean_flux_over_error"), None)
            if foe_col is not None:
                foe[band] = foe_col
    return ColumnMap(ra=ra, dec=dec, mags=mags, errs=errs, err_from_flux_over_error=foe)


def _auto_magnitude(table: Table, free: Sequence[str], band: str, *, has_x: bool) -> str | None:
    tests = _band_tests(_MAG_PATTERNS, band)
    gaia = _GAIA_NAMES.get(band)
    if gaia is not None:
        tests.insert(0, _anchored(f"(?i:phot_{gaia}_mean_mag)").match)
    for test in tests:
        for name in free:
            if not test(name):
                continue
            if band == "y" and name == "y" and has_x:
                continue  # a pixel coordinate beside "x", not PS1 y
            if _looks_like_magnitudes(table, name):
                return name
    return None


def _error_named_after(free: Sequence[str], mag_column: str) -> str | None:
    for regex in _slot_regexes(_ERR_FROM_NAME, "{c}"):
        for name in free:
            if _fits(regex, mag_column, name):
                return name
    return None


def _auto_error(free: Sequence[str], band: str) -> str | None:
    for test in _band_tests(_ERR_PATTERNS, band):
        for name in free:
            if test(name):
                return name
    return None
