"""A quick look at an uploaded frame's header: what the form shows for confirmation.

Reads headers only (no pixel data), so it is cheap enough for the web process.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from astropy.io import fits
from astropy.time import Time

from skyphot.errors import FrameReadError

_FILTER_KEYS = ("FILTER", "FILTER1", "FILTER2", "FILTNAME", "FILT", "FLTRNAME", "INSFLNAM")
_EXPTIME_KEYS = ("EXPTIME", "EXPOSURE", "ITIME", "EXP_TIME", "TEXP")
_GAIN_KEYS = ("GAIN", "EGAIN", "CCDGAIN", "GAINEFF")
_SATURATION_KEYS = ("SATURATE", "SATLEVEL", "SATURATION", "MAXLIN")
_NOT_FILTERS = {"", "clear", "open", "none", "empty", "air"}


@dataclass(frozen=True)
class FitsInfo:
    """Header values of the first image HDU; None where the header does not say."""

    hdu: int
    shape: tuple[int, ...]
    filter: str | None
    instrument: str | None
    telescope: str | None
    object: str | None
    obstime: str | None  # exposure start, ISO UTC, as read
    mjd_start: float | None  # MJD (UTC) of exposure start
    mjd_mid: float | None  # MJD (UTC) of mid-exposure (start + exptime/2)
    time_keyword: str | None  # which keyword gave the time
    exptime: float | None  # seconds
    gain: float | None  # e-/ADU
    saturation: float | None  # ADU

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _first(header: fits.Header, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = header.get(key)
        if value not in (None, ""):
            return value
    return None


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return str(value).strip() or None if value is not None else None


def _filter(header: fits.Header) -> str | None:
    for key in _FILTER_KEYS:
        value = _text(header.get(key))
        if value is not None and value.lower() not in _NOT_FILTERS:
            return value
    return None


def _start_time(header: fits.Header) -> tuple[Time | None, str | None]:
    date = _text(header.get("DATE-OBS"))
    if date is not None:
        if "T" not in date and header.get("TIME-OBS"):
            date = f"{date}T{str(header['TIME-OBS']).strip()}"
        try:
            return Time(date.replace(" ", "T"), format="isot", scale="utc"), "DATE-OBS"
        except ValueError:
            pass
    mjd = _number(header.get("MJD-OBS"))
    if mjd is not None:
        return Time(mjd, format="mjd", scale="utc"), "MJD-OBS"
    return None, None


def inspect_fits(path: str | Path, *, display_name: str | None = None) -> FitsInfo:
    """Header summary of the first HDU holding an image. FrameReadError when unreadable."""
    name = display_name or Path(path).name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, lazy_load_hdus=True) as hdul:
                found: tuple[int, fits.Header, tuple[int, ...]] | None = None
                for index, hdu in enumerate(hdul):
                    if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
                        continue
                    shape = tuple(int(n) for n in getattr(hdu, "shape", ()) or ())
                    if len(shape) >= 2:
                        found = (index, hdu.header.copy(), shape)
                        break
    except (OSError, ValueError, TypeError, IndexError, KeyError) as err:
        raise FrameReadError(
            f"{name!r} is not a readable FITS file ({err}). Upload a FITS image "
            "(.fits, .fits.fz or .fits.gz)."
        ) from err
    if found is None:
        raise FrameReadError(
            f"{name!r} holds no image data (no HDU with a 2-D image). Upload the image itself."
        )
    index, header, shape = found
    start, keyword = _start_time(header)
    exptime = _number(_first(header, _EXPTIME_KEYS))
    mjd_start = float(start.mjd) if start is not None else None
    mjd_mid = mjd_start + exptime / 86400.0 / 2 if mjd_start is not None and exptime else None
    return FitsInfo(
        hdu=index,
        shape=shape,
        filter=_filter(header),
        instrument=_text(header.get("INSTRUME")),
        telescope=_text(header.get("TELESCOP")),
        object=_text(header.get("OBJECT")),
        obstime=start.isot if start is not None else None,
        mjd_start=mjd_start,
        mjd_mid=mjd_mid if mjd_mid is not None else mjd_start,
        time_keyword=keyword,
        exptime=exptime,
        gain=_number(_first(header, _GAIN_KEYS)),
        saturation=_number(_first(header, _SATURATION_KEYS)),
    )
