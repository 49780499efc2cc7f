"""Read one 2-D image plane from a FITS file into a :class:`~skyphot.io.frame.Frame`.

Handles plain, gzip/bzip2-compressed and tile-compressed (``.fits.fz``) files, multi-extension
files and integer data with BZERO/BSCALE. Every way a file can be unusable ends in a
one-line :class:`~skyphot.errors.FrameReadError` naming the file and the problem.
"""

from __future__ import annotations

import bz2
import gzip
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.utils.exceptions import AstropyUserWarning

from skyphot.errors import FrameReadError
from skyphot.io.frame import Frame

_FITS_SIGNATURE = b"SIMPLE  ="
_SUPPORTED = ".fits, .fit, .fts, .fits.fz, .fits.gz"

# Keywords of the primary header that describe the primary HDU itself (its structure or its
# own data), so they must not be copied onto an extension's header.
_STRUCTURAL = re.compile(
    r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|NEXTEND|XTENSION|PCOUNT|GCOUNT|EXTNAME|EXTVER|EXTLEVEL"
    r"|INHERIT|CHECKSUM|DATASUM|BZERO|BSCALE|BLANK|BUNIT|DATAMIN|DATAMAX|COMMENT|HISTORY)$"
)
# World-coordinate keywords. A primary WCS is only inherited by an extension that has none,
# otherwise the two could mix into a WCS that neither HDU describes.
_WCS_KEY = re.compile(
    r"^(WCSAXES|WCSNAME|CTYPE|CRVAL|CRPIX|CDELT|CUNIT|CROTA|CD\d+_|PC\d+_|PV\d+_|PS\d+_"
    r"|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|A_|B_|AP_|BP_)"
)

# Warnings astropy emits for headers it reads fine anyway (non-standard cards such as ESO's
# "ESO-LOG" lines); they are noise to someone measuring a frame.
_NOISE = re.compile(r"header keyword is invalid|non-standard|Card '|verif", re.IGNORECASE)


def read_frame(path: str | Path, *, hdu: int | str | None = None) -> Frame:
    """Read one image plane of a FITS file as float32 physical values.

    ``hdu`` selects the HDU by index or EXTNAME (e.g. ``"SCI"``); by default the first HDU
    holding 2-D image data is used. Integer data are scaled with BZERO/BSCALE (BLANK pixels
    become NaN); a single-plane cube (1, ny, nx) is squeezed to 2-D. The returned header is
    the image HDU's header plus the primary header's keywords it lacks (many instruments keep
    DATE-OBS or FILTER in the primary and the WCS in the extension); it is a copy, and it
    keeps the file's BITPIX/BZERO/BSCALE so the integer range of the detector stays known.

    Raises ``FrameReadError`` naming the file and the problem.
    """
    file = Path(path)
    _check_file(file)
    with _open_fits(file) as hdul:
        index, image_hdu = _select_hdu(hdul, hdu, file)
        data = _read_plane(image_hdu, index, file)
        primary = hdul[0].header if index != 0 else None
        header = _merged_header(image_hdu.header, primary)
        name = image_hdu.name or ("PRIMARY" if index == 0 else "")
    return Frame(data=data, header=header, path=str(file), hdu_index=index, hdu_name=name)


@dataclass(frozen=True)
class FrameHeader:
    """The header of the image HDU ``read_frame`` would read, without reading its pixels."""

    header: fits.Header
    shape: tuple[int, ...]
    hdu_index: int
    hdu_name: str


def read_header(path: str | Path, *, hdu: int | str | None = None) -> FrameHeader:
    """The merged header and shape of the image HDU ``read_frame`` would pick (cheap: no
    pixel data is read). Raises ``FrameReadError`` like ``read_frame``."""
    file = Path(path)
    _check_file(file)
    with _open_fits(file) as hdul:
        index, image_hdu = _select_hdu(hdul, hdu, file)
        primary = hdul[0].header if index != 0 else None
        header = _merged_header(image_hdu.header, primary)
        shape = _squeezed(_image_shape(image_hdu))
        name = image_hdu.name or ("PRIMARY" if index == 0 else "")
    return FrameHeader(header=header, shape=shape, hdu_index=index, hdu_name=name)


# --- the file itself ----------------------------------------------------------------------


def _check_file(file: Path) -> None:
    """Fail early, with a precise message, on files astropy would only call 'corrupt'."""
    if not file.exists():
        raise FrameReadError(f"{file}: file not found")
    if not file.is_file():
        raise FrameReadError(f"{file}: is not a regular file (a directory?)")
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise FrameReadError(f"{file}: cannot be read ({_one_line(exc)})") from exc
    if size == 0:
        raise FrameReadError(f"{file}: empty file (0 bytes)")
    try:
        compression, head = _leading_bytes(file)
    except EOFError as exc:
        raise FrameReadError(f"{file}: truncated compressed file ({_one_line(exc)})") from exc
    except OSError as exc:
        raise FrameReadError(f"{file}: cannot be read or decompressed ({_one_line(exc)})") from exc
    if not head.startswith(_FITS_SIGNATURE):
        raise FrameReadError(
            f"{file}: not a FITS file ({_describe_content(compression, head)}); "
            f"skyphot reads FITS images ({_SUPPORTED})"
        )


def _leading_bytes(file: Path, n: int = 80) -> tuple[str, bytes]:
    """The compression ('' , 'gzip', 'bzip2') and the first ``n`` bytes of the content."""
    with file.open("rb") as raw:
        magic = raw.read(3)
    if magic[:2] == b"\x1f\x8b":
        with gzip.open(file, "rb") as stream:
            return "gzip", stream.read(n)
    if magic == b"BZh":
        with bz2.open(file, "rb") as stream:
            return "bzip2", stream.read(n)
    with file.open("rb") as raw:
        return "", raw.read(n)


def _describe_content(compression: str, head: bytes) -> str:
    prefix = f"{compression}-compressed " if compression else ""
    if not head:
        return f"{prefix}content is empty"
    signatures = {
        b"\x89PNG": "a PNG image",
        b"\xff\xd8\xff": "a JPEG image",
        b"II*\x00": "a TIFF image",
        b"MM\x00*": "a TIFF image",
        b"%PDF": "a PDF document",
        b"\x89HDF": "an HDF5 file",
        b"PK\x03\x04": "a zip archive",
        b"SIMPLE": "a FITS-like header with a malformed first card",
    }
    for signature, what in signatures.items():
        if head.startswith(signature):
            return prefix + what
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return f"{prefix}unrecognised binary content"
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"{prefix}it looks like text: {text[:30].strip()!r}"
    return f"{prefix}unrecognised content"


@contextmanager
def _open_fits(file: Path) -> Iterator[fits.HDUList]:
    """Open lazily and memory-mapped; scaling is done here, not by astropy (see _read_plane)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = fits.open(file, memmap=True, do_not_scale_image_data=True, lazy_load_hdus=True)
        except (OSError, ValueError, EOFError) as exc:
            raise FrameReadError(
                f"{file}: truncated or corrupt FITS file{_gzip_problem(file)} ({_one_line(exc)})"
            ) from exc
        try:
            yield hdul
        finally:
            hdul.close()
    _reissue(caught)


def _gzip_problem(file: Path) -> str:
    """Say so when the compressed stream itself is cut short (only on the error path)."""
    try:
        with file.open("rb") as raw:
            if raw.read(2) != b"\x1f\x8b":
                return ""
        with gzip.open(file, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except (OSError, EOFError):
        return ": the gzip stream ends early"
    return ""


def _reissue(caught: list[warnings.WarningMessage]) -> None:
    for item in caught:
        message = str(item.message)
        if issubclass(item.category, (VerifyWarning, AstropyUserWarning)) and (
            _NOISE.search(message) or "may have been truncated" in message
        ):
            # Truncation is checked on the data itself: a file missing only its final
            # padding still holds every pixel and is accepted.
            continue
        warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


# --- choosing the HDU ---------------------------------------------------------------------


def _is_image_hdu(hdu: Any) -> bool:
    image_types = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)
    return isinstance(hdu, image_types) and not isinstance(hdu, fits.GroupsHDU)


def _image_shape(hdu: Any) -> tuple[int, ...]:
    """Shape of an image HDU's data in numpy order; () when it holds none."""
    header = hdu.header
    naxis = int(header.get("NAXIS", 0))
    shape = tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(naxis, 0, -1))
    return shape if shape and all(n > 0 for n in shape) else ()


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop leading length-1 axes (a FITS NAXIS3 = 1 plane), never the image axes."""
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _select_hdu(hdul: fits.HDUList, wanted: int | str | None, file: Path) -> tuple[int, Any]:
    try:
        if wanted is None:
            return _first_image(hdul, file)
        index = _find_requested(hdul, wanted, file)
        chosen = hdul[index]
    except (OSError, ValueError, EOFError, IndexError) as exc:
        raise FrameReadError(f"{file}: truncated or corrupt FITS file ({_one_line(exc)})") from exc
    label = _label(index, chosen)
    if not _is_image_hdu(chosen):
        raise FrameReadError(
            f"{file}: {label} is a {_kind(chosen)}, not an image; "
            f"HDUs in the file: {_inventory(hdul)}"
        )
    shape = _image_shape(chosen)
    if not shape:
        raise FrameReadError(
            f"{file}: {label} holds no image data; HDUs in the file: {_inventory(hdul)}"
        )
    _check_dimensions(shape, label, file)
    return index, chosen


def _find_requested(hdul: fits.HDUList, wanted: int | str, file: Path) -> int:
    if isinstance(wanted, str) and wanted.strip().isdigit():
        wanted = int(wanted.strip())
    count = len(hdul)
    if isinstance(wanted, int):
        if 0 <= wanted < count:
            return wanted
        raise FrameReadError(
            f"{file}: HDU {wanted} does not exist (the file has {count} HDU"
            f"{'s' if count != 1 else ''}: {_inventory(hdul)})"
        )
    target = wanted.strip().upper()
    for index in range(count):
        name = (hdul[index].name or ("PRIMARY" if index == 0 else "")).upper()
        if name == target:
            return index
    raise FrameReadError(f"{file}: no HDU named {wanted!r}; HDUs in the file: {_inventory(hdul)}")


def _first_image(hdul: fits.HDUList, file: Path) -> tuple[int, Any]:
    first_other: tuple[int, Any, tuple[int, ...]] | None = None
    for index, hdu in enumerate(hdul):
        if not _is_image_hdu(hdu):
            continue
        shape = _image_shape(hdu)
        if not shape:
            continue
        if len(_squeezed(shape)) == 2:
            return index, hdu
        if first_other is None:
            first_other = (index, hdu, shape)
    if first_other is not None:
        index, hdu, shape = first_other
        _check_dimensions(shape, _label(index, hdu), file)
    raise FrameReadError(
        f"{file}: no image data in any HDU ({_inventory(hdul)}); "
        "skyphot needs a 2-D image (a table or a header-only file cannot be measured)"
    )


def _check_dimensions(shape: tuple[int, ...], label: str, file: Path) -> None:
    plane = _squeezed(shape)
    if len(plane) == 2:
        return
    dims = "x".join(str(n) for n in shape[::-1])
    if len(plane) < 2:
        raise FrameReadError(
            f"{file}: {label} has {len(shape)}-D data ({dims}); "
            "unsupported dimension, skyphot needs a 2-D image"
        )
    planes = int(np.prod(plane[:-2]))
    raise FrameReadError(
        f"{file}: {label} is a data cube ({dims}, {planes} planes of "
        f"{plane[-1]}x{plane[-2]}); skyphot measures one 2-D image: extract a plane first"
    )


def _label(index: int, hdu: Any) -> str:
    return f"HDU {index} ({hdu.name})" if hdu.name else f"HDU {index}"


def _kind(hdu: Any) -> str:
    if isinstance(hdu, fits.BinTableHDU):
        return "binary table"
    if isinstance(hdu, fits.TableHDU):
        return "ASCII table"
    if isinstance(hdu, fits.GroupsHDU):
        return "random-groups HDU"
    return type(hdu).__name__


def _inventory(hdul: fits.HDUList) -> str:
    """'0 PRIMARY (no data), 1 SCI (image 1024x1024), ...' for messages."""
    parts = []
    try:
        for index, hdu in enumerate(hdul):
            name = hdu.name or "(unnamed)"
            if _is_image_hdu(hdu):
                shape = _image_shape(hdu)
                what = "image " + "x".join(str(n) for n in shape[::-1]) if shape else "no data"
            else:
                what = _kind(hdu)
            parts.append(f"{index} {name} ({what})")
    except (OSError, ValueError, EOFError) as exc:
        parts.append(f"then unreadable: {_one_line(exc)}")
    return ", ".join(parts)


# --- the pixels ---------------------------------------------------------------------------


def _read_plane(hdu: Any, index: int, file: Path) -> np.ndarray:
    """Force the data read here (so truncation surfaces now) and convert to float32."""
    label = _label(index, hdu)
    expected = _image_shape(hdu)
    try:
        raw = hdu.data
        if raw is None or tuple(raw.shape) != expected:
            raise FrameReadError(
                f"{file}: truncated FITS file: {label} should hold "
                f"{'x'.join(str(n) for n in expected[::-1])} pixels but has fewer"
            )
        # astype copies: the result no longer depends on the memory map once the file closes.
        data = raw.astype(np.float32)
        integer = raw.dtype.kind in "iu"
        blank = hdu.header.get("BLANK") if integer else None
        invalid = (raw == blank) if isinstance(blank, int) else None
        del raw
    except (TypeError, ValueError, OSError, EOFError) as exc:
        nbytes = abs(int(hdu.header.get("BITPIX", 8))) // 8 * int(np.prod(expected))
        raise FrameReadError(
            f"{file}: truncated FITS file: {label} should hold {nbytes} bytes of image data "
            f"but the file ends before them ({_one_line(exc)})"
        ) from exc
    except Exception as exc:
        if not isinstance(hdu, fits.CompImageHDU) or isinstance(exc, MemoryError):
            raise
        # The tile decompressor raises its own classes (CfitsioException, IndexError) on
        # damaged compressed data: that is a bad file, not a bug.
        raise FrameReadError(
            f"{file}: corrupt tile-compressed image data in {label} "
            f"({type(exc).__name__}: {_one_line(exc)}); re-create the .fz file"
        ) from exc
    data = _scale(data, hdu.header, invalid, file, label)
    return data if data.ndim == 2 else data.reshape(_squeezed(data.shape))


def _scale(
    data: np.ndarray, header: fits.Header, invalid: np.ndarray | None, file: Path, label: str
) -> np.ndarray:
    """Physical value = BZERO + BSCALE * stored value, in place on our own float32 copy."""
    try:
        bscale = float(header.get("BSCALE", 1.0))
        bzero = float(header.get("BZERO", 0.0))
    except (TypeError, ValueError) as exc:
        raise FrameReadError(
            f"{file}: {label} has a non-numeric BSCALE/BZERO "
            f"({header.get('BSCALE')!r}/{header.get('BZERO')!r})"
        ) from exc
    if bscale != 1.0:
        data *= np.float32(bscale)
    if bzero != 0.0:
        data += np.float32(bzero)
    if invalid is not None and invalid.any():
        data[invalid] = np.nan
    return data


def _one_line(exc: BaseException) -> str:
    """astropy/wcslib messages can span lines; ours are one line."""
    return " ".join(str(exc).split())


# --- the header ---------------------------------------------------------------------------


def _merged_header(image: fits.Header, primary: fits.Header | None) -> fits.Header:
    """A copy of ``image`` plus the primary's keywords it lacks (never mutates either)."""
    merged = image.copy()
    if primary is None:
        return merged
    has_wcs = any(key in image for key in ("CTYPE1", "CTYPE2", "CD1_1", "PC1_1", "CRVAL1"))
    for card in primary.cards:
        key = card.keyword
        if not key or _STRUCTURAL.match(key) or key in merged:
            continue
        if has_wcs and _WCS_KEY.match(key):
            continue
        merged.append(fits.Card(key, card.value, card.comment), end=True)
    return merged
