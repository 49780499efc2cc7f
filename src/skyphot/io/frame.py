"""Typed containers for a frame read from disk and its normalised observation metadata."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io.fits import Header


@dataclass(frozen=True)
class Frame:
    """One image plane, as read from a FITS file.

    ``data`` is float32 (integer files are scaled with BZERO/BSCALE on read), indexed
    ``data[y, x]`` with 0-based pixel centres at integer coordinates.
    """

    data: np.ndarray
    header: Header
    path: str
    hdu_index: int
    hdu_name: str

    @property
    def shape(self) -> tuple[int, int]:
        ny, nx = self.data.shape
        return int(ny), int(nx)


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
