"""One walk over a FITS byte stream's HDUs that reads headers only, never pixel data.

Used by the size limits before decompressing (``io.fits_limits``), the batch client's
pre-upload check (``client.files``) and the upload check of the web application
(``jobs.header``): each HDU's header is read in 2880-byte blocks up to its END card, the
size of its data unit is computed from BITPIX, NAXISn, PCOUNT and GCOUNT (ZNAXISn give the
image size of a tile-compressed HDU), and the data are skipped (seeking when the stream
allows). A header that does not end, a structural keyword that is not a valid integer and
data cut short raise ``FitsStructureError``; each caller words it for its user.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from skyphot.errors import FrameReadError

BLOCK = 2880
CARD = 80
MAX_HEADER_CARDS = 20_000  # the largest real headers we know of have a few thousand cards
CHUNK = 1 << 20
_BITPIX = (8, 16, 32, 64, -32, -64)


class FitsStructureError(FrameReadError):
    """A FITS stream whose structure is broken: ``kind`` is 'header' (a header does not
    end), 'keyword' (a structural keyword is not a valid value), 'long' (absurdly many
    header cards) or 'data' (an HDU's data are cut short; ``declared``/``present`` bytes)."""

    def __init__(self, message: str, *, kind: str, index: int, declared: int = 0,
                 present: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.index = index
        self.declared = declared
        self.present = present


@dataclass(frozen=True)
class HduLayout:
    """What one HDU's header declares. ``cards``: keyword -> raw value (first occurrence,
    comment and quotes removed); ``header_start``/``data_start``: byte offsets in the
    stream; ``data_bytes``: size of the data unit without padding; ``image_pixels``: pixels
    of the image it holds (ZNAXISn for a tile-compressed image; 0 for a table)."""

    index: int
    cards: dict[str, str]
    header_start: int
    data_start: int
    data_bytes: int
    image_pixels: int

    def dims(self) -> str:
        """'4096x4096' (ZNAXISn of a tile-compressed image), '?' for a missing axis."""
        prefix = "ZNAXIS" if self.cards.get("ZIMAGE", "") == "T" else "NAXIS"
        n = _lenient_int(self.cards.get(prefix, "0"))
        return "x".join(self.cards.get(f"{prefix}{i}", "?") for i in range(1, n + 1))


def _lenient_int(raw: str) -> int:
    try:
        return int(float(raw))
    except ValueError:
        return 0


def header_int(cards: dict[str, str], key: str, index: int, default: int | None = None) -> int:
    """An integer keyword of HDU ``index``; ``FitsStructureError`` when missing (and no
    ``default``) or not an integer."""
    raw = cards.get(key)
    if raw is None and default is not None:
        return default
    try:
        return int(str(raw))
    except ValueError:
        shown = "missing" if raw is None else repr(raw)
        raise FitsStructureError(
            f"HDU {index} has no valid integer {key} ({shown})", kind="keyword", index=index
        ) from None


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


def _read_cards(stream: BinaryIO | io.BufferedIOBase, index: int) -> dict[str, str] | None:
    """The next header's keywords, or None when no further HDU starts here (end of the
    stream, trailing padding, or after the primary anything not starting with XTENSION)."""
    cards: dict[str, str] = {}
    count = 0
    while True:
        block = stream.read(BLOCK)
        if count == 0 and (not block or not block.strip(b"\0 ")
                           or (index > 0 and not block.startswith(b"XTENSION"))):
            return None
        if len(block) < BLOCK:
            raise FitsStructureError(
                f"the header of HDU {index} does not end (no END card before the end of the "
                "stream)", kind="header", index=index,
            )
        for start in range(0, BLOCK, CARD):
            card = block[start:start + CARD].decode("ascii", errors="replace")
            key = card[:8].strip()
            count += 1
            if key == "END":
                return cards
            if card[8:10] == "= " and key not in cards:
                cards[key] = card[10:].split("/", 1)[0].strip().strip("'").strip()
        if count > MAX_HEADER_CARDS:
            raise FitsStructureError(
                f"a header has more than {MAX_HEADER_CARDS} cards; refusing to parse it (a "
                "real frame has a few thousand at most)", kind="long", index=index,
            )


def _layout(cards: dict[str, str], index: int, start: int, data_start: int) -> HduLayout:
    bitpix = header_int(cards, "BITPIX", index)
    if bitpix not in _BITPIX:
        raise FitsStructureError(f"HDU {index} has BITPIX = {bitpix}, not one FITS allows",
                                 kind="keyword", index=index)
    naxis = header_int(cards, "NAXIS", index)
    if not 0 <= naxis <= 999:
        raise FitsStructureError(f"HDU {index} has NAXIS = {naxis}", kind="keyword", index=index)
    axes = [header_int(cards, f"NAXIS{i}", index) for i in range(1, naxis + 1)]
    if min(axes, default=0) < 0:
        raise FitsStructureError(f"HDU {index} has a negative axis length {axes}",
                                 kind="keyword", index=index)
    size = 0
    if naxis:
        # Random-groups primaries have NAXIS1 = 0 and count from NAXIS2 (FITS standard 6.1).
        cells = math.prod(axes[1:]) if axes[0] == 0 and index == 0 else math.prod(axes)
        size = abs(bitpix) // 8 * header_int(cards, "GCOUNT", index, 1) * (
            header_int(cards, "PCOUNT", index, 0) + cells)
    if cards.get("ZIMAGE", "") == "T":  # tile-compressed image: the real size is in ZNAXISn
        znaxis = header_int(cards, "ZNAXIS", index)
        pixels = math.prod(header_int(cards, f"ZNAXIS{i}", index) for i in range(1, znaxis + 1))
    elif cards.get("XTENSION", "IMAGE").upper() == "IMAGE" and naxis > 0:
        pixels = math.prod(axes)
    else:
        pixels = 0
    return HduLayout(index=index, cards=cards, header_start=start, data_start=data_start,
                     data_bytes=size, image_pixels=pixels)


def walk_hdus(stream: BinaryIO | io.BufferedIOBase, *, seekable: bool = True,
              max_hdus: int | None = None) -> Iterator[HduLayout]:
    """Each HDU's layout, in order, from the stream's current position (the start of the
    file). After the caller takes an HDU its data are skipped; data cut short raise
    ``FitsStructureError`` (kind 'data'), missing final padding is tolerated. Stops after
    ``max_hdus`` HDUs when given."""
    index = 0
    offset = 0
    while max_hdus is None or index < max_hdus:
        cards = _read_cards(stream, index)
        if cards is None:
            return
        data_start = int(stream.tell())  # a gzip stream tells its uncompressed offset
        hdu = _layout(cards, index, offset, data_start)
        yield hdu
        present = skip_bytes(stream, hdu.data_bytes, seekable=seekable)
        if present < hdu.data_bytes:
            raise FitsStructureError(
                f"HDU {index} declares {hdu.data_bytes} bytes of data but only {present} are "
                "present", kind="data", index=index, declared=hdu.data_bytes, present=present,
            )
        padding = -hdu.data_bytes % BLOCK
        skipped = skip_bytes(stream, padding, seekable=seekable)
        offset = hdu.data_start + hdu.data_bytes + skipped
        index += 1

