"""FITS-LDAC catalogs: the format SExtractor writes and SCAMP/PSFEx read.

An LDAC file is an empty primary HDU followed by pairs of binary tables: ``LDAC_IMHEAD``
(one row holding the image header as text) and ``LDAC_OBJECTS`` (the sources).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from skyphot.errors import ExternalToolError

_CARD = 80


_FORMAT_CODES = {"f8": "D", "f4": "E", "i2": "I", "i4": "J", "i8": "K", "u1": "B"}


def _column(name: str, values: np.ndarray) -> fits.Column:
    # The AstrOmatic readers need the repeat count spelled out ("1D", not "D").
    code = _FORMAT_CODES.get(values.dtype.str[1:])
    if code is None:
        raise TypeError(f"LDAC column {name!r}: unsupported dtype {values.dtype}")
    cell = values.shape[1:]
    repeat = int(np.prod(cell)) if cell else 1
    dim = "(" + ", ".join(str(n) for n in reversed(cell)) + ")" if len(cell) > 1 else None
    return fits.Column(name=name, format=f"{repeat}{code}", dim=dim, array=values)


def write_ldac(path: Path, header: fits.Header, objects: Table) -> Path:
    """Write ``objects`` with the image ``header`` as a one-extension FITS-LDAC file."""
    text = header.tostring(sep="", endcard=True, padding=False)
    ncards = len(text) // _CARD
    column = fits.Column(
        name="Field Header Card",
        format=f"{len(text)}A",
        array=np.array([text.encode("ascii")], dtype=f"S{len(text)}"),
    )
    imhead = fits.BinTableHDU.from_columns([column], name="LDAC_IMHEAD")
    imhead.header.insert("TFORM1", ("TDIM1", f"({_CARD}, {ncards})"), after=True)
    table = fits.BinTableHDU.from_columns(
        [_column(name, np.asarray(objects[name])) for name in objects.colnames],
        name="LDAC_OBJECTS",
    )
    fits.HDUList([fits.PrimaryHDU(), imhead, table]).writeto(path, overwrite=True)
    # astropy pads the header text with NULs instead of the blanks of the last card, and the
    # AstrOmatic readers crash on that: write the text again, byte for byte, in place.
    with fits.open(path) as hdul:
        offset = int(hdul.fileinfo(1)["datLoc"])
    with path.open("r+b") as stream:
        stream.seek(offset)
        stream.write(text.encode("ascii"))
    return path


def read_ldac_objects(path: Path, tool: str) -> Table:
    """The first ``LDAC_OBJECTS`` table of an LDAC file a tool wrote.

    Raises ``ExternalToolError`` naming ``tool`` when the file is missing or malformed.
    """
    if not path.is_file():
        raise ExternalToolError(
            f"{tool} finished but wrote no catalog {path.name}; run it by hand with the same "
            "configuration to see why"
        )
    with fits.open(path) as hdul:
        for hdu in hdul:
            if hdu.name == "LDAC_OBJECTS":
                return Table(hdu.data, copy=True)
    raise ExternalToolError(f"{tool} wrote {path.name} without an LDAC_OBJECTS table")


def read_ldac_header(path: Path) -> fits.Header:
    """The image header stored in the first ``LDAC_IMHEAD`` table of an LDAC file."""
    with fits.open(path) as hdul:
        raw = hdul["LDAC_IMHEAD"].data[0][0]
    # Table strings lose their trailing blanks on reading; every card is 80 characters.
    cards = raw if isinstance(raw, np.ndarray) else [str(raw)]
    text = "".join(str(card).ljust(_CARD) for card in cards)
    return fits.Header.fromstring(text)
