"""WCS helpers: celestial systems, pixel scale, footprint, fast projections and TAN-SIP
construction.

Conventions: pixels are 0-based with ``data[y, x]``; tangent-plane (standard) coordinates
``(xi, eta)`` are in degrees, ``xi`` towards increasing RA and ``eta`` towards north, which
is exactly what a FITS TAN projection calls intermediate world coordinates.

Sky positions handed to and returned by these helpers are always ICRS (RA, Dec) in degrees,
whatever the frame's own celestial system (``celestial_frame``: ICRS, FK5 or FK4 with their
equinox, galactic, ecliptic): targets and catalogs are ICRS, and a frame in galactic
coordinates must not read their RA/Dec as longitude/latitude.
"""

from __future__ import annotations

import math

import numpy as np
from astropy import units as u
from astropy.coordinates import (
    FK4,
    FK5,
    ICRS,
    BarycentricMeanEcliptic,
    BaseCoordinateFrame,
    FK4NoETerms,
    Galactic,
    SkyCoord,
)
from astropy.time import Time
from astropy.wcs import WCS, Sip

from skyphot.core.stats import solve_least_squares
from skyphot.errors import WCSError

_DEG = np.pi / 180.0

_ICRS = ICRS()


def celestial_frame(wcs: WCS) -> BaseCoordinateFrame:
    """The celestial system of ``wcs`` as an astropy frame.

    RA/DEC axes follow RADESYS and EQUINOX with the FITS defaults (no RADESYS: ICRS without
    EQUINOX, FK4 before 1984, FK5 after); FK4 uses the observation date (MJD-OBS/DATE-OBS)
    when the header has one. GLON/GLAT is galactic, ELON/ELAT the mean ecliptic of EQUINOX
    (J2000 by default). Raises ``WCSError`` for any other system.
    """
    # a 2-axis celestial WCS is used as is: taking .celestial copies it (~0.1 ms a call)
    cel = wcs if wcs.naxis == 2 and wcs.has_celestial else celestial_wcs(wcs)
    lon_type = cel.wcs.ctype[cel.wcs.lng][:4].rstrip("-").upper()
    lat_type = cel.wcs.ctype[cel.wcs.lat][:4].rstrip("-").upper()
    radesys = cel.wcs.radesys.strip().upper()
    equinox = float(cel.wcs.equinox) if math.isfinite(cel.wcs.equinox) else None
    if (lon_type, lat_type) == ("RA", "DEC"):
        if not radesys:
            radesys = "ICRS" if equinox is None else ("FK4" if equinox < 1984.0 else "FK5")
        if radesys == "ICRS":
            return _ICRS
        if radesys == "FK5":
            return FK5(equinox=Time(equinox or 2000.0, format="jyear"))
        if radesys in ("FK4", "FK4-NO-E"):
            cls = FK4 if radesys == "FK4" else FK4NoETerms
            b_equinox = Time(equinox or 1950.0, format="byear")
            mjd = float(cel.wcs.mjdobs)
            if math.isfinite(mjd):
                return cls(equinox=b_equinox, obstime=Time(mjd, format="mjd"))
            return cls(equinox=b_equinox)
        raise WCSError(
            f"the frame's RA/Dec system RADESYS={radesys!r} is not supported; use ICRS, FK5, "
            "FK4 or FK4-NO-E, or solve the frame blind"
        )
    if (lon_type, lat_type) == ("GLON", "GLAT"):
        return Galactic()
    if (lon_type, lat_type) == ("ELON", "ELAT"):
        return BarycentricMeanEcliptic(equinox=Time(equinox or 2000.0, format="jyear"))
    raise WCSError(
        f"the frame's celestial axes {cel.wcs.ctype[0]!r}/{cel.wcs.ctype[1]!r} are not a sky "
        "system skyphot can transform to (equatorial RA/DEC, galactic GLON/GLAT, ecliptic "
        "ELON/ELAT); solve the frame blind (remove its WCS and give --pixel-scale)"
    )


def _is_icrs(frame: BaseCoordinateFrame) -> bool:
    return isinstance(frame, ICRS)


def icrs_to_native(
    wcs: WCS, ra: np.ndarray, dec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (ra, dec), degrees, as (longitude, latitude) in the WCS's own system, degrees."""
    frame = celestial_frame(wcs)
    ra_a = np.atleast_1d(np.asarray(ra, float))
    dec_a = np.atleast_1d(np.asarray(dec, float))
    if _is_icrs(frame):
        return ra_a, dec_a
    native = SkyCoord(ra_a * u.deg, dec_a * u.deg, frame=_ICRS).transform_to(frame)
    sph = native.spherical
    return np.asarray(sph.lon.deg, float) % 360.0, np.asarray(sph.lat.deg, float)


def native_to_icrs(
    wcs: WCS, lon: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(longitude, latitude) in the WCS's own system, degrees, as ICRS (ra, dec), degrees."""
    frame = celestial_frame(wcs)
    lon_a = np.atleast_1d(np.asarray(lon, float))
    lat_a = np.atleast_1d(np.asarray(lat, float))
    if _is_icrs(frame):
        return lon_a % 360.0, lat_a
    icrs = SkyCoord(lon_a * u.deg, lat_a * u.deg, frame=frame).transform_to(_ICRS)
    return np.asarray(icrs.ra.deg, float) % 360.0, np.asarray(icrs.dec.deg, float)


def _frame_keywords(frame: BaseCoordinateFrame) -> tuple[str, str, str, float | None]:
    """(longitude CTYPE prefix, latitude prefix, RADESYS, EQUINOX) of a frame."""
    if isinstance(frame, ICRS):
        return "RA", "DEC", "ICRS", None
    if isinstance(frame, FK5):
        return "RA", "DEC", "FK5", float(frame.equinox.jyear)
    if isinstance(frame, FK4NoETerms):
        return "RA", "DEC", "FK4-NO-E", float(frame.equinox.byear)
    if isinstance(frame, FK4):
        return "RA", "DEC", "FK4", float(frame.equinox.byear)
    if isinstance(frame, Galactic):
        return "GLON", "GLAT", "", None
    if isinstance(frame, BarycentricMeanEcliptic):
        return "ELON", "ELAT", "", float(frame.equinox.jyear)
    raise WCSError(f"cannot write a WCS in the {frame.name} system")


_ZENITHAL = ("TAN", "SIN", "ARC", "ZEA", "STG")


def express_in_frame(wcs: WCS, frame: BaseCoordinateFrame) -> WCS:
    """The same pixel-to-sky mapping as the zenithal (TAN, TAN-SIP, SIN, ARC, ZEA, STG)
    ``wcs``, expressed in ``frame``'s coordinates (whatever system ``wcs`` is in).

    A zenithal projection depends only on its reference point, so a change of celestial
    system moves CRVAL and turns the intermediate axes by the angle between the two
    systems' north directions there: the linear matrix is rotated, SIP (which acts on
    pixels) is unchanged. Exact for rotations (ICRS, FK5, galactic, ecliptic); for FK4 the
    E-terms vary by milli-arcsec across a frame. Raises ``WCSError`` for other projections
    or distortions applied after the matrix (TPV).
    """
    source = celestial_frame(wcs)
    codes = {c[5:8] for c in wcs.wcs.ctype}
    if len(codes) != 1 or not codes <= set(_ZENITHAL) or wcs.wcs.get_pv():
        raise WCSError(
            f"the WCS projection {wcs.wcs.ctype[0]!r} cannot be re-expressed in another sky "
            f"system (only {', '.join(_ZENITHAL)} without PV terms); solve the frame blind"
        )
    lon_p, lat_p, radesys, equinox = _frame_keywords(frame)
    lon_s, lat_s = (float(v) for v in wcs.wcs.crval)
    centre = SkyCoord(lon_s * u.deg, lat_s * u.deg, frame=source)
    native = centre.transform_to(frame)
    lon0 = float(native.spherical.lon.deg)
    lat0 = float(native.spherical.lat.deg)
    # the new system's north at the reference point, as a position angle in the old one
    step = 1.0 / 3600.0 if lat0 < 89.0 else -1.0 / 3600.0
    ahead = SkyCoord(lon0 * u.deg, (lat0 + step) * u.deg, frame=frame).transform_to(source)
    theta = float(centre.position_angle(ahead).rad) + (math.pi if step < 0 else 0.0)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    out = wcs.deepcopy()
    out.wcs.crval = [lon0 % 360.0, lat0]
    if wcs.wcs.has_cd():
        out.wcs.cd = rot @ np.asarray(wcs.wcs.cd, float)
    else:
        cdelt = np.asarray(wcs.wcs.cdelt, float)
        out.wcs.pc = np.diag(1.0 / cdelt) @ rot @ np.diag(cdelt) @ np.asarray(wcs.wcs.get_pc())
    out.wcs.ctype = [f"{lon_p:-<4}{c[4:]}" if i == wcs.wcs.lng else f"{lat_p:-<4}{c[4:]}"
                     for i, c in enumerate(wcs.wcs.ctype)]
    out.wcs.radesys = radesys
    out.wcs.equinox = equinox if equinox is not None else np.nan
    if isinstance(frame, FK4 | FK4NoETerms) and frame.obstime is not None:
        out.wcs.mjdobs = float(frame.obstime.mjd)
    out.wcs.set()
    return out


def solution_in_system_of(solution: WCS, model: WCS | None) -> WCS:
    """An ICRS astrometric solution (astrometry.net's, fitted to ICRS catalogs) expressed in
    the celestial system of ``model``, the frame's header WCS: the same CTYPE family
    (RA/DEC, GLON/GLAT, ELON/ELAT), RADESYS and EQUINOX, so the frame keeps its system.

    Without a model (the header had no WCS) the solution is labelled ICRS explicitly:
    astrometry.net writes EQUINOX 2000 without RADESYS, which the FITS defaults would read
    as FK5. The pixel-to-sky mapping is unchanged (see ``express_in_frame``).
    """
    icrs = solution.deepcopy()
    icrs.wcs.radesys = "ICRS"
    icrs.wcs.equinox = np.nan
    icrs.wcs.set()
    if model is None:
        return icrs
    frame = celestial_frame(model)
    return icrs if _is_icrs(frame) else express_in_frame(icrs, frame)


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
    """0-based pixel positions to ICRS (ra, dec) in degrees, distortions (SIP) included,
    whatever the WCS's own celestial system."""
    cel = celestial_wcs(wcs)
    world = cel.all_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
    lon, lat = world[cel.wcs.lng], world[cel.wcs.lat]
    return native_to_icrs(cel, np.asarray(lon, float), np.asarray(lat, float))


def world_to_pixel(wcs: WCS, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (ra, dec) in degrees to 0-based pixel (x, y), inverting SIP exactly when present;
    the position is first transformed into the WCS's own celestial system.

    The inverse SIP polynomial (AP/BP), when present, only seeds the iteration; positions
    are solved against the forward polynomial to 1e-6 px.
    """
    cel = celestial_wcs(wcs)
    ra_a, dec_a = icrs_to_native(cel, ra, dec)
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
