"""WCS helpers: pixel scale, footprint, fast projections and TAN-SIP construction.

Conventions: pixels are 0-based with ``data[y, x]``; tangent-plane (standard) coordinates
``(xi, eta)`` are in degrees, ``xi`` towards increasing RA and ``eta`` towards north, which
is exactly what a FITS TAN projection calls intermediate world coordinates.
"""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS, Sip

from skyphot.errors import WCSError

_DEG = np.pi / 180.0


def celestial_wcs(wcs: WCS) -> WCS:
    """The two celestial axes of ``wcs``; ``WCSError`` if it has none."""
    if not wcs.has_celestial:
        raise WCSError(
            "the WCS has no celestial (RA/Dec) axes; supply a frame with a sky WCS or "
            "solve it with astrometry.net first"
        )
    return wcs.celestial


def pixel_scale_arcsec(wcs: WCS) -> float:
    """Mean pixel scale at the reference pixel, arcsec per pixel (sqrt of |det CD|)."""
    matrix = celestial_wcs(wcs).pixel_scale_matrix
    return float(np.sqrt(abs(np.linalg.det(matrix))) * 3600.0)


def pixel_to_world(wcs: WCS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel positions to (ra, dec) in degrees, distortions (SIP) included."""
    cel = celestial_wcs(wcs)
    world = cel.all_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
    ra, dec = world[cel.wcs.lng], world[cel.wcs.lat]
    return np.asarray(ra, float) % 360.0, np.asarray(dec, float)


def world_to_pixel(wcs: WCS, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) in degrees to 0-based pixel (x, y), inverting SIP exactly when present.

    The inverse SIP polynomial (AP/BP), when present, only seeds the iteration; positions
    are solved against the forward polynomial to 1e-6 px.
    """
    cel = celestial_wcs(wcs)
    ra_a = np.atleast_1d(np.asarray(ra, float))
    dec_a = np.atleast_1d(np.asarray(dec, float))
    world = (ra_a, dec_a) if cel.wcs.lng == 0 else (dec_a, ra_a)
    if cel.sip is None and cel.cpdis1 is None and cel.det2im1 is None:
        x, y = cel.wcs_world2pix(*world, 0)
    else:
        x, y = cel.all_world2pix(*world, 0, tolerance=1e-6, maxiter=50, quiet=True)
    return np.asarray(x, float), np.asarray(y, float)


def footprint_radius_deg(
    wcs: WCS, shape: tuple[int, int]
) -> tuple[tuple[float, float], float]:
    """Centre ``(ra, dec)`` of a frame of ``shape`` (ny, nx) and its half-diagonal, degrees.

    The radius is the largest angular distance from the centre pixel to a corner, so a
    cone search with it covers the whole frame.
    """
    ny, nx = shape
    xs = np.array([(nx - 1) / 2.0, -0.5, nx - 0.5, -0.5, nx - 0.5])
    ys = np.array([(ny - 1) / 2.0, -0.5, -0.5, ny - 0.5, ny - 0.5])
    ra, dec = pixel_to_world(wcs, xs, ys)
    a0, d0 = ra[0] * _DEG, dec[0] * _DEG
    a, d = ra[1:] * _DEG, dec[1:] * _DEG
    cos_sep = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    radius = float(np.max(np.arccos(np.clip(cos_sep, -1.0, 1.0))) / _DEG)
    return (float(ra[0]), float(dec[0])), radius


def gnomonic(
    ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Standard coordinates (xi, eta), degrees, of (ra, dec) about the tangent point.

    Points more than 90 degrees away (behind the tangent plane) come out as NaN.
    """
    a = (np.asarray(ra, float) - ra0) * _DEG
    d = np.asarray(dec, float) * _DEG
    sd0, cd0 = np.sin(dec0 * _DEG), np.cos(dec0 * _DEG)
    sd, cd, ca = np.sin(d), np.cos(d), np.cos(a)
    denom = sd * sd0 + cd * cd0 * ca
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(denom > 1e-8, 1.0 / denom, np.nan) / _DEG
    return cd * np.sin(a) * scale, (sd * cd0 - cd * sd0 * ca) * scale


def inverse_gnomonic(
    xi: np.ndarray, eta: np.ndarray, ra0: float, dec0: float
) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec), degrees, of standard coordinates (xi, eta), degrees, about a tangent point."""
    x = np.asarray(xi, float) * _DEG
    y = np.asarray(eta, float) * _DEG
    sd0, cd0 = np.sin(dec0 * _DEG), np.cos(dec0 * _DEG)
    denom = cd0 - y * sd0
    ra = ra0 + np.arctan2(x, denom) / _DEG
    dec = np.arctan2(sd0 + y * cd0, np.hypot(x, denom)) / _DEG
    return ra % 360.0, dec


def poly_exponents(order: int, *, min_degree: int = 0) -> list[tuple[int, int]]:
    """Exponents (p, q) of the 2-D monomials u**p * v**q with min_degree <= p+q <= order."""
    return [
        (p, total - p)
        for total in range(min_degree, order + 1)
        for p in range(total, -1, -1)
    ]


def poly_design(
    u: np.ndarray, v: np.ndarray, exponents: list[tuple[int, int]]
) -> np.ndarray:
    """Design matrix, one column u**p * v**q per exponent pair."""
    u = np.asarray(u, float)
    v = np.asarray(v, float)
    top = max((max(p, q) for p, q in exponents), default=0)
    upow = [np.ones_like(u)]
    vpow = [np.ones_like(v)]
    for _ in range(top):
        upow.append(upow[-1] * u)
        vpow.append(vpow[-1] * v)
    columns = [upow[p] * vpow[q] for p, q in exponents]
    return np.stack(columns, axis=-1) if columns else np.empty((u.size, 0))


def solve_least_squares(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of ``target`` (n,) or (n, k) on ``design`` (n, p).

    Normal equations: for the small, well-conditioned systems here (normalised
    coordinates, p <= 21) they are exact enough and, unlike ``lstsq``, avoid threaded
    LAPACK calls whose latency spikes on a busy machine. A singular system (stars on a
    line) falls back to the minimum-norm ``lstsq`` solution.
    """
    normal = design.T @ design
    rhs = design.T @ target
    try:
        return np.asarray(np.linalg.solve(normal, rhs))
    except np.linalg.LinAlgError:
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        return np.asarray(solution)


def build_tan_sip_wcs(
    *,
    crval: tuple[float, float],
    crpix0: tuple[float, float],
    cd: np.ndarray,
    higher: dict[tuple[int, int], tuple[float, float]],
    shape: tuple[int, int],
) -> WCS:
    """A TAN (or TAN-SIP) WCS from a fitted tangent-plane polynomial.

    The polynomial maps ``(u, v) = (x - crpix0[0], y - crpix0[1])`` (0-based pixels) to
    standard coordinates in degrees: ``(xi, eta) = cd @ (u, v) + sum higher[p, q] u^p v^q``.
    The higher-order terms become SIP A/B through ``cd^-1``; the inverse AP/BP is fitted on
    a grid over the frame so world-to-pixel works without iteration in other software.
    """
    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.crval = [float(crval[0]) % 360.0, float(crval[1])]
    wcs.wcs.crpix = [float(crpix0[0]) + 1.0, float(crpix0[1]) + 1.0]
    wcs.wcs.cd = np.asarray(cd, float)
    wcs.wcs.radesys = "ICRS"
    wcs.pixel_shape = (nx, ny)
    if not higher:
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.set()
        return wcs
    order = max(p + q for p, q in higher)
    cd_inv = np.linalg.inv(np.asarray(cd, float))
    a = np.zeros((order + 1, order + 1))
    b = np.zeros((order + 1, order + 1))
    for (p, q), (cx, cy) in higher.items():
        a[p, q], b[p, q] = cd_inv @ np.array([cx, cy])
    ap, bp = _fit_inverse_sip(a, b, nx=nx, ny=ny, crpix0=crpix0, order=order + 1)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.sip = Sip(a, b, ap, bp, wcs.wcs.crpix)
    wcs.wcs.set()
    return wcs


def _fit_inverse_sip(
    a: np.ndarray,
    b: np.ndarray,
    *,
    nx: int,
    ny: int,
    crpix0: tuple[float, float],
    order: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares AP/BP with u = U + AP(U, V), where U = u + A(u, v), on a frame grid."""
    margin = 0.05
    gx = np.linspace(-margin * nx, (1 + margin) * nx, 40) - crpix0[0]
    gy = np.linspace(-margin * ny, (1 + margin) * ny, 40) - crpix0[1]
    u, v = (g.ravel() for g in np.meshgrid(gx, gy))
    forward = poly_exponents(a.shape[0] - 1, min_degree=2)
    design_f = poly_design(u, v, forward)
    big_u = u + design_f @ np.array([a[p, q] for p, q in forward])
    big_v = v + design_f @ np.array([b[p, q] for p, q in forward])
    # Normalise for conditioning; coefficients are rescaled afterwards.
    scale = float(max(np.max(np.abs(big_u)), np.max(np.abs(big_v)), 1.0))
    inverse = poly_exponents(order, min_degree=1)
    design_i = poly_design(big_u / scale, big_v / scale, inverse)
    rhs = np.stack([u - big_u, v - big_v], axis=1)
    coeffs = solve_least_squares(design_i, rhs)
    ap = np.zeros((order + 1, order + 1))
    bp = np.zeros((order + 1, order + 1))
    for k, (p, q) in enumerate(inverse):
        ap[p, q] = coeffs[k, 0] / scale ** (p + q)
        bp[p, q] = coeffs[k, 1] / scale ** (p + q)
    return ap, bp
