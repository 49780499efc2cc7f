"""Typed containers for a frame read from disk and its normalised observation metadata."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from astropy.io.fits import Header


@dataclass(frozen=True)
class Frame:
    """One image plane, as read from a FITS file.

    ``data`` is float32 (integer files are scaled with BZERO/BSCALE on read), indexed
    ``data[y, x]`` with 0-based pixel centres at integer coordinates. A pipeline that has
    made its background-subtracted image keeps the frame ``without_pixels`` (``released``):
    its ``data`` is then an all-NaN, read-only placeholder of the same shape that takes no
    memory, so a large frame is not held twice.
    """

    data: np.ndarray
    header: Header
    path: str
    hdu_index: int
    hdu_name: str
    released: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        ny, nx = self.data.shape
        return int(ny), int(nx)

    def without_pixels(self) -> Frame:
        """This frame with its pixel array dropped (header, path and shape kept)."""
        placeholder = np.broadcast_to(np.float32(np.nan), self.shape)  # zero bytes, read-only
        return replace(self, data=placeholder, released=True)


@dataclass(frozen=True)
class ObservationMeta:
    """Header values the analysis needs, normalised to one convention.

    ``mjd`` is the mid-exposure time (UTC MJD). Values the caller overrode are listed in
    ``overridden``; values that were assumed because nothing gave them are listed in
    ``assumed`` so the result can flag them.
    """

    mjd: float
    mjd_source: str  # how mjd was derived, e.g. "DATE-OBS + EXPTIME/2"
    exptime: float  # seconds
    filter: str | None  # as written in the header (or given)
    gain: float  # e-/ADU
    read_noise: float  # e- (rms)
    saturation: float | None  # ADU, in the same units as Frame.data
    instrument: str | None
    telescope: str | None
    object_name: str | None
    overridden: tuple[str, ...] = ()
    assumed: tuple[str, ...] = ()
