"""Finding the FITS files of a batch and the checks made before any byte is uploaded."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import BinaryIO

from skyphot.errors import InputError
from skyphot.io.fits_walk import BLOCK, FitsStructureError, walk_hdus

# What the server's upload form accepts for the image (skyphot.web.uploads.FITS_SUFFIXES),
# longest first so that ".fits.gz" wins over ".gz".
FITS_SUFFIXES = (".fits.fz", ".fits.gz", ".fit.gz", ".fit.fz", ".fts.gz", ".fits", ".fit",
                 ".fts", ".fz")
FITS_MAGIC = b"SIMPLE  ="  # the first keyword of every FITS file, padded to column 9
GZIP_MAGIC = b"\x1f\x8b"


def is_fits_name(path: Path) -> bool:
    """True when the file name ends in one of the FITS suffixes the server accepts."""
    return path.name.lower().endswith(FITS_SUFFIXES)


def find_fits_files(spec: str) -> list[Path]:
    """FITS files named by ``spec``: a directory (its FITS files, not recursive), a glob
    pattern (``**`` recurses) or one file. Sorted by path.

    Raises ``InputError`` when nothing matches, saying what was looked for.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and is_fits_name(p)]
        where = f"directory {spec}"
    elif path.is_file():
        found = [path]
        where = f"file {spec}"
    else:
        found = [p for p in _glob(path) if p.is_file() and is_fits_name(p)]
        where = f"pattern {spec!r}"
    if not found:
        raise InputError(
            f"no FITS files in {where} (looked for names ending in "
            f"{', '.join(FITS_SUFFIXES)}); give a directory, a glob such as 'night/*.fits' "
            "(quote it) or a file"
        )
    return sorted(found)


def _glob(pattern: Path) -> list[Path]:
    """Matches of a pattern that may be absolute: the wildcard-free leading directories
    are the base, the rest is globbed below it."""
    parts = pattern.parts
    first = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")),
                 len(parts))
    if first == len(parts):
        return []
    base = Path(*parts[:first]) if first else Path()
    return list(base.glob("/".join(parts[first:])))


def _leading_bytes(path: Path) -> bytes:
    """The first FITS block of the file, decompressed when it is gzip."""
    with path.open("rb") as stream:
        head = stream.read(BLOCK)
    if not head.startswith(GZIP_MAGIC):
        return head
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read(len(FITS_MAGIC))
    except (OSError, EOFError, zlib.error) as err:
        # gzip raises BadGzipFile (an OSError) or EOFError for a damaged or cut stream.
        return f"<gzip error: {err}>".encode()


def structure_problem(stream: BinaryIO, *, seekable: bool = True) -> str | None:
    """Why a FITS byte stream is cut short or malformed, or None when every HDU is whole.

    Walks the headers and skips each HDU's data by the size its header declares, without
    reading pixels (``skyphot.io.fits_walk``); missing final padding is tolerated.
    """
    try:
        for _ in walk_hdus(stream, seekable=seekable):
            pass
    except FitsStructureError as err:
        if err.kind == "data":
            return (f"the file is truncated: HDU {err.index} declares {err.declared} bytes of "
                    f"data but only {err.present} are present; copy or download it again")
        if err.kind == "header":
            return (f"the header of HDU {err.index} does not end (no END card before the end "
                    "of the file): the file is truncated or corrupt; copy it again")
        return f"the FITS header is malformed: {err}; the file is corrupt"
    return None


def _structure(path: Path, compressed: bool) -> str | None:
    if not compressed:
        with path.open("rb") as stream:
            return structure_problem(stream)
    try:
        with gzip.open(path, "rb") as stream:
            return structure_problem(stream, seekable=False)  # type: ignore[arg-type]
    except (OSError, EOFError, zlib.error) as err:
        return f"the gzip stream is damaged ({err}); copy or download the file again"


def check_file(path: Path, *, max_bytes: int | None = None, overhead: int = 0) -> str | None:
    """Why ``path`` cannot be uploaded, or None when it may be.

    Checks, in order: readable, not empty, not larger than ``max_bytes`` (the server's
    ``max_body_size`` in bytes, when known) once ``overhead`` bytes of form data are added,
    FITS by its magic bytes (``SIMPLE  =``, inside the gzip stream for ``.gz`` files), and
    whole: every header ends and every HDU has the data its header declares.
    """
    try:
        size = path.stat().st_size
        head = _leading_bytes(path) if size else b""
    except OSError as err:
        return f"cannot read the file ({err.strerror or err})"
    if size == 0:
        return "the file is empty (0 bytes)"
    if max_bytes is not None and size + overhead > max_bytes:
        return (
            f"the file ({size / 1e6:.1f} MB) is larger than the server's upload limit of "
            f"{max_bytes / 1e6:g} MB (max_body_size); compress it (e.g. fpack to .fits.fz) "
            "or ask the administrator to raise max_body_size"
        )
    if head.startswith(b"<gzip error:"):
        return f"the gzip stream is damaged ({head[13:-1].decode(errors='replace')})"
    if not head.startswith(FITS_MAGIC):
        return (
            "not a FITS file: it does not start with 'SIMPLE  =' (the first bytes are "
            f"{head[:16]!r}); upload the FITS image itself"
        )
    try:
        with path.open("rb") as stream:
            compressed = stream.read(2) == GZIP_MAGIC
        return _structure(path, compressed)
    except OSError as err:
        return f"cannot read the file ({err.strerror or err})"
