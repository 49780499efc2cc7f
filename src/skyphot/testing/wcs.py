"""True (TAN + SIP distortion) and header (plain TAN, deliberately wrong) WCS of a simulated frame.

Conventions: 0-based pixels, CRPIX at the frame centre. The CD matrix for pixel scale ``s``
(deg/px) and rotation ``theta`` is ``[[-s cos t, s sin t], [s sin t, s cos t]]``: east is to the
left at ``theta = 0`` (the usual sky orientation) and ``theta`` is the position angle of the +y
axis, measured from north through east.
"""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
from astropy.coordinates import (
    FK4,
    FK5,
    BarycentricMeanEcliptic,
    BaseCoordinateFrame,
    Galactic,
    SkyCoord,
)
from astropy.io.fits import Header
from astropy.time import Time
from astropy.wcs import WCS, Sip
from numpy.typing import NDArray

from skyphot.core.wcs_utils import express_in_frame

FloatArray = NDArray[np.float64]

SIP_ORDER = 3
INVERSE_SIP_ORDER = 5


def cd_matrix(pixel_scale_arcsec: float, rotation_deg: float) -> FloatArray:
    """CD matrix (deg/px) for this pixel scale (arcsec/px) and rotation (deg)."""
    s = pixel_scale_arcsec / 3600.0
    t = math.radians(rotation_deg)
    return np.array([[-s * math.cos(t), s * math.sin(t)], [s * math.sin(t), s * math.cos(t)]])


def _terms(u: FloatArray, v: FloatArray, order: int) -> tuple[list[tuple[int, int]], FloatArray]:
    """SIP polynomial terms u^p v^q with 2 <= p + q <= order (SIP has no constant/linear terms)."""
    powers = [(p, q) for p in range(order + 1) for q in range(order + 1) if 2 <= p + q <= order]
    return powers, np.stack([u**p * v**q for p, q in powers], axis=-1)


def distortion_coefficients(
    shape: tuple[int, int], max_shift_px: float, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """SIP A and B matrices (order 3) whose largest displacement on the frame is ``max_shift_px``.

    Shape: mostly radial cubic (pincushion/barrel-like), plus a random quadratic part (tilt).
    """
    ny, nx = shape
    r_corner = math.hypot((nx - 1) / 2.0, (ny - 1) / 2.0)
    a = np.zeros((SIP_ORDER + 1, SIP_ORDER + 1))
    b = np.zeros((SIP_ORDER + 1, SIP_ORDER + 1))
    if max_shift_px == 0.0 or r_corner == 0.0:
        return a, b
    sign = 1.0 if rng.uniform() < 0.5 else -1.0
    quad_a = rng.normal(size=3) * 0.25
    quad_b = rng.normal(size=3) * 0.25
    # coefficients for normalised coordinates U = u / r_corner; then rescaled to pixels
    a[3, 0] = a[1, 2] = b[0, 3] = b[2, 1] = sign * 1.0 / r_corner**3
    for (p, q), ca, cb in zip([(2, 0), (1, 1), (0, 2)], quad_a, quad_b, strict=True):
        a[p, q] = ca / r_corner**2
        b[p, q] = cb / r_corner**2
    gu, gv = _frame_grid(shape)
    du, dv = _apply(a, gu, gv), _apply(b, gu, gv)
    biggest = float(np.max(np.hypot(du, dv)))
    return a * (max_shift_px / biggest), b * (max_shift_px / biggest)


def _frame_grid(shape: tuple[int, int]) -> tuple[FloatArray, FloatArray]:
    """Offsets from the frame centre of a grid covering the frame including its border, px."""
    ny, nx = shape
    xs = np.linspace(0.0, nx - 1.0, 41) - (nx - 1) / 2.0
    ys = np.linspace(0.0, ny - 1.0, 41) - (ny - 1) / 2.0
    u, v = np.meshgrid(xs, ys)
    return u.ravel(), v.ravel()


def _apply(coeffs: FloatArray, u: FloatArray, v: FloatArray) -> FloatArray:
    out = np.zeros_like(u)
    for p in range(coeffs.shape[0]):
        for q in range(coeffs.shape[1]):
            if coeffs[p, q] != 0.0:
                out = out + coeffs[p, q] * u**p * v**q
    return out


def _inverse_coefficients(
    a: FloatArray, b: FloatArray, shape: tuple[int, int], margin_px: float
) -> tuple[FloatArray, FloatArray, float]:
    """Least-squares AP/BP (order 5) so pixel = focal + AP/BP(focal); returns max error (px)."""
    ny, nx = shape
    xs = np.linspace(-margin_px, nx - 1.0 + margin_px, 60) - (nx - 1) / 2.0
    ys = np.linspace(-margin_px, ny - 1.0 + margin_px, 60) - (ny - 1) / 2.0
    gu, gv = np.meshgrid(xs, ys)
    pu, pv = gu.ravel(), gv.ravel()
    fu, fv = pu + _apply(a, pu, pv), pv + _apply(b, pu, pv)
    scale = max(float(np.max(np.abs(fu))), float(np.max(np.abs(fv))), 1.0)
    powers, design = _terms(fu / scale, fv / scale, INVERSE_SIP_ORDER)
    ap = np.zeros((INVERSE_SIP_ORDER + 1, INVERSE_SIP_ORDER + 1))
    bp = np.zeros_like(ap)
    sol_u, *_ = np.linalg.lstsq(design, pu - fu, rcond=None)
    sol_v, *_ = np.linalg.lstsq(design, pv - fv, rcond=None)
    for (p, q), cu, cv in zip(powers, sol_u, sol_v, strict=True):
        ap[p, q] = cu / scale ** (p + q)
        bp[p, q] = cv / scale ** (p + q)
    err = float(np.max(np.hypot(fu + _apply(ap, fu, fv) - pu, fv + _apply(bp, fu, fv) - pv)))
    return ap, bp, err


def true_wcs(
    shape: tuple[int, int],
    center: tuple[float, float],
    pixel_scale_arcsec: float,
    rotation_deg: float,
    sip_a: FloatArray,
    sip_b: FloatArray,
    *,
    margin_px: float,
) -> WCS:
    """TAN (+SIP if any distortion) WCS with CRPIX at the frame centre and CRVAL = ``center``."""
    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.crpix = [(nx - 1) / 2.0 + 1.0, (ny - 1) / 2.0 + 1.0]
    wcs.wcs.crval = [center[0], center[1]]
    wcs.wcs.cd = cd_matrix(pixel_scale_arcsec, rotation_deg)
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    if np.any(sip_a) or np.any(sip_b):
        ap, bp, _ = _inverse_coefficients(sip_a, sip_b, shape, margin_px)
        wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
        wcs.sip = Sip(sip_a, sip_b, ap, bp, wcs.wcs.crpix)
    else:
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.set()
    wcs.pixel_shape = (nx, ny)
    return wcs


def header_wcs_cards(
    shape: tuple[int, int],
    true_center: tuple[float, float],
    pixel_scale_arcsec: float,
    rotation_deg: float,
    *,
    offset_arcsec: float,
    offset_angle_deg: float,
    rotation_error_deg: float,
    frame: str = "icrs",
    mjd_obs: float | None = None,
) -> Header:
    """Plain TAN header cards: true pointing moved by ``offset_arcsec`` towards position angle
    ``offset_angle_deg`` (east of north) and rotated by ``rotation_error_deg``; no distortion.

    ``frame`` is the celestial system the cards are written in (``icrs``, ``fk5`` J2000,
    ``fk4`` B1950 at epoch ``mjd_obs``, ``galactic``, ``ecliptic`` J2000): the same mapping,
    expressed in that system.
    """
    ny, nx = shape
    true_c = SkyCoord(true_center[0], true_center[1], unit="deg", frame="icrs")
    moved = true_c.directional_offset_by(
        offset_angle_deg * u.deg, (offset_arcsec / 3600.0) * u.deg
    )
    cd = cd_matrix(pixel_scale_arcsec, rotation_deg + rotation_error_deg)
    h = Header()
    h["WCSAXES"] = 2
    h["CTYPE1"] = "RA---TAN"
    h["CTYPE2"] = "DEC--TAN"
    h["CUNIT1"] = "deg"
    h["CUNIT2"] = "deg"
    h["CRPIX1"] = ((nx - 1) / 2.0 + 1.0, "1-based; the frame centre")
    h["CRPIX2"] = ((ny - 1) / 2.0 + 1.0, "1-based; the frame centre")
    h["CRVAL1"] = float(moved.ra.deg)
    h["CRVAL2"] = float(moved.dec.deg)
    h["CD1_1"] = float(cd[0, 0])
    h["CD1_2"] = float(cd[0, 1])
    h["CD2_1"] = float(cd[1, 0])
    h["CD2_2"] = float(cd[1, 1])
    h["RADESYS"] = "ICRS"
    h["EQUINOX"] = 2000.0
    if frame == "icrs":
        return h
    wcs = express_in_frame(WCS(h), _frame(frame, mjd_obs))
    out = Header()
    out["WCSAXES"] = 2
    out.extend(wcs.to_header(relax=False).cards)
    for key in ("PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2"):
        out.remove(key, ignore_missing=True)
    for (i, j), value in np.ndenumerate(wcs.wcs.cd):
        out[f"CD{i + 1}_{j + 1}"] = float(value)
    for key in ("MJD-OBS", "DATE-OBS", "MJDREF", "DATEREF"):
        out.remove(key, ignore_missing=True, remove_all=True)
    return out


def _frame(name: str, mjd_obs: float | None) -> BaseCoordinateFrame:
    if name == "fk5":
        return FK5(equinox=Time(2000.0, format="jyear"))
    if name == "fk4":
        epoch = {} if mjd_obs is None else {"obstime": Time(mjd_obs, format="mjd")}
        return FK4(equinox=Time(1950.0, format="byear"), **epoch)
    if name == "galactic":
        return Galactic()
    if name == "ecliptic":
        return BarycentricMeanEcliptic(equinox=Time(2000.0, format="jyear"))
    raise ValueError(f"unknown WCS frame {name!r}; use icrs, fk5, fk4, galactic or ecliptic")

