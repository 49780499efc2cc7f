"""A quick look at an uploaded frame's header: what the form shows for confirmation.

Reads headers only (no pixel data), so it is cheap enough for the web process, and uses the
engine's own header normalisation, so the time shown is the time a measurement will use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from astropy.time import Time

from skyphot.errors import FrameReadError, InputError
from skyphot.io.fits import read_header
from skyphot.io.fits_limits import check_fits_size
from skyphot.io.fits_walk import FitsStructureError, walk_hdus
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


class UploadRejectedError(InputError):
    """An upload that cannot be analysed whatever the settings (HTTP 400, no job made)."""


def check_upload(path: str | Path, *, display_name: str, max_pixels: int | None = None
                 ) -> FitsInfo:
    """Reject, before any job exists, a file no analysis can use: not FITS, no image, or
    cut short (its data end before the header says they should). Returns the header
    summary. Compressed (.gz) files are checked only as far as their header."""
    file = Path(path)
    try:
        info = inspect_fits(file, display_name=display_name, max_pixels=max_pixels)
    except FrameReadError as err:
        raise UploadRejectedError(str(err)) from err
    with file.open("rb") as raw:
        if raw.read(3)[:2] in (b"\x1f\x8b", b"BZ"):
            return info  # sizes inside a compressed stream are only known after decompressing
    size = file.stat().st_size
    needed = 0  # bytes the headers announce: up to the end of the last data unit
    try:
        with file.open("rb") as stream:
            for hdu in walk_hdus(stream):
                needed = max(needed, hdu.data_start + hdu.data_bytes)
    except (FitsStructureError, OSError) as err:
        # cut data are measured against the file size below; anything else is damage
        if not (isinstance(err, FitsStructureError) and err.kind == "data"):
            raise UploadRejectedError(
                f"{display_name!r} is damaged: a part after its image cannot be read; upload "
                "the complete file"
            ) from err
    if needed > size:
        raise UploadRejectedError(
            f"{display_name!r} is incomplete: its header announces {needed} bytes but the "
            f"file has only {size}; upload the complete file"
        )
    return info
