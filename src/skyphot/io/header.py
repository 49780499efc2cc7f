"""Normalise what a FITS header says about an observation, and get its celestial WCS.

Headers from real instruments disagree on keyword names, units and time conventions; this
module maps them onto :class:`~skyphot.io.frame.ObservationMeta`, says how each value was
obtained, and refuses (``HeaderError``) rather than guess a time or an exposure.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from astropy.coordinates import angular_separation
from astropy.io.fits import Header
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning, NoConvergence

from skyphot.errors import ConfigError, HeaderError, TargetOutsideFrameError, WCSError
from skyphot.io.frame import ObservationMeta
from skyphot.pipeline.config import HeaderOverrides

_EXPTIME_KEYS = ("EXPTIME", "EXPOSURE", "ITIME", "EXP_TIME", "TEXP", "EXPOS", "EXPTIM")
_FILTER_KEYS = (
    "FILTER",
    "FILTER1",
    "FILTER2",
    "FILTER3",
    "FILTNAME",
    "FILTNAM",
    "FILT",
    "FILT1",
    "FILT2",
    "FLTRNAME",
    "INSFLNAM",
    "FILTERID",
    "FILTID",
    "ESO INS FILT1 NAME",
    "ESO INS FILT2 NAME",
    "ESO INS FILT3 NAME",
)
_GAIN_KEYS = ("GAIN", "EGAIN", "GAINEFF", "GAIN_EFF", "EPADU", "CCDGAIN", "ESO DET OUT1 CONAD")
_GAIN_FAMILIES = ("ATODGN{}", "GAIN{}")  # per-amplifier values: their mean is used
_NOISE_KEYS = (
    "RDNOISE",
    "READNOIS",
    "RON",
    "READNOISE",
    "RDNOIS",
    "RNOISE",
    "ENOISE",
    "READ_NOISE",
    "ESO DET OUT1 RON",
)
_NOISE_FAMILIES = ("READNSE{}", "RDNOISE{}")
_AMPLIFIERS = ("A", "B", "C", "D", "1", "2", "3", "4")
_SATURATION_KEYS = ("SATURATE", "SATLEVEL", "SATURATION", "SATUR", "MAXLIN")
_TIME_OF_DAY_KEYS = (
    "TIME-OBS",
    "UT",
    "UTSTART",
    "UT-START",
    "UT_START",
    "UTC-OBS",
    "UTC",
    "TM-START",
    "TAIHMS",
)
_SECONDS_OF_DAY_KEYS = ("TM-START", "UTC")  # ESO/MIDAS write seconds since midnight here
_TIMESYS = {
    "UTC": "utc",
    "UT": "utc",
    "Z": "utc",
    "GMT": "utc",
    "UT1": "utc",
    "TAI": "tai",
    "IAT": "tai",
    "TT": "tt",
    "TDT": "tt",
    "ET": "tt",
    "TDB": "tdb",
    "GPS": "gps",
}
_NOT_A_FILTER = re.compile(r"^(clear|open|none|empty|blank|n/?a|no\s*filter)(\d*[a-z]?)?$")
_MJD_EPOCH = dt.date(1858, 11, 17).toordinal()
_TIME_MISMATCH_S = 2.0  # DATE-OBS is often rounded to whole seconds
_SOLVE_HINT = (
    "plate-solve the frame first (e.g. astrometry.net's solve-field) or choose "
    "astrometry method 'astrometry.net'"
)


class _UnusableTimeError(Exception):
    """A time keyword cannot be used, so the next source is tried. ``benign``: the header is
    not wrong (a date without time of day beside a precise MJD-OBS), so that needs no note."""

    def __init__(self, message: str, *, benign: bool = False) -> None:
        super().__init__(message)
        self.benign = benign


@dataclass(frozen=True)
class _ObsTime:
    mjd: float  # UTC
    source: str  # keywords used, e.g. "DATE-OBS + UT"
    mid: bool  # already mid-exposure
    scale: str = "utc"  # time scale the keywords were written in (converted to UTC)
    start_key: str = ""  # the start-time keyword, for messages and consistency checks


# --- public API -----------------------------------------------------------------------------


def normalise_header(header: Header, *, overrides: HeaderOverrides) -> ObservationMeta:
    """Observation metadata from a FITS header, with ``overrides`` taking precedence.

    Units: ``mjd`` is the mid-exposure MJD (UTC); ``exptime`` seconds; ``gain`` e-/ADU (or
    e- per data unit); ``read_noise`` e-; ``saturation`` in data units. Missing gain, read
    noise and saturation are assumed (1.0, 0.0, None) and listed in ``assumed``; a missing
    time or exposure is a ``HeaderError`` telling which option supplies it.
    """
    overridden: list[str] = []
    notes: list[str] = []

    exptime, exptime_key = _exptime(header, overrides, overridden, notes)
    if overrides.mjd is not None:
        obs = _ObsTime(float(overrides.mjd), "given with --mjd", mid=True)
        overridden.append("mjd")
    else:
        obs = _observation_time(header, notes)
    converted = "" if obs.scale == "utc" else f"; {obs.scale.upper()} converted to UTC"
    if obs.mid:
        mjd = obs.mjd
        source = f"{obs.source} (mid-exposure{converted})"
        if exptime is None:
            exptime = 0.0
            notes.append("exptime=0 s (no exposure-time keyword; the time is mid-exposure)")
    else:
        if exptime is None:
            raise HeaderError(
                f"no exposure time in the header (looked for {', '.join(_EXPTIME_KEYS)}) and "
                f"{obs.start_key} is the exposure start; give the exposure time with --exptime"
            )
        mjd = obs.mjd + exptime / 2.0 / 86400.0
        source = (
            f"{obs.source} + {exptime_key}/2 ({obs.start_key} taken as exposure start{converted})"
        )

    gain = _gain(header, overrides, exptime, overridden, notes)
    read_noise = _read_noise(header, overrides, overridden, notes)
    saturation = _saturation(header, overrides, overridden, notes)
    return ObservationMeta(
        mjd=mjd,
        mjd_source=source,
        exptime=exptime,
        filter=_pick("filter", overrides.filter, _filter(header), overridden),
        gain=gain,
        read_noise=read_noise,
        saturation=saturation,
        instrument=_pick("instrument", overrides.instrument, _text(header, "INSTRUME"), overridden),
        telescope=_pick("telescope", overrides.telescope, _text(header, "TELESCOP"), overridden),
        object_name=_text(header, "OBJECT") or _text(header, "TARGNAME"),
        overridden=tuple(overridden),
        assumed=tuple(notes),
    )


def celestial_wcs(header: Header, *, shape: tuple[int, int]) -> WCS:
    """The header's celestial WCS (with SIP/TPV distortion when present), pixel origin 0.

    ``shape`` is the image shape (ny, nx). Raises ``WCSError`` when the header has no usable
    celestial WCS: keywords missing, singular matrix, non-celestial axes.
    """
    problem = _wcs_keyword_problem(header)
    if problem:
        raise WCSError(f"no usable celestial WCS in the header: {problem}; {_SOLVE_HINT}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            full = WCS(header, relax=True)
        except (ValueError, KeyError, MemoryError) as exc:
            raise WCSError(
                f"the header WCS cannot be interpreted ({' '.join(str(exc).split())}); "
                f"{_SOLVE_HINT}"
            ) from exc
    if not full.has_celestial:
        ctypes = ", ".join(f"CTYPE{i}={header.get(f'CTYPE{i}')!r}" for i in (1, 2))
        raise WCSError(f"the header WCS is not celestial ({ctypes}); {_SOLVE_HINT}")
    wcs = full if full.naxis == 2 else full.celestial
    ny, nx = shape
    wcs.pixel_shape = (nx, ny)
    matrix = np.asarray(wcs.pixel_scale_matrix, dtype=float)
    det = float(np.linalg.det(matrix)) if matrix.shape == (2, 2) else math.nan
    # below ~1e-4 arcsec/px a CD matrix is degenerate, not a real pixel scale
    if not math.isfinite(det) or abs(det) < 1e-15:
        raise WCSError(
            f"the header WCS matrix is singular (CD/PC*CDELT determinant {det:.3g} deg^2); "
            f"{_SOLVE_HINT}"
        )
    try:
        centre = wcs.all_pix2world([[(nx - 1) / 2.0, (ny - 1) / 2.0]], 0)
    except (ValueError, NoConvergence) as exc:
        raise WCSError(
            f"the header WCS fails at the frame centre ({' '.join(str(exc).split())}); "
            f"{_SOLVE_HINT}"
        ) from exc
    if not np.all(np.isfinite(centre)):
        raise WCSError(f"the header WCS gives no sky position for the frame centre; {_SOLVE_HINT}")
    return wcs


def target_pixel(wcs: WCS, ra: float, dec: float, *, shape: tuple[int, int]) -> tuple[float, float]:
    """0-based (x, y) pixel position of (ra, dec) in degrees on a frame of shape (ny, nx).

    Raises ``TargetOutsideFrameError`` when the position is off the image (pixel centres at
    0..nx-1, so the image spans -0.5..nx-0.5) or behind the projection.
    """
    if not (math.isfinite(ra) and math.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise ConfigError(f"target position RA={ra}, Dec={dec} is not a valid sky position")
    ny, nx = shape
    world = np.zeros((1, 2))
    world[0, wcs.wcs.lng] = ra
    world[0, wcs.wcs.lat] = dec
    where = f"target RA={ra:.6f}, Dec={dec:.6f}"
    linear = wcs.wcs_world2pix(world, 0)[0]  # projection only: cheap, never diverges
    if not np.all(np.isfinite(linear)):
        raise TargetOutsideFrameError(
            f"{where} is not on this {nx}x{ny} frame: it lies behind the projection "
            "(on the far side of the sky from the field)"
        )
    margin = max(nx, ny)  # well outside: skip the distortion solve, which may diverge there
    if not (-margin <= linear[0] <= nx + margin and -margin <= linear[1] <= ny + margin):
        x, y = float(linear[0]), float(linear[1])
    else:
        try:
            x, y = (float(v) for v in wcs.all_world2pix(world, 0)[0])
        except NoConvergence as exc:
            x, y = (float(v) for v in exc.best_solution[0])
    if not (-0.5 <= x <= nx - 0.5 and -0.5 <= y <= ny - 0.5):
        raise TargetOutsideFrameError(
            f"{where} falls at pixel (x={x:.1f}, y={y:.1f}), outside the {nx}x{ny} frame "
            f"(x must lie in -0.5..{nx - 0.5}, y in -0.5..{ny - 0.5})"
        )
    back = wcs.all_pix2world([[x, y]], 0)[0]
    separation = math.degrees(
        angular_separation(*np.radians([back[wcs.wcs.lng], back[wcs.wcs.lat], ra, dec]))
    )
    scale = math.sqrt(abs(float(np.linalg.det(wcs.pixel_scale_matrix))))
    if not math.isfinite(separation) or separation > scale:
        raise WCSError(
            f"the WCS does not invert consistently at the {where} (pixel ({x:.1f}, {y:.1f}) "
            f"maps back {separation * 3600:.1f} arcsec away); its distortion terms are unusable"
        )
    return x, y


# --- time -----------------------------------------------------------------------------------


def _observation_time(header: Header, notes: list[str]) -> _ObsTime:
    scale, scale_note = _time_scale(header)
    sources: tuple[Callable[[Header, str], _ObsTime | None], ...] = (
        _time_avg,
        _time_begin_end,
        _time_date_obs,
        _time_mjd_obs,
        _time_jd,
    )
    problems: list[_UnusableTimeError] = []
    found: list[_ObsTime] = []
    for source in sources:
        try:
            obs = source(header, scale)
        except _UnusableTimeError as exc:
            problems.append(exc)
            continue
        if obs is not None:
            found.append(obs)
    if not found:
        reason = (
            "; ".join(str(p) for p in problems)
            or "looked for DATE-OBS, MJD-OBS, JD, DATE-AVG, MJD-AVG, EXPSTART/EXPEND"
        )
        usable = "usable " if problems else ""
        raise HeaderError(
            f"no {usable}observation time in the header ({reason}); give it with --mjd"
        )
    chosen = found[0]
    notes.extend(f"time: {p}; used {chosen.source}" for p in problems if not p.benign)
    if scale_note:
        notes.append(scale_note)
    for other in found[1:]:
        if chosen.mid or other.mid:
            continue
        gap = abs(other.mjd - chosen.mjd) * 86400.0
        if gap > _TIME_MISMATCH_S:
            notes.append(
                f"time: {other.start_key} differs from {chosen.source} by {_duration(gap)}; "
                f"used {chosen.source}"
            )
    return chosen


def _time_scale(header: Header) -> tuple[str, str | None]:
    raw = _text(header, "TIMESYS")
    if raw is None:
        return "utc", None
    scale = _TIMESYS.get(raw.upper())
    if scale is None:
        return "utc", f"time: TIMESYS={raw!r} not understood; header times taken as UTC"
    return scale, None


def _to_utc(mjd: float, scale: str) -> float:
    if scale == "utc":
        return mjd
    if scale == "gps":  # GPS time runs a constant 19 s behind TAI
        mjd, scale = mjd + 19.0 / 86400.0, "tai"
    with warnings.catch_warnings():
        # ERFA calls UTC before 1960 or after the leap-second table "dubious"; fine here
        warnings.filterwarnings("ignore", message=".*dubious year")
        return float(Time(mjd, format="mjd", scale=scale).utc.mjd)


def _time_avg(header: Header, scale: str) -> _ObsTime | None:
    for key, read in (("MJD-AVG", _mjd_value), ("DATE-AVG", _datetime_mjd)):
        if key in header:
            return _ObsTime(_to_utc(read(header, key), scale), key, True, scale)
    return None


def _time_begin_end(header: Header, scale: str) -> _ObsTime | None:
    # HST writes EXPSTART/EXPEND as UTC MJDs; FITS 4.0 has MJD-BEG/END and DATE-BEG/END.
    pairs: tuple[tuple[str, str, str, Callable[[Header, str], float]], ...] = (
        ("EXPSTART", "EXPEND", "utc", _mjd_value),
        ("MJD-BEG", "MJD-END", scale, _mjd_value),
        ("DATE-BEG", "DATE-END", scale, _datetime_mjd),
    )
    for begin, end, kind, read in pairs:
        if begin in header and end in header:
            mid = 0.5 * (read(header, begin) + read(header, end))
            return _ObsTime(_to_utc(mid, kind), f"({begin} + {end})/2", True, kind)
    return None


def _time_date_obs(header: Header, scale: str) -> _ObsTime | None:
    if _text(header, "DATE-OBS") is None:
        return None
    day, seconds = _calendar(header, "DATE-OBS")
    label = "DATE-OBS"
    if seconds is None:
        key = next((k for k in _TIME_OF_DAY_KEYS if _text(header, k) is not None), None)
        if key is None:
            raise _UnusableTimeError(
                f"DATE-OBS={header['DATE-OBS']!r} has only a date and there is no time-of-day "
                f"keyword ({', '.join(_TIME_OF_DAY_KEYS)})",
                benign=True,
            )
        seconds = _time_of_day(header, key)
        label = f"DATE-OBS + {key}"
        if key == "TAIHMS":  # SDSS: the time of day is TAI whatever TIMESYS says
            scale = "tai"
    return _ObsTime(_to_utc(day + seconds / 86400.0, scale), label, False, scale, "DATE-OBS")


def _time_mjd_obs(header: Header, scale: str) -> _ObsTime | None:
    for key in ("MJD-OBS", "MJD_OBS"):
        if key in header:
            return _ObsTime(_to_utc(_mjd_value(header, key), scale), key, False, scale, key)
    return None


def _time_jd(header: Header, scale: str) -> _ObsTime | None:
    for key in ("JD", "JD-OBS", "JD_OBS"):
        if key in header:
            jd = _plain_number(header, key)
            if jd is None or not 2.4e6 < jd < 2.5e6:
                raise _UnusableTimeError(f"{key}={header[key]!r} is not a plausible Julian date")
            return _ObsTime(_to_utc(jd - 2400000.5, scale), key, False, scale, key)
    return None


def _mjd_value(header: Header, key: str) -> float:
    value = _plain_number(header, key)
    if value is None or not 1.0 < value < 1.0e5:
        raise _UnusableTimeError(f"{key}={header[key]!r} is not a plausible MJD")
    return value


_ISO = re.compile(
    r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})"
    r"(?:[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2}(?:\.\d*)?))?)?(?:Z|[+-]00:?00)?$"
)
_OLD = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})$")  # dd/mm/yy: pre-2000 FITS style
_HMS = re.compile(r"^(\d{1,2})[:\s](\d{1,2})(?:[:\s](\d{1,2}(?:\.\d*)?))?$")


def _datetime_mjd(header: Header, key: str) -> float:
    day, seconds = _calendar(header, key)
    if seconds is None:
        raise _UnusableTimeError(f"{key}={header[key]!r} has no time of day")
    return day + seconds / 86400.0


def _calendar(header: Header, key: str) -> tuple[float, float | None]:
    """(MJD of the date at 0h, seconds into the day or None when only a date is given)."""
    text = _text(header, key) or ""
    iso, old = _ISO.match(text), _OLD.match(text)
    seconds: float | None = None
    try:
        if iso:
            year, month, day = (int(iso.group(i)) for i in (1, 2, 3))
            if iso.group(4) is not None:
                seconds = _hms_seconds(iso.group(4), iso.group(5), iso.group(6))
        elif old:
            day, month, year = (int(old.group(i)) for i in (1, 2, 3))
            year += 1900 if year < 100 else 0
        else:
            raise ValueError("format not recognised")
        ordinal = dt.date(year, month, day).toordinal()
    except ValueError as exc:
        raise _UnusableTimeError(
            f"{key}={text!r} is not a date skyphot understands ({exc}; expected e.g. "
            "2020-01-31T22:15:03.2 or 31/01/98)"
        ) from exc
    return float(ordinal - _MJD_EPOCH), seconds


def _hms_seconds(hours: str, minutes: str, seconds: str | None) -> float:
    h, m, s = int(hours), int(minutes), float(seconds or 0.0)
    if h > 23 or m > 59 or s >= 61.0:  # 60.x is a leap second
        raise ValueError(f"time {hours}:{minutes}:{seconds} out of range")
    return h * 3600.0 + m * 60.0 + s


def _time_of_day(header: Header, key: str) -> float:
    value = header[key]
    if (
        key in _SECONDS_OF_DAY_KEYS
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ):
        if 0.0 <= float(value) < 86401.0:
            return float(value)
        raise _UnusableTimeError(f"{key}={value!r} is not a number of seconds since midnight")
    match = _HMS.match(str(value).strip())
    try:
        if match is None:
            raise ValueError("expected hh:mm:ss")
        return _hms_seconds(match.group(1), match.group(2), match.group(3))
    except ValueError as exc:
        raise _UnusableTimeError(f"{key}={value!r} is not a time of day ({exc})") from exc


def _duration(seconds: float) -> str:
    for limit, unit, size in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds / 86400:.1f} d"


# --- exposure, detector, filter -------------------------------------------------------------


def _exptime(
    header: Header, overrides: HeaderOverrides, overridden: list[str], notes: list[str]
) -> tuple[float | None, str]:
    if overrides.exptime is not None:
        overridden.append("exptime")
        return float(overrides.exptime), "(given exptime)"
    key = next((k for k in _EXPTIME_KEYS if k in header), None)
    if key is None:
        return None, ""
    value = _number(header, key, "--exptime")
    comment = str(header.comments[key]).lower()
    if re.search(r"\b(ms|msec|millisec\w*)\b", comment):
        value /= 1000.0
        notes.append(f"exptime={value:g} s ({key} read as milliseconds, as its comment says)")
    elif re.search(r"\bmin(ute)?s?\b", comment) and not re.search(r"\bsec", comment):
        value *= 60.0  # photographic plates: DSS headers give EXPOSURE in minutes
        notes.append(f"exptime={value:g} s ({key} read as minutes, as its comment says)")
    if value <= 0.0:
        raise HeaderError(
            f"{key}={header[key]!r} is not a usable exposure time (must be > 0 s); "
            "give it with --exptime"
        )
    return value, key


def _gain(
    header: Header,
    overrides: HeaderOverrides,
    exptime: float,
    overridden: list[str],
    notes: list[str],
) -> float:
    if overrides.gain is not None:
        overridden.append("gain")
        return float(overrides.gain)
    unit = (_text(header, "BUNIT") or "").lower().replace(" ", "")
    if re.fullmatch(r"(e-?|electrons?)", unit):
        return 1.0  # data already count electrons, whatever the commanded CCD gain was
    if re.fullmatch(r"(e-?|electrons?)(/s|/sec|s-1|s\*\*-1|s\^-1)", unit) and exptime > 0.0:
        return exptime  # electrons per second: one data unit is exptime electrons
    found = _detector_value(header, _GAIN_KEYS, _GAIN_FAMILIES, "--gain", "gain", strict=True)
    if found is None:
        notes.append("gain=1.0 e-/ADU (no GAIN keyword)")
        return 1.0
    value, key = found
    comment = str(header.comments[key]).lower() if key in header else ""
    if re.search(r"\badu\s*(/|per)\s*e", comment):
        notes.append(f"gain={1.0 / value:g} e-/ADU (inverse of {key}={value:g} ADU/e-)")
        return 1.0 / value
    return value


def _read_noise(
    header: Header, overrides: HeaderOverrides, overridden: list[str], notes: list[str]
) -> float:
    if overrides.read_noise is not None:
        overridden.append("read_noise")
        return float(overrides.read_noise)
    found = _detector_value(
        header, _NOISE_KEYS, _NOISE_FAMILIES, "--read-noise", "read noise", strict=False
    )
    if found is None:
        notes.append("read_noise=0.0 e- (no RDNOISE keyword)")
    return 0.0 if found is None else found[0]


def _saturation(
    header: Header, overrides: HeaderOverrides, overridden: list[str], notes: list[str]
) -> float | None:
    if overrides.saturation is not None:
        overridden.append("saturation")
        return float(overrides.saturation)
    found = _detector_value(
        header, _SATURATION_KEYS, (), "--saturation", "saturation level", strict=True
    )
    if found is not None:
        return found[0]
    if "DATAMAX" in header:
        datamax = _plain_number(header, "DATAMAX")
        ceiling = _integer_ceiling(header)
        if datamax is not None and ceiling is not None and datamax >= 0.5 * ceiling:
            notes.append(f"saturation={datamax:g} (DATAMAX taken as the saturation level)")
            return datamax
        notes.append(
            f"saturation unknown (no SATURATE keyword; DATAMAX={header['DATAMAX']!r} is not "
            "near the top of the integer range, so it is the data maximum, not a saturation)"
        )
        return None
    notes.append("saturation unknown (no SATURATE keyword)")
    return None


def _integer_ceiling(header: Header) -> float | None:
    """Largest physical value the file's integer BITPIX/BZERO/BSCALE can store."""
    bitpix = header.get("BITPIX")
    if bitpix not in (8, 16, 32, 64):
        return None
    raw_max = 255 if bitpix == 8 else 2 ** (bitpix - 1) - 1
    bzero = _plain_number(header, "BZERO") or 0.0
    bscale = _plain_number(header, "BSCALE") or 1.0
    ceiling = bzero + bscale * raw_max
    return ceiling if ceiling > 0 else None


def _detector_value(
    header: Header,
    keys: tuple[str, ...],
    families: tuple[str, ...],
    option: str,
    what: str,
    *,
    strict: bool,
) -> tuple[float, str] | None:
    """First keyword of ``keys`` present (validated), else the mean of a per-amplifier family.

    ``strict``: the value must be > 0 (gain, saturation); otherwise >= 0 (read noise).
    """
    for key in keys:
        if key in header:
            value = _number(header, key, option)
            if value < 0.0 or (strict and value == 0.0):
                bound = "> 0" if strict else ">= 0"
                raise HeaderError(
                    f"{key}={header[key]!r} is not a usable {what} (must be {bound}); "
                    f"give the right value with {option}"
                )
            return value, key
    for family in families:
        # unused amplifiers carry 0, so only positive values count
        values = [
            v
            for amp in _AMPLIFIERS
            if family.format(amp) in header
            for v in [_plain_number(header, family.format(amp))]
            if v is not None and v > 0.0
        ]
        if values:
            return float(np.mean(values)), family.format("*")
    return None


def _filter(header: Header) -> str | None:
    names = [name for key in _FILTER_KEYS if (name := _text(header, key)) is not None]
    real = [name for name in names if not _NOT_A_FILTER.match(name.lower())]
    if real:
        return real[0]
    return names[0] if names else None


def _pick(field: str, given: str | None, read: str | None, overridden: list[str]) -> str | None:
    if given is None:
        return read
    overridden.append(field)
    return given


# --- keyword access -------------------------------------------------------------------------


def _text(header: Header, key: str) -> str | None:
    """A keyword's value as stripped text; None when absent or blank."""
    value = header.get(key)
    if value is None or isinstance(value, bool):
        return None
    return str(value).strip() or None


def _plain_number(header: Header, key: str) -> float | None:
    value = header.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _number(header: Header, key: str, option: str) -> float:
    number = _plain_number(header, key)
    if number is None:
        raise HeaderError(
            f"{key}={header[key]!r} is not a number; give the right value with {option}"
        )
    return number


# --- WCS helpers ----------------------------------------------------------------------------


def _wcs_keyword_problem(header: Header) -> str | None:
    if all(k in header for k in ("PLTRAH", "PLTDECD", "AMDX1", "AMDY1")):
        return None  # a DSS plate solution: astropy turns it into a TAN WCS
    ctypes = [_text(header, f"CTYPE{i}") for i in (1, 2)]
    if not all(ctypes):
        return "CTYPE1/CTYPE2 are missing or empty"
    missing = [k for k in ("CRVAL1", "CRVAL2") if _plain_number(header, k) is None]
    if missing:
        return f"{'/'.join(missing)} missing"
    has_cd = any(f"CD{i}_{j}" in header for i in (1, 2) for j in (1, 2))
    if not has_cd and not ("CDELT1" in header and "CDELT2" in header):
        return "no pixel scale (neither a CD matrix nor CDELT1/CDELT2)"
    return None


# --- lenient summary (what a form shows for confirmation) ---------------------------------


@dataclass(frozen=True)
class HeaderSummary:
    """What the header says, each value None where it cannot be read, and why in ``problems``.

    The values come from the same code as ``normalise_header``, so a form that shows them
    shows exactly what a measurement will use.
    """

    mjd: float | None  # mid-exposure, UTC
    mjd_start: float | None  # exposure start, UTC
    mjd_source: str | None
    exptime: float | None
    filter: str | None
    gain: float | None
    saturation: float | None
    instrument: str | None
    telescope: str | None
    object_name: str | None
    problems: tuple[str, ...]


def describe_header(header: Header) -> HeaderSummary:
    """A lenient ``normalise_header``: never raises for a missing or unusable value."""
    none = HeaderOverrides()
    try:
        meta = normalise_header(header, overrides=none)
    except HeaderError as err:
        return _partial_summary(header, str(err))
    return HeaderSummary(
        mjd=meta.mjd,
        mjd_start=meta.mjd - meta.exptime / 2.0 / 86400.0,
        mjd_source=meta.mjd_source,
        exptime=meta.exptime,
        filter=meta.filter,
        gain=None if any(n.startswith("gain=1.0") for n in meta.assumed) else meta.gain,
        saturation=meta.saturation,
        instrument=meta.instrument,
        telescope=meta.telescope,
        object_name=meta.object_name,
        problems=(),
    )


def _partial_summary(header: Header, first_problem: str) -> HeaderSummary:
    """Read what can be read, one value at a time, collecting the problems."""
    problems = [first_problem]
    notes: list[str] = []
    none = HeaderOverrides()
    exptime: float | None = None
    try:
        exptime, _ = _exptime(header, none, [], notes)
    except HeaderError as err:
        problems.append(str(err))
    mjd: float | None = None
    start: float | None = None
    source: str | None = None
    try:
        obs = _observation_time(header, notes)
        source = obs.source
        half = exptime / 2.0 / 86400.0 if exptime is not None else None
        if obs.mid:
            mjd, start = obs.mjd, (obs.mjd - half if half is not None else None)
        else:
            start, mjd = obs.mjd, (obs.mjd + half if half is not None else None)
    except HeaderError as err:
        problems.append(str(err))
    gain: float | None = None
    try:
        gain = _gain(header, none, exptime or 0.0, [], notes)
    except HeaderError as err:
        problems.append(str(err))
    saturation: float | None = None
    try:
        saturation = _saturation(header, none, [], notes)
    except HeaderError as err:
        problems.append(str(err))
    return HeaderSummary(
        mjd=mjd,
        mjd_start=start,
        mjd_source=source,
        exptime=exptime,
        filter=_filter(header),
        gain=gain,
        saturation=saturation,
        instrument=_text(header, "INSTRUME"),
        telescope=_text(header, "TELESCOP"),
        object_name=_text(header, "OBJECT") or _text(header, "TARGNAME"),
        problems=tuple(dict.fromkeys(problems)),
    )
