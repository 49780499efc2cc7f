"""Refuse FITS files too big to analyse *before* anything decompresses or reads pixels.

A tiny upload can declare a huge image: a 0.8 MB ``.fits.fz`` whose tile-compressed image is
100000x100000 (ZNAXISn), or a 2 MB ``.fits.gz`` that expands to 2 GB. Reading either drives a
worker to many GiB. ``check_fits_size`` walks the headers only: for a plain or tile-compressed
file it seeks past the data; for a gzip/bzip2 file it decompresses in small chunks and stops
as soon as the content grows past what the declared images allow (so memory stays at a few
MB and the time at the size of what is allowed). Headers longer than ``MAX_HEADER_CARDS``
cards are refused too (a 200000-card header takes seconds of CPU to parse).
"""

from __future__ import annotations

import bz2
import gzip
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from skyphot.errors import FrameReadError
from skyphot.io.fits_walk import BLOCK, FitsStructureError, walk_hdus
from skyphot.io.fits_walk import MAX_HEADER_CARDS as MAX_HEADER_CARDS  # part of this API

MAX_HDUS = 1000


@dataclass(frozen=True)
class FitsSize:
    """What the headers declare: the largest image (pixels) and the data size (bytes)."""

    largest_image_pixels: int
    declared_bytes: int
    hdus: int


@contextmanager
def _open(file: Path) -> Iterator[tuple[io.BufferedIOBase, bool]]:
    """The content stream and whether it is compressed as a whole (no seeking)."""
    with file.open("rb") as raw:
        magic = raw.read(3)
    if magic[:2] == b"\x1f\x8b":
        with gzip.open(file, "rb") as stream:
            yield stream, True
    elif magic == b"BZh":
        with bz2.open(file, "rb") as stream:
            yield stream, True
    else:
        with file.open("rb") as stream:
            yield stream, False


def check_fits_size(path: str | Path, *, max_pixels: int, name: str | None = None) -> FitsSize:
    """Raise ``FrameReadError`` (naming the file as ``name``) when an image HDU declares
    more than ``max_pixels`` pixels (NAXISn, or ZNAXISn of a tile-compressed image), when
    the data declared in all HDUs exceeds 8 bytes per allowed pixel (the decompressed size a
    gzip bomb would reach), or when a header is absurdly long. Reads headers only."""
    file = Path(path)
    where = name or file.name
    budget = 8 * max_pixels + 64 * BLOCK  # bytes of data units the file may declare in all
    largest = declared = hdus = 0
    try:
        with _open(file) as (stream, compressed):
            if not stream.read(9).startswith(b"SIMPLE  ="):
                # Not FITS at all: the reader names what it is instead.
                return FitsSize(largest_image_pixels=0, declared_bytes=0, hdus=0)
            stream.seek(0)
            for hdu in walk_hdus(stream, seekable=not compressed, max_hdus=MAX_HDUS + 1):
                if hdu.index == MAX_HDUS:
                    raise FrameReadError(f"{where}: more than {MAX_HDUS} HDUs; refusing the file")
                hdus += 1
                largest = max(largest, hdu.image_pixels)
                if hdu.image_pixels > max_pixels:
                    raise FrameReadError(
                        f"{where}: HDU {hdu.index} declares a {hdu.dims()} image "
                        f"({hdu.image_pixels:,} pixels), more than the {max_pixels:,} this "
                        "server accepts (max_image_pixels); bin or crop the frame first"
                    )
                declared += hdu.data_bytes
                if declared > budget:
                    raise FrameReadError(
                        f"{where}: the file declares {declared / 1e9:.1f} GB of data, more "
                        f"than the {budget / 1e9:.1f} GB allowed by max_image_pixels "
                        f"({max_pixels:,} pixels); send a smaller frame"
                    )
    except FitsStructureError as err:
        if err.kind != "data":
            raise FrameReadError(f"{where}: {_reason(err)}") from err
        # truncated data: read_frame reports it precisely
    except (OSError, EOFError) as err:
        raise FrameReadError(f"{where}: cannot be read or decompressed ({err})") from err
    return FitsSize(largest_image_pixels=largest, declared_bytes=declared, hdus=hdus)


def _reason(err: FitsStructureError) -> str:
    """The walker's finding in this check's words."""
    if err.kind == "header":
        return "truncated FITS header (no END card)"
    if err.kind == "keyword":
        return f"invalid header: {err}"
    return str(err)
