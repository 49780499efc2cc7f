"""A quick look at an uploaded frame's header: what the form shows for confirmation.

Reads headers only (no pixel data), so it is cheap enough for the web process, and uses the
engine's own header normalisation, so the time shown is the time a measurement will use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from astropy.time import Time

from skyphot.errors import FrameReadError
from skyphot.io.fits import read_header
from skyphot.io.fits_limits import check_fits_size
from skyphot.io.header import describe_header


@dataclass(frozen=True)
class FitsInfo:
    """Header values of the image HDU the engine will read; None where the header does not say."""

    hdu: int
    shape: tuple[int, ...]
    filter: str | None
    instrument: str | None
    telescope: str | None
    object: str | None
    obstime: str | None  # exposure start, ISO UTC
    mjd_start: float | None  # MJD (UTC) of exposure start
    mjd_mid: float | None  # MJD (UTC) of mid-exposure: what the measurement reports
    time_keyword: str | None  # how the time was derived
    exptime: float | None  # seconds
    gain: float | None  # e-/ADU
    saturation: float | None  # ADU
    problems: tuple[str, ...] = ()  # values the header lacks, in words, with the option to give

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def inspect_fits(path: str | Path, *, display_name: str | None = None,
                 max_pixels: int | None = None) -> FitsInfo:
    """Header summary of the image HDU. ``FrameReadError`` (naming the upload) when unreadable
    or, with ``max_pixels``, when it declares more pixels than that (checked on the headers
    before anything is decompressed: see ``skyphot.io.fits_limits``)."""
    name = display_name or Path(path).name
    if max_pixels is not None:
        check_fits_size(path, max_pixels=max_pixels, name=repr(name))
    try:
        found = read_header(path)
    except FrameReadError as err:
        # The stored path is an internal name; the user knows the file by what they uploaded.
        raise FrameReadError(str(err).replace(str(path), repr(name))) from err
    summary = describe_header(found.header)
    start = summary.mjd_start
    return FitsInfo(
        hdu=found.hdu_index,
        shape=found.shape,
        filter=summary.filter,
        instrument=summary.instrument,
        telescope=summary.telescope,
        object=summary.object_name,
        obstime=Time(start, format="mjd", scale="utc").isot if start is not None else None,
        mjd_start=start,
        mjd_mid=summary.mjd,
        time_keyword=summary.mjd_source,
        exptime=summary.exptime,
        gain=summary.gain,
        saturation=summary.saturation,
        problems=summary.problems,
    )
