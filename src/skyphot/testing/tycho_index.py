"""Tycho-2 positions and VT magnitudes from an astrometry.net index file, offline.

The Debian packages ``astrometry-data-tycho2-*`` install index files whose star kd-tree
holds unit vectors (3 u32 per star, scaled into the range stored beside them) and whose
``MAG_VT`` tag-along table gives each star's Tycho VT magnitude in the same order. That is
enough to build a small reference catalog for a field with no network: positions good to
the kd-tree quantisation (~1e-4 arcsec) and VT to its float32 precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from skyphot.errors import InputError

DEFAULT_INDEX = Path("/usr/share/astrometry/index-tycho2-08.littleendian.fits")


def _table_bytes(hdul: fits.HDUList, name: str) -> bytes:
    for hdu in hdul[1:]:
        if isinstance(hdu, fits.BinTableHDU) and hdu.columns.names == [name]:
            return bytes(hdu.data.tobytes())
    raise InputError(f"the index file has no {name!r} table; is it an astrometry.net index?")


def tycho2_cone(index: Path, ra: float, dec: float, radius_deg: float) -> Table:
    """Stars (ra, dec in deg; VT in mag) of ``index`` within ``radius_deg`` of (ra, dec).

    Raises ``InputError`` when the file lacks the star kd-tree or the MAG_VT tag-along.
    """
    with fits.open(index, memmap=True) as hdul:
        endian = "<" if hdul[0].header.get("ENDIAN", "04:03:02:01") == "04:03:02:01" else ">"
        data = np.frombuffer(_table_bytes(hdul, "kdtree_data_stars"), dtype=f"{endian}u4")
        scaling = np.frombuffer(_table_bytes(hdul, "kdtree_range_stars"), dtype=f"{endian}f8")
        mag = np.frombuffer(_table_bytes(hdul, "MAG_VT"), dtype=">f4")
    low, scale = scaling[:3], scaling[6]
    xyz = low[None, :] + data.reshape(-1, 3).astype(float) / scale
    if mag.size != xyz.shape[0]:
        raise InputError(
            f"the index file's MAG_VT table has {mag.size} rows for {xyz.shape[0]} stars"
        )
    ra0, dec0 = np.radians(ra), np.radians(dec)
    centre = np.array([np.cos(dec0) * np.cos(ra0), np.cos(dec0) * np.sin(ra0), np.sin(dec0)])
    norm = np.linalg.norm(xyz, axis=1)
    near = xyz @ centre >= np.cos(np.radians(radius_deg)) * norm
    sel = xyz[near] / norm[near, None]
    table = Table()
    table["ra"] = np.degrees(np.arctan2(sel[:, 1], sel[:, 0])) % 360.0
    table["dec"] = np.degrees(np.arcsin(np.clip(sel[:, 2], -1.0, 1.0)))
    table["VT"] = mag[near].astype(float)
    return table
