"""Leave-one-out on real frames: each catalog star on the frame measured as the target with
itself removed from the calibration catalog. Its catalog magnitude is then an independent
truth, and the scatter of (measured - catalog) can be held against the reported errors.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig


@dataclass(frozen=True)
class LeftOut:
    """One star measured as the target without itself in the catalog."""

    ra: float
    dec: float
    x: float
    y: float
    cat_mag: float
    cat_err: float
    mag: float | None  # None: not detected
    magerr: float | None
    flags: tuple[str, ...]

    @property
    def pull(self) -> float:
        """(mag - catalog) / sqrt(magerr^2 + cat_err^2); NaN when not detected."""
        if self.mag is None or self.magerr is None:
            return math.nan
        return (self.mag - self.cat_mag) / math.hypot(self.magerr, self.cat_err)


def stars_on_frame(image: Path, catalog: Table, *, margin_px: float, hdu: int = 0) -> np.ndarray:
    """Indices of catalog rows at least ``margin_px`` inside the frame's header WCS."""
    header = fits.getheader(image, hdu)
    wcs = WCS(header).celestial
    ny, nx = int(header["NAXIS2"]), int(header["NAXIS1"])
    x, y = wcs.all_world2pix(np.asarray(catalog["ra"], float), np.asarray(catalog["dec"], float), 0)
    inside = (x >= margin_px) & (x <= nx - 1 - margin_px) & (y >= margin_px) & (
        y <= ny - 1 - margin_px)
    return np.flatnonzero(inside)


def leave_one_out(
    image: Path,
    catalog: Table,
    band: str,
    *,
    rows: np.ndarray,
    cat_err: float,
    settings: dict[str, Any],
) -> list[LeftOut]:
    """Measure each catalog row in ``rows`` as the target, with that row removed.

    ``cat_err``: the catalog's magnitude error (mag) when it has no ``<band>_err`` column.
    ``settings``: further ``MeasureConfig`` fields (band, header values...).
    """
    out: list[LeftOut] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in rows:
            keep = np.ones(len(catalog), dtype=bool)
            keep[i] = False
            path = Path(tmp) / f"without_{i}.ecsv"
            catalog[keep].write(path, overwrite=True)
            ra, dec = float(catalog["ra"][i]), float(catalog["dec"][i])
            config = MeasureConfig.model_validate(
                {"target": {"ra": ra, "dec": dec}, "catalog": {"path": str(path)}, **settings}
            )
            result = measure(image, config)
            err_col = f"{band}_err"
            err = float(catalog[err_col][i]) if err_col in catalog.colnames else cat_err
            out.append(LeftOut(
                ra=ra, dec=dec, x=result.x, y=result.y, cat_mag=float(catalog[band][i]),
                cat_err=err, mag=result.mag, magerr=result.magerr,
                flags=tuple(result.flag_names),
            ))
    return out
