"""The observation time of a frame from the many ways headers write it.

Sources, in priority: an average time (DATE-AVG/MJD-AVG), EXPSTART/EXPEND, DATE-OBS (with a
separate time-of-day keyword when it holds only a date), MJD-OBS, JD. Times written in another
scale (TIMESYS) are converted to UTC; disagreements between keywords are noted, never hidden.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from astropy.io.fits import Header
from astropy.time import Time

from skyphot.errors import HeaderError
from skyphot.io.keywords import keyword_number, keyword_text

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
_MJD_EPOCH = dt.date(1858, 11, 17).toordinal()
_TIME_MISMATCH_S = 2.0  # DATE-OBS is often rounded to whole seconds


class UnusableTimeError(Exception):
    """A time keyword cannot be used, so the next source is tried. ``benign``: the header is
    not wrong (a date without time of day beside a precise MJD-OBS), so that needs no note."""

    def __init__(self, message: str, *, benign: bool = False) -> None:
        super().__init__(message)
        self.benign = benign


@dataclass(frozen=True)
class ObsTime:
    mjd: float  # UTC
    source: str  # keywords used, e.g. "DATE-OBS + UT"
    mid: bool  # already mid-exposure
    scale: str = "utc"  # time scale the keywords were written in (converted to UTC)
    start_key: str = ""  # the start-time keyword, for messages and consistency checks


def observation_time(header: Header, notes: list[str]) -> ObsTime:
    scale, scale_note = _time_scale(header)
    sources: tuple[Callable[[Header, str], ObsTime | None], ...] = (
        _time_avg,
        _time_begin_end,
        _time_date_obs,
        _time_mjd_obs,
        _time_jd,
    )
    problems: list[UnusableTimeError] = []
    found: list[ObsTime] = []
    for source in sources:
        try:
            obs = source(header, scale)
        except UnusableTimeError as exc:
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
                f"time: {other.start_key} differs from {chosen.source} by {duration_text(gap)}; "
                f"used {chosen.source}"
            )
    return chosen


def _time_scale(header: Header) -> tuple[str, str | None]:
    raw = keyword_text(header, "TIMESYS")
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


def _time_avg(header: Header, scale: str) -> ObsTime | None:
    for key, read in (("MJD-AVG", _mjd_value), ("DATE-AVG", _datetime_mjd)):
        if key in header:
            return ObsTime(_to_utc(read(header, key), scale), key, True, scale)
    return None


def _time_begin_end(header: Header, scale: str) -> ObsTime | None:
    # HST writes EXPSTART/EXPEND as UTC MJDs; FITS 4.0 has MJD-BEG/END and DATE-BEG/END.
    pairs: tuple[tuple[str, str, str, Callable[[Header, str], float]], ...] = (
        ("EXPSTART", "EXPEND", "utc", _mjd_value),
        ("MJD-BEG", "MJD-END", scale, _mjd_value),
        ("DATE-BEG", "DATE-END", scale, _datetime_mjd),
    )
    for begin, end, kind, read in pairs:
        if begin in header and end in header:
            mid = 0.5 * (read(header, begin) + read(header, end))
            return ObsTime(_to_utc(mid, kind), f"({begin} + {end})/2", True, kind)
    return None


def _time_date_obs(header: Header, scale: str) -> ObsTime | None:
    if keyword_text(header, "DATE-OBS") is None:
        return None
    day, seconds = _calendar(header, "DATE-OBS")
    label = "DATE-OBS"
    if seconds is None:
        key = next((k for k in _TIME_OF_DAY_KEYS if keyword_text(header, k) is not None), None)
        if key is None:
            raise UnusableTimeError(
                f"DATE-OBS={header['DATE-OBS']!r} has only a date and there is no time-of-day "
                f"keyword ({', '.join(_TIME_OF_DAY_KEYS)})",
                benign=True,
            )
        seconds = _time_of_day(header, key)
        label = f"DATE-OBS + {key}"
        if key == "TAIHMS":  # SDSS: the time of day is TAI whatever TIMESYS says
            scale = "tai"
    return ObsTime(_to_utc(day + seconds / 86400.0, scale), label, False, scale, "DATE-OBS")


def _time_mjd_obs(header: Header, scale: str) -> ObsTime | None:
    for key in ("MJD-OBS", "MJD_OBS"):
        if key in header:
            return ObsTime(_to_utc(_mjd_value(header, key), scale), key, False, scale, key)
    return None


def _time_jd(header: Header, scale: str) -> ObsTime | None:
    for key in ("JD", "JD-OBS", "JD_OBS"):
        if key in header:
            jd = keyword_number(header, key)
            if jd is None or not 2.4e6 < jd < 2.5e6:
                raise UnusableTimeError(f"{key}={header[key]!r} is not a plausible Julian date")
            return ObsTime(_to_utc(jd - 2400000.5, scale), key, False, scale, key)
    return None


def _mjd_value(header: Header, key: str) -> float:
    value = keyword_number(header, key)
    if value is None or not 1.0 < value < 1.0e5:
        raise UnusableTimeError(f"{key}={header[key]!r} is not a plausible MJD")
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
        raise UnusableTimeError(f"{key}={header[key]!r} has no time of day")
    return day + seconds / 86400.0


def _calendar(header: Header, key: str) -> tuple[float, float | None]:
    """(MJD of the date at 0h, seconds into the day or None when only a date is given)."""
    text = keyword_text(header, key) or ""
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
        raise UnusableTimeError(
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
        raise UnusableTimeError(f"{key}={value!r} is not a number of seconds since midnight")
    match = _HMS.match(str(value).strip())
    try:
        if match is None:
            raise ValueError("expected hh:mm:ss")
        return _hms_seconds(match.group(1), match.group(2), match.group(3))
    except ValueError as exc:
        raise UnusableTimeError(f"{key}={value!r} is not a time of day ({exc})") from exc


def duration_text(seconds: float) -> str:
    for limit, unit, size in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds / 86400:.1f} d"
