"""Small spherical-geometry helpers shared by the catalog modules (degrees throughout)."""

from __future__ import annotations

import numpy as np
from astropy.coordinates import SkyCoord
from numpy.typing import ArrayLike, NDArray


def center_degrees(center: SkyCoord) -> tuple[float, float]:
    """ICRS (ra, dec) of a scalar ``SkyCoord``, degrees."""
    icrs = center.icrs
    return float(icrs.ra.deg), float(icrs.dec.deg)


def separation_deg(
    ra: ArrayLike, dec: ArrayLike, ra0: float, dec0: float
) -> NDArray[np.float64]:
    """Great-circle distance (degrees) from (ra0, dec0) to each (ra, dec), all in degrees.

    Haversine form: accurate for the small separations cone searches deal with.
    """
    ra_r = np.radians(np.asarray(ra, dtype=np.float64))
    dec_r = np.radians(np.asarray(dec, dtype=np.float64))
    ra0_r, dec0_r = np.radians(ra0), np.radians(dec0)
    hav = np.sin((dec_r - dec0_r) / 2) ** 2 + np.cos(dec_r) * np.cos(dec0_r) * np.sin(
        (ra_r - ra0_r) / 2
    ) ** 2
    return np.asarray(np.degrees(2 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0)))))


def cone_mask(
    ra: ArrayLike, dec: ArrayLike, ra0: float, dec0: float, radius_deg: float
) -> NDArray[np.bool_]:
    """True for positions within ``radius_deg`` of (ra0, dec0); NaN positions are False."""
    with np.errstate(invalid="ignore"):
        return np.asarray(separation_deg(ra, dec, ra0, dec0) <= radius_deg)


def bounding_cone(
    ra: ArrayLike, dec: ArrayLike
) -> tuple[float, float, float]:
    """A circle (ra, dec, radius; degrees) holding every position: centre at the mean
    direction, radius to the farthest point. Raises ``ValueError`` if there are none."""
    ra_r = np.radians(np.asarray(ra, dtype=np.float64))
    dec_r = np.radians(np.asarray(dec, dtype=np.float64))
    if ra_r.size == 0:
        raise ValueError("no positions")
    xyz = np.stack([np.cos(dec_r) * np.cos(ra_r), np.cos(dec_r) * np.sin(ra_r), np.sin(dec_r)])
    mean = xyz.mean(axis=1)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-12:  # positions spread all over the sphere
        return 0.0, 0.0, 180.0
    x, y, z = mean / norm
    ra0 = float(np.degrees(np.arctan2(y, x)) % 360.0)
    dec0 = float(np.degrees(np.arcsin(np.clip(z, -1.0, 1.0))))
    radius = float(np.max(separation_deg(np.degrees(ra_r), np.degrees(dec_r), ra0, dec0)))
    return ra0, dec0, radius
