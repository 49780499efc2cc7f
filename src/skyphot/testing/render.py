"""Batched rendering of many stars into an image (truth-preserving, vectorised).

Each star is drawn on a square stamp centred on its nearest pixel. The stamp half-width is
the larger of two radii: the one outside which at most ``max_outside_fraction`` of the star's
flux falls, and the one beyond which the star's profile is below ``wing_level`` ADU per pixel
(so bright stars get big stamps for their Moffat wings). Truth fluxes are always totals over
the infinite plane; the image misses only the flux outside the stamps.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from skyphot.testing.psf import (
    MAX_HALFWIDTH,
    MoffatField,
    grid_q,
    integrate_pixels,
    profile,
    render_stamps,
)

FloatArray = NDArray[np.float64]

# Largest number of stamp pixels evaluated at once (bounds temporary memory to ~100 MB).
_CHUNK_PIXELS = 1_500_000
# Stars with bigger stamps are drawn one by one, only where the stamp overlaps the frame.
_BATCH_MAX_HALFWIDTH = 48


def stamp_halfwidths(
    flux: FloatArray,
    a: FloatArray,
    norm: FloatArray,
    beta: float,
    *,
    wing_level: float,
    max_outside_fraction: float,
) -> NDArray[np.int64]:
    """Stamp half-width (px) per star; see the module docstring for the two criteria."""
    r_frac = a * math.sqrt(max_outside_fraction ** (-1.0 / (beta - 1.0)) - 1.0)
    ratio = np.maximum(flux * norm / wing_level, 1.0)
    r_wing = a * np.sqrt(ratio ** (1.0 / beta) - 1.0)
    half = np.ceil(np.maximum(r_frac, r_wing)).astype(np.int64)
    half += half % 2  # even half-widths: fewer distinct stamp sizes, bigger batches
    return np.minimum(half, MAX_HALFWIDTH)


def add_stamp(image: FloatArray, stamp: FloatArray, x0: int, y0: int) -> None:
    """Add ``stamp`` (its [0, 0] at frame pixel (x0, y0)) to ``image`` in place, clipped."""
    ny, nx = image.shape
    sy, sx = stamp.shape
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + sx, nx), min(y0 + sy, ny)
    if xa >= xb or ya >= yb:
        return
    image[ya:yb, xa:xb] += stamp[ya - y0 : yb - y0, xa - x0 : xb - x0]


def unit_stamps(
    psf: MoffatField, x: FloatArray, y: FloatArray, half: int
) -> tuple[FloatArray, NDArray[np.int64], NDArray[np.int64]]:
    """Unit-flux stamps (n, 2h+1, 2h+1) and the frame pixel (x0, y0) of each stamp's [0, 0]."""
    A, B, C, norm = psf.coefficients(x, y)
    offsets = np.arange(-half, half + 1)
    xi = np.rint(x).astype(np.int64)
    yi = np.rint(y).astype(np.int64)
    dx = (xi[:, None] + offsets[None, :]) - x[:, None]
    dy = (yi[:, None] + offsets[None, :]) - y[:, None]
    stamps = render_stamps(dx, dy, A, B, C, norm, psf.beta, zones=psf.zones())
    return stamps, xi - half, yi - half


def render_stars(
    shape: tuple[int, int],
    x: FloatArray,
    y: FloatArray,
    flux: FloatArray,
    psf: MoffatField,
    *,
    wing_level: float,
    max_outside_fraction: float,
) -> FloatArray:
    """Noiseless image (ADU, float64) of stars with total fluxes ``flux`` (ADU) at (x, y) px."""
    ny, nx = shape
    image = np.zeros(shape)
    if len(x) == 0:
        return image
    a, _ = psf.axes_array(x, y)
    *_, norm = psf.coefficients(x, y)
    half = stamp_halfwidths(
        flux, a, norm, psf.beta, wing_level=wing_level, max_outside_fraction=max_outside_fraction
    )
    # stars whose stamp cannot touch the frame contribute nothing
    touches = (x + half >= -0.5) & (x - half <= nx - 0.5) & (y + half >= -0.5) & (
        y - half <= ny - 0.5
    )
    for k in np.flatnonzero(touches & (half > _BATCH_MAX_HALFWIDTH)):
        add_star_clipped(image, float(x[k]), float(y[k]), float(flux[k]), psf, int(half[k]))
    small = touches & (half <= _BATCH_MAX_HALFWIDTH)
    for h in np.unique(half[small]):
        idx = np.flatnonzero(small & (half == h))
        per_chunk = max(1, _CHUNK_PIXELS // (2 * int(h) + 1) ** 2)
        for start in range(0, len(idx), per_chunk):
            sel = idx[start : start + per_chunk]
            stamps, x0, y0 = unit_stamps(psf, x[sel], y[sel], int(h))
            stamps *= flux[sel][:, None, None]
            for j in range(len(sel)):
                add_stamp(image, stamps[j], int(x0[j]), int(y0[j]))
    return image


def add_star_clipped(
    image: FloatArray, x: float, y: float, flux: float, psf: MoffatField, half: int
) -> None:
    """Add one star (total ``flux`` ADU) in place, evaluating only the stamp's part on the frame.

    Memory stays bounded for huge stamps (bright stars' wings): rows are done in blocks.
    """
    ny, nx = image.shape
    xi, yi = round(x), round(y)
    xa, xb = max(xi - half, 0), min(xi + half, nx - 1)
    ya, yb = max(yi - half, 0), min(yi + half, ny - 1)
    if xa > xb or ya > yb:
        return
    xs, ys = np.array([x]), np.array([y])
    A, B, C, norm = psf.coefficients(xs, ys)
    dx = (np.arange(xa, xb + 1, dtype=np.float64) - x)[None, :]
    rows = max(1, _CHUNK_PIXELS // dx.shape[1])
    for r0 in range(ya, yb + 1, rows):
        r1 = min(r0 + rows, yb + 1)
        dy = (np.arange(r0, r1, dtype=np.float64) - y)[None, :]
        block = profile(grid_q(dx, dy, A, B, C), psf.beta)[0]
        image[r0:r1, xa : xb + 1] += (flux * norm[0]) * block
    # the central zones (nested, outermost first): replace what the previous step drew
    # (pixel-centre values, then the coarser Gauss-Legendre rule) by the finer pixel integrals
    previous: int | None = None
    for zone_half, order in psf.zones():
        h = min(zone_half, half)
        zxa, zxb = max(xi - h, 0), min(xi + h, nx - 1)
        zya, zyb = max(yi - h, 0), min(yi + h, ny - 1)
        if zxa > zxb or zya > zyb:
            continue
        zdx = (np.arange(zxa, zxb + 1, dtype=np.float64) - x)[None, :]
        zdy = (np.arange(zya, zyb + 1, dtype=np.float64) - y)[None, :]
        if previous is None:
            drawn = profile(grid_q(zdx, zdy, A, B, C), psf.beta)[0] * norm[0]
        else:
            drawn = integrate_pixels(zdx, zdy, A, B, C, norm, psf.beta, previous)[0]
        exact = integrate_pixels(zdx, zdy, A, B, C, norm, psf.beta, order)[0]
        image[zya : zyb + 1, zxa : zxb + 1] += flux * (exact - drawn)
        previous = order
