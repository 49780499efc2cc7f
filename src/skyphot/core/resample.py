"""Resample an image from one WCS onto another's pixel grid (flux conserving).

The pixel-to-pixel map is evaluated exactly on a coarse grid and interpolated between its
nodes (it is smooth), which costs a few WCS calls instead of one per pixel.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from scipy.ndimage import map_coordinates, spline_filter

from skyphot.core.psf import PSFModel
from skyphot.errors import InputError

# Coarse-grid spacing of the pixel map, px: its interpolation error is far below 0.01 px.
_MAP_STEP = 32
# The spline is evaluated in this many bands of rows at once: scipy's interpolation
# releases the GIL, so the bands run in parallel (the frame is 2048x2048 and the
# machine has two cores); every pixel's value is the same as in one call.
_THREADS = 2


@dataclass(frozen=True)
class PixelMap:
    """Source-image pixel coordinates (x, y) of every destination pixel, and the local
    ratio of destination to source pixel area."""

    x: np.ndarray
    y: np.ndarray
    area_ratio: np.ndarray


def pixel_map(
    src_wcs: WCS, dst_wcs: WCS, dst_shape: tuple[int, int], *, origin: tuple[int, int] = (0, 0)
) -> PixelMap:
    """Map the destination region of ``dst_shape`` starting at destination pixel ``origin``
    (x0, y0) into source pixels."""
    ny, nx = dst_shape
    x0, y0 = origin
    gx = np.unique(np.r_[np.arange(0, nx, _MAP_STEP), nx - 1]).astype(float)
    gy = np.unique(np.r_[np.arange(0, ny, _MAP_STEP), ny - 1]).astype(float)
    mx, my = np.meshgrid(gx + x0, gy + y0)
    ra, dec = dst_wcs.all_pix2world(mx, my, 0)
    sx, sy = src_wcs.all_world2pix(ra, dec, 0)
    if not (np.all(np.isfinite(sx)) and np.all(np.isfinite(sy))):
        raise InputError("the template's WCS cannot map the science frame's sky")
    # Fractional node index of every destination pixel; the map is bilinear between nodes
    # (a TAN(-SIP) map curves by far less than 0.01 px over a cell), done separably.
    fy = np.interp(np.arange(ny, dtype=float), gy, np.arange(gy.size, dtype=float))
    fx = np.interp(np.arange(nx, dtype=float), gx, np.arange(gx.size, dtype=float))
    xs = _bilinear(sx, fx, fy)
    ys = _bilinear(sy, fx, fy)
    # Jacobian of the map (source px per destination px) on the coarse grid -> area ratio.
    dxdx = np.gradient(sx, gx, axis=1)
    dxdy = np.gradient(sx, gy, axis=0)
    dydx = np.gradient(sy, gx, axis=1)
    dydy = np.gradient(sy, gy, axis=0)
    det = np.abs(dxdx * dydy - dxdy * dydx)
    area = _bilinear(det, fx, fy)
    return PixelMap(x=xs, y=ys, area_ratio=area)


def _bilinear(nodes: np.ndarray, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a node grid at fractional node coordinates: ``fx`` along
    the columns for every output column, ``fy`` along the rows for every output row."""
    kx = np.minimum(np.floor(fx).astype(np.intp), nodes.shape[1] - 2) if nodes.shape[1] > 1 \
        else np.zeros(fx.size, dtype=np.intp)
    ky = np.minimum(np.floor(fy).astype(np.intp), nodes.shape[0] - 2) if nodes.shape[0] > 1 \
        else np.zeros(fy.size, dtype=np.intp)
    tx = np.clip(fx - kx, 0.0, 1.0) if nodes.shape[1] > 1 else np.zeros(fx.size)
    ty = np.clip(fy - ky, 0.0, 1.0) if nodes.shape[0] > 1 else np.zeros(fy.size)
    right = np.minimum(kx + 1, nodes.shape[1] - 1)
    up = np.minimum(ky + 1, nodes.shape[0] - 1)
    rows = nodes[:, kx] * (1.0 - tx) + nodes[:, right] * tx  # (n_nodes_y, nx)
    return np.asarray(rows[ky] * (1.0 - ty)[:, None] + rows[up] * ty[:, None])


def resample(
    image: np.ndarray, pmap: PixelMap, *, order: int = 3, flux: bool = True
) -> np.ndarray:
    """``image`` interpolated at ``pmap``; NaN outside the source. ``flux``: multiply by the
    area ratio so per-pixel counts stay counts (surface brightness times pixel area)."""
    if order not in (0, 1, 3, 5):
        raise InputError(f"resampling order must be 0, 1, 3 or 5, got {order}")
    ny, nx = image.shape
    # Only the part of the source the map reaches (plus the spline's reach) is filtered and
    # interpolated: a template larger than the frame costs nothing extra.
    pad = 12
    x_lo = int(np.clip(np.floor(np.min(pmap.x)) - pad, 0, nx))
    x_hi = int(np.clip(np.ceil(np.max(pmap.x)) + pad + 1, 0, nx))
    y_lo = int(np.clip(np.floor(np.min(pmap.y)) - pad, 0, ny))
    y_hi = int(np.clip(np.ceil(np.max(pmap.y)) + pad + 1, 0, ny))
    if x_hi - x_lo < 2 or y_hi - y_lo < 2:
        return np.full(pmap.x.shape, np.nan)
    src = np.asarray(image[y_lo:y_hi, x_lo:x_hi], dtype=np.float64)
    # The spline coefficients once for all bands, as map_coordinates makes them itself.
    coeffs = spline_filter(src, order, output=np.float64, mode="constant") if order > 1 else src
    out = np.empty(pmap.x.shape)
    rows = pmap.x.shape[0]
    bands = [slice(i * rows // _THREADS, (i + 1) * rows // _THREADS) for i in range(_THREADS)]

    def evaluate(band: slice) -> None:
        out[band] = map_coordinates(
            coeffs, [pmap.y[band] - y_lo, pmap.x[band] - x_lo], order=order,
            mode="constant", cval=0.0, prefilter=False,
        )

    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        list(pool.map(evaluate, bands))  # list(): re-raises a band's exception here
    outside = (pmap.x < -0.5) | (pmap.x > nx - 0.5) | (pmap.y < -0.5) | (pmap.y > ny - 0.5)
    out[outside] = np.nan
    if flux:
        out *= pmap.area_ratio
    return out


@dataclass(frozen=True)
class NearestPixels:
    """The nearest source pixel of every destination pixel, as a flat index into a source
    image of ``shape``, and whether it is on the source (``inside``; ``all_inside`` when
    every one is): computed once for several maps of one grid."""

    flat: np.ndarray
    inside: np.ndarray
    all_inside: bool
    shape: tuple[int, int]


def nearest_pixels(pmap: PixelMap, shape: tuple[int, ...]) -> NearestPixels:
    """The nearest pixels of ``pmap`` on a source image of ``shape`` (ny, nx)."""
    ny, nx = int(shape[0]), int(shape[1])
    xi = np.rint(pmap.x).astype(np.intp)
    yi = np.rint(pmap.y).astype(np.intp)
    inside = (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
    # Off-source indices are clipped so that lookups need no mask; ``inside`` says which.
    np.clip(xi, 0, nx - 1, out=xi)
    np.clip(yi, 0, ny - 1, out=yi)
    yi *= nx
    yi += xi
    return NearestPixels(flat=yi, inside=inside, all_inside=bool(inside.all()),
                         shape=(ny, nx))


def sample_nearest(
    image: np.ndarray, pmap: PixelMap, *, fill: float, nearest: NearestPixels | None = None
) -> np.ndarray:
    """``image`` at the nearest source pixel of each destination pixel (``fill`` outside):
    for masks and for smooth maps such as a background rms, at a fraction of a spline's
    cost. ``nearest``: ``nearest_pixels(pmap, image.shape)``, when already at hand."""
    near = nearest if nearest is not None else nearest_pixels(pmap, image.shape)
    if near.flat.shape != pmap.x.shape or near.shape != image.shape[:2]:
        raise InputError("the nearest pixels were made for another pixel map or image")
    dtype = np.result_type(image.dtype, np.asarray(fill))
    # one flat gather (np.take) is several times faster than indexing by row and column
    out = np.take(np.ravel(image), near.flat).astype(dtype, copy=False)
    if not near.all_inside:
        out[~near.inside] = fill
    return out


def pixel_map_jacobian(pmap: PixelMap, i: int, j: int) -> np.ndarray:
    """d(source x, y) / d(destination x, y) at destination pixel (i, j) of ``pmap``
    (central differences, one-sided at its edges)."""
    ny, nx = pmap.x.shape
    i0, i1 = max(i - 1, 0), min(i + 1, nx - 1)
    j0, j1 = max(j - 1, 0), min(j + 1, ny - 1)
    jac = np.empty((2, 2))
    jac[0, 0] = (pmap.x[j, i1] - pmap.x[j, i0]) / (i1 - i0)
    jac[0, 1] = (pmap.x[j1, i] - pmap.x[j0, i]) / (j1 - j0)
    jac[1, 0] = (pmap.y[j, i1] - pmap.y[j, i0]) / (i1 - i0)
    jac[1, 1] = (pmap.y[j1, i] - pmap.y[j0, i]) / (j1 - j0)
    return jac


def psf_on_grid(
    psf: PSFModel, x: float, y: float, jac: np.ndarray, size: int, *, order: int
) -> np.ndarray:
    """The source image's PSF at its pixel (x, y), resampled through the local map ``jac``
    (``pixel_map_jacobian``) onto the destination grid as a centred ``size`` stamp of unit
    sum, with splines of ``order`` (the one the image itself is resampled with)."""
    scale = float(np.max(np.abs(jac)))
    native = 2 * math.ceil(size * max(scale, 1.0) * 0.75) + 1
    stamp, sx0, sy0 = psf.render(x, y, native)
    h = size // 2
    dy, dx = np.mgrid[-h : h + 1, -h : h + 1].astype(float)
    src_x = x + jac[0, 0] * dx + jac[0, 1] * dy - sx0
    src_y = y + jac[1, 0] * dx + jac[1, 1] * dy - sy0
    out = map_coordinates(np.asarray(stamp, float), [src_y, src_x], order=order, mode="constant")
    out = np.maximum(out, 0.0)
    return np.asarray(out / out.sum())
