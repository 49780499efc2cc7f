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
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from skyphot.errors import FrameReadError

BLOCK = 2880
CARD = 80
MAX_HEADER_CARDS = 20_000  # the largest real headers we know of have a few thousand cards
MAX_HDUS = 1000
CHUNK = 1 << 20


@dataclass(frozen=True)
class FitsSize:
    """What the headers declare: the largest image (pixels) and the data size (bytes)."""

    largest_image_pixels: int
    declared_bytes: int
    hdus: int


def _value(card: str) -> str:
    raw = card[10:].split("/", 1)[0].strip()
    return raw.strip("'").strip()


def _int(cards: dict[str, str], key: str, where: str) -> int:
    try:
        return int(float(cards.get(key, "0")))
    except ValueError as err:
        raise FrameReadError(f"{where}: header keyword {key} is not a number") from err


def _read_header(stream: io.BufferedIOBase, where: str) -> dict[str, str] | None:
    """The next header's keywords (first occurrence), or None at the end of the file."""
    cards: dict[str, str] = {}
    count = 0
    while True:
        block = stream.read(BLOCK)
        if not block or not block.strip(b"\0 "):
            if count == 0:
                return None  # clean end (or trailing padding)
            raise FrameReadError(f"{where}: truncated FITS header (no END card)")
        if len(block) < BLOCK:
            raise FrameReadError(f"{where}: truncated FITS header")
        for start in range(0, BLOCK, CARD):
            card = block[start:start + CARD].decode("ascii", errors="replace")
            key = card[:8].strip()
            count += 1
            if key == "END":
                return cards
            if card[8:10] == "= " and key not in cards:
                cards[key] = _value(card)
        if count > MAX_HEADER_CARDS:
            raise FrameReadError(
                f"{where}: a header has more than {MAX_HEADER_CARDS} cards; refusing to parse "
                "it (a real frame has a few thousand at most)"
            )


def _data_bytes(cards: dict[str, str], where: str) -> tuple[int, int]:
    """(bytes of the data unit, pixels of the image it holds or declares)."""
    naxis = _int(cards, "NAXIS", where)
    axes = [_int(cards, f"NAXIS{i}", where) for i in range(1, naxis + 1)]
    bitpix = abs(_int(cards, "BITPIX", where))
    groups = cards.get("GROUPS", "") == "T"
    pcount, gcount = _int(cards, "PCOUNT", where), max(1, _int(cards, "GCOUNT", where))
    if naxis == 0:
        size = 0
    else:
        body = math.prod(axes[1:] if groups else axes)
        size = bitpix // 8 * gcount * (pcount + body)
    xtension = cards.get("XTENSION", "IMAGE").upper()
    if cards.get("ZIMAGE", "") == "T":  # tile-compressed image: the real size is in ZNAXISn
        znaxis = _int(cards, "ZNAXIS", where)
        pixels = math.prod(_int(cards, f"ZNAXIS{i}", where) for i in range(1, znaxis + 1))
    elif xtension == "IMAGE" and naxis > 0:
        pixels = math.prod(axes)
    else:
        pixels = 0
    if min(axes, default=0) < 0 or (bitpix == 0 and naxis > 0):
        raise FrameReadError(f"{where}: invalid header (negative NAXISn or BITPIX 0)")
    return size, pixels


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


def skip_bytes(stream: BinaryIO | io.BufferedIOBase, count: int, *, seekable: bool) -> int:
    """Move ``count`` bytes forward in a FITS stream without keeping them (seeking when the
    stream allows, else reading in chunks: inside a gzip stream); returns how many were
    there, fewer when the stream ends first."""
    if seekable:
        here = stream.tell()
        end = stream.seek(0, 2)
        stream.seek(min(end, here + count))
        return min(end - here, count)
    skipped = 0
    while skipped < count:
        chunk = stream.read(min(CHUNK, count - skipped))
        if not chunk:
            break
        skipped += len(chunk)
    return skipped


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
            while hdus < MAX_HDUS:
                cards = _read_header(stream, where)
                if cards is None:
                    break
                hdus += 1
                size, pixels = _data_bytes(cards, where)
                largest = max(largest, pixels)
                if pixels > max_pixels:
                    raise FrameReadError(
                        f"{where}: HDU {hdus - 1} declares a {_dims(cards)} image "
                        f"({pixels:,} pixels), more than the {max_pixels:,} this server "
                        "accepts (max_image_pixels); bin or crop the frame first"
                    )
                declared += size
                if declared > budget:
                    raise FrameReadError(
                        f"{where}: the file declares {declared / 1e9:.1f} GB of data, more "
                        f"than the {budget / 1e9:.1f} GB allowed by max_image_pixels "
                        f"({max_pixels:,} pixels); send a smaller frame"
                    )
                padded = -(-size // BLOCK) * BLOCK
                if skip_bytes(stream, padded, seekable=not compressed) < size:
                    break  # truncated data: read_frame reports it precisely
            else:
                raise FrameReadError(f"{where}: more than {MAX_HDUS} HDUs; refusing the file")
    except (OSError, EOFError) as err:
        raise FrameReadError(f"{where}: cannot be read or decompressed ({err})") from err
    return FitsSize(largest_image_pixels=largest, declared_bytes=declared, hdus=hdus)


def _dims(cards: dict[str, str]) -> str:
    prefix = "ZNAXIS" if cards.get("ZIMAGE", "") == "T" else "NAXIS"
    n = int(float(cards.get(prefix, "0")))
    return "x".join(cards.get(f"{prefix}{i}", "?") for i in range(1, n + 1))
