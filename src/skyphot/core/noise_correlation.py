"""Correlation of a template's pixel noise after spline resampling onto another grid.

Resampling interpolates: each destination pixel is a weighted sum of many source pixels,
so white noise in the template comes out correlated between neighbouring destination
pixels, with a power spectrum set by the interpolation kernel and the local pixel map (scale
ratio and rotation). ZOGY needs that spectrum (``core.zogy``'s ``ref_noise_acf``).

Choice: the autocorrelation is computed from the kernel, not by resampling a white-noise
patch, so it has no Monte Carlo noise and costs a few milliseconds. For a spline of order
n (with its prefilter) the resampled value at source position x is
``sum_m h(x - m) s_m`` with the 1-D cardinal spline ``h`` applied along each source axis.
Averaged over the sub-pixel phase of x (rotation and scale change scramble it from pixel
to pixel), two destination pixels a lattice step d apart, i.e. ``v = J d`` apart in source
pixels (``J`` the Jacobian d source / d destination), have covariance

    C(d) = a^2 sigma^2 g(v_x) g(v_y),   g(u) = integral h(t) h(t + u) dt,

for unit-area source noise of variance sigma^2 per pixel and flux-conserving resampling
(values times the area ratio a = |det J|, source pixels per destination pixel).

Normalisation: ``resample`` callers propagate the template's variance as the
"white-equivalent" a sigma^2 per destination pixel (noise power per unit sky area kept),
so the function returns ``C(d) / (a sigma^2) = a g(v_x) g(v_y)``: the true covariance is
that variance map times this ACF. Its centre is the ratio of the actual per-pixel variance
to the white-equivalent one, and its sum the ratio at zero spatial frequency (1 when the
template's pixels are coarser than the destination's; above or below 1 when finer, where
the sparse sampling aliases their noise).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import map_coordinates

from skyphot.errors import InputError

# Samples per source pixel of the fine grid on which the cardinal spline and its
# autocorrelation are tabulated (trapezoid sums of smooth functions: errors << 1e-4).
_FINE = 64
# Reach of the tabulated kernel, source px: the prefiltered quintic spline decays by ~0.43
# per pixel, so |h| < 1e-5 there.
_REACH = 16
# The ACF is kept out to where g falls below this fraction of g(0) (in either source axis).
_ACF_CUT = 1e-4
# Largest half-width of the returned stamp, destination px (a template 8x coarser).
_MAX_HALF = 64


def spline_kernel_autocorrelation(order: int) -> tuple[np.ndarray, np.ndarray]:
    """g(u) = integral h(t) h(t + u) dt of the 1-D cardinal (prefiltered) spline ``h`` of
    ``order``, tabulated: offsets u (source px, from -reach to +reach) and values."""
    if order not in (0, 1, 3, 5):
        raise InputError(f"resampling order must be 0, 1, 3 or 5, got {order}")
    n = 4 * _REACH + 1
    delta = np.zeros(n)
    delta[n // 2] = 1.0
    # h(t) is the interpolant of a unit impulse, sampled finely; map_coordinates is the
    # same interpolation ``core.resample`` uses, so the kernels agree by construction.
    t = np.arange(-_REACH * _FINE, _REACH * _FINE + 1) / _FINE
    h = map_coordinates(delta, [t + n // 2], order=order, mode="constant", cval=0.0,
                        prefilter=order > 1)
    g = np.correlate(h, h, mode="full") / _FINE
    u = np.arange(-(t.size - 1), t.size) / _FINE
    return u, g


def resampled_noise_acf(jacobian: np.ndarray, *, order: int) -> np.ndarray:
    """Autocorrelation of resampled white noise relative to the white-equivalent variance
    (see the module docstring), as a centred odd stamp on the destination grid.

    ``jacobian``: 2x2 d(source x, y) / d(destination x, y) near the point of interest.
    ``order``: the spline order of the resampling (0, 1, 3 or 5).
    """
    jac = np.asarray(jacobian, dtype=float)
    if jac.shape != (2, 2) or not np.all(np.isfinite(jac)):
        raise InputError(f"the pixel-map Jacobian must be a finite 2x2 matrix, got {jac!r}")
    area = abs(float(np.linalg.det(jac)))
    if not area > 0:
        raise InputError("the pixel-map Jacobian is singular")
    u, g = spline_kernel_autocorrelation(order)
    g0 = float(g[g.size // 2])
    reach = float(np.max(np.abs(u[np.abs(g) > _ACF_CUT * g0])))
    # Destination steps d with |J d| <= reach: |d| <= reach / (smallest singular value).
    s_min = float(np.linalg.svd(jac, compute_uv=False)[-1])
    half = min(math.ceil(reach / s_min), _MAX_HALF)
    d = np.arange(-half, half + 1, dtype=float)
    dx, dy = np.meshgrid(d, d)
    vx = jac[0, 0] * dx + jac[0, 1] * dy
    vy = jac[1, 0] * dx + jac[1, 1] * dy
    gx = np.interp(vx, u, g, left=0.0, right=0.0)
    gy = np.interp(vy, u, g, left=0.0, right=0.0)
    return np.asarray(area * gx * gy)
