"""Normalise what a FITS header says about an observation, and get its celestial WCS.

Headers from real instruments disagree on keyword names, units and time conventions; this
module maps them onto :class:`~skyphot.io.frame.ObservationMeta`, says how each value was
obtained, and refuses (``HeaderError``) rather than guess a time or an exposure.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.coordinates import angular_separation
from astropy.io.fits import Header
from astropy.wcs import WCS, FITSFixedWarning, NoConvergence

from skyphot.core.wcs_utils import celestial_frame, icrs_to_native
from skyphot.errors import ConfigError, HeaderError, TargetOutsideFrameError, WCSError
from skyphot.io.frame import ObservationMeta
from skyphot.io.keywords import keyword_number, keyword_text, required_number
from skyphot.io.obstime import ObsTime, observation_time
from skyphot.io.overrides import HeaderOverrides

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
_NOT_A_FILTER = re.compile(r"^(clear|open|none|empty|blank|n/?a|no\s*filter)(\d*[a-z]?)?$")
_SOLVE_HINT = (
    "plate-solve the frame first (e.g. astrometry.net's solve-field) or choose "
    "astrometry method 'astrometry.net'"
)


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
        obs = ObsTime(float(overrides.mjd), "given with --mjd", mid=True)
        overridden.append("mjd")
    else:
        obs = observation_time(header, notes)
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
        instrument=_pick(
            "instrument", overrides.instrument, keyword_text(header, "INSTRUME"), overridden
        ),
        telescope=_pick(
            "telescope", overrides.telescope, keyword_text(header, "TELESCOP"), overridden
        ),
        object_name=keyword_text(header, "OBJECT") or keyword_text(header, "TARGNAME"),
        overridden=tuple(overridden),
        assumed=tuple(notes),
    )


def celestial_wcs(header: Header, *, shape: tuple[int, int]) -> WCS:
    """The header's celestial WCS (with SIP/TPV distortion when present), pixel origin 0.

    ``shape`` is the image shape (ny, nx). Raises ``WCSError`` when the header has no usable
    celestial WCS: keywords missing, singular matrix, non-celestial axes, a celestial system
    other than ICRS, FK5, FK4, galactic or ecliptic.
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
    celestial_frame(wcs)  # refuses, now, a sky system positions cannot be transformed into
    return wcs


def target_pixel(wcs: WCS, ra: float, dec: float, *, shape: tuple[int, int]) -> tuple[float, float]:
    """0-based (x, y) pixel position of (ra, dec) in degrees on a frame of shape (ny, nx).

    Raises ``TargetOutsideFrameError`` when the position is off the image (pixel centres at
    0..nx-1, so the image spans -0.5..nx-0.5) or behind the projection.
    """
    if not (math.isfinite(ra) and math.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise ConfigError(f"target position RA={ra}, Dec={dec} is not a valid sky position")
    ny, nx = shape
    # the target is ICRS; the frame may be in galactic, ecliptic, FK4 ... coordinates
    lons, lats = icrs_to_native(wcs, np.array([ra]), np.array([dec]))
    lon, lat = float(lons[0]), float(lats[0])
    world = np.zeros((1, 2))
    world[0, wcs.wcs.lng] = lon
    world[0, wcs.wcs.lat] = lat
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
        angular_separation(*np.radians([back[wcs.wcs.lng], back[wcs.wcs.lat], lon, lat]))
    )
    scale = math.sqrt(abs(float(np.linalg.det(wcs.pixel_scale_matrix))))
    if not math.isfinite(separation) or separation > scale:
        raise WCSError(
            f"the WCS does not invert consistently at the {where} (pixel ({x:.1f}, {y:.1f}) "
            f"maps back {separation * 3600:.1f} arcsec away); its distortion terms are unusable"
        )
    return x, y


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
    value = required_number(header, key, "--exptime")
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
    unit = (keyword_text(header, "BUNIT") or "").lower().replace(" ", "")
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
        datamax = keyword_number(header, "DATAMAX")
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
    bzero = keyword_number(header, "BZERO") or 0.0
    bscale = keyword_number(header, "BSCALE") or 1.0
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
            value = required_number(header, key, option)
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
            for v in [keyword_number(header, family.format(amp))]
            if v is not None and v > 0.0
        ]
        if values:
            return float(np.mean(values)), family.format("*")
    return None


def _filter(header: Header) -> str | None:
    names = [name for key in _FILTER_KEYS if (name := keyword_text(header, key)) is not None]
    real = [name for name in names if not _NOT_A_FILTER.match(name.lower())]
    if real:
        return real[0]
    return names[0] if names else None


def _pick(field: str, given: str | None, read: str | None, overridden: list[str]) -> str | None:
    if given is None:
        return read
    overridden.append(field)
    return given


# --- WCS helpers ----------------------------------------------------------------------------


def _wcs_keyword_problem(header: Header) -> str | None:
    if all(k in header for k in ("PLTRAH", "PLTDECD", "AMDX1", "AMDY1")):
        return None  # a DSS plate solution: astropy turns it into a TAN WCS
    ctypes = [keyword_text(header, f"CTYPE{i}") for i in (1, 2)]
    if not all(ctypes):
        return "CTYPE1/CTYPE2 are missing or empty"
    missing = [k for k in ("CRVAL1", "CRVAL2") if keyword_number(header, k) is None]
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
        obs = observation_time(header, notes)
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
        instrument=keyword_text(header, "INSTRUME"),
        telescope=keyword_text(header, "TELESCOP"),
        object_name=keyword_text(header, "OBJECT") or keyword_text(header, "TARGNAME"),
        problems=tuple(dict.fromkeys(problems)),
    )
