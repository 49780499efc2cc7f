"""Host galaxies for simulated frames: Sérsic components defined on the sky.

A galaxy is defined in arcsec relative to the target, so the same galaxy renders
consistently on frames with different pointing, rotation, pixel scale and seeing (the
science frame and its template). Each component is a truncated Sérsic profile integrated on
a sub-pixel grid, then convolved with the frame's PSF at the galaxy centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray
from scipy.signal import fftconvolve
from scipy.special import gammaincinv

from skyphot.testing.psf import MoffatField, profile

FloatArray = NDArray[np.float64]

# Sub-pixels per pixel side when sampling a profile; enough for r_eff >= 0.5 px.
_FINE = 5  # fine cells per pixel side for the convolution
_CELL_SUBSAMPLE = 3  # samples per fine-cell side
_CORE_PX = 9  # fine cells around the centre sampled more finely
_CORE_SUBSAMPLE = 41
# The profile is cut at this many effective radii (on the sky, the same in every frame).
_TRUNCATE_REFF = 5.0


@dataclass(frozen=True)
class HostComponent:
    """One Sérsic component of a host galaxy (all sizes on the sky)."""

    mag: float
    """Total magnitude (bands[1], catalog system) inside the truncation radius."""
    r_eff_arcsec: float
    """Half-light radius of the untruncated profile, arcsec."""
    sersic_n: float = 1.0
    """Sérsic index: 1 exponential disk, 4 de Vaucouleurs bulge."""
    axis_ratio: float = 1.0
    """Minor / major axis, (0, 1]."""
    angle_deg: float = 0.0
    """Major-axis position angle, degrees east of north."""
    offset_arcsec: tuple[float, float] = (0.0, 0.0)
    """Centre offset from the target (east, north), arcsec."""
    color: float = 0.8
    """bands[0] - bands[1], mag (sets the flux through the frame's colour term)."""

    def problems(self) -> list[str]:
        """What is wrong with this component, each a sentence saying what to change."""
        out: list[str] = []
        if not (math.isfinite(self.r_eff_arcsec) and self.r_eff_arcsec > 0):
            out.append(f"host r_eff_arcsec={self.r_eff_arcsec} must be positive.")
        if not 0.2 <= self.sersic_n <= 8.0:
            out.append(f"host sersic_n={self.sersic_n} must be within [0.2, 8].")
        if not 0.05 <= self.axis_ratio <= 1.0:
            out.append(f"host axis_ratio={self.axis_ratio} must be within [0.05, 1].")
        if not math.isfinite(self.mag):
            out.append(f"host mag={self.mag} must be a finite magnitude.")
        return out


def _local_jacobian(wcs: WCS, x: float, y: float) -> FloatArray:
    """d(east, north arcsec) / d(x, y px) at pixel (x, y), by finite differences."""
    h = 0.5
    xs = np.array([x, x + h, x, x - h, x])
    ys = np.array([y, y, y + h, y, y - h])
    ra, dec = wcs.all_pix2world(xs, ys, 0)
    cosd = math.cos(math.radians(float(dec[0])))
    east = (ra - ra[0]) * cosd * 3600.0
    east = np.where(east > 180 * 3600, east - 360 * 3600 * cosd, east)
    north = (dec - dec[0]) * 3600.0
    jac = np.empty((2, 2))
    jac[0, 0] = (east[1] - east[3]) / (2 * h)
    jac[0, 1] = (east[2] - east[4]) / (2 * h)
    jac[1, 0] = (north[1] - north[3]) / (2 * h)
    jac[1, 1] = (north[2] - north[4]) / (2 * h)
    return jac


def sky_position(
    component: HostComponent, target_ra: float, target_dec: float
) -> tuple[float, float]:
    """(ra, dec) of the component's centre, degrees."""
    de, dn = component.offset_arcsec
    dec = target_dec + dn / 3600.0
    ra = target_ra + de / 3600.0 / math.cos(math.radians(target_dec))
    return ra, dec


def _pixel_profile(
    component: HostComponent,
    jac: FloatArray,
    x0: int,
    y0: int,
    size: int,
    cx: float,
    cy: float,
    subsample: int,
    *,
    scale: float = 1.0,
) -> FloatArray:
    """Cell means of the (unnormalised) truncated profile on a ``size`` box of cells starting
    at cell (x0, y0); a cell is ``scale`` frame pixels wide, (cx, cy) is in cells."""
    sub = (np.arange(size * subsample) + 0.5) / subsample - 0.5
    dx, dy = np.meshgrid((x0 + sub - cx) * scale, (y0 + sub - cy) * scale)
    east = jac[0, 0] * dx + jac[0, 1] * dy
    north = jac[1, 0] * dx + jac[1, 1] * dy
    pa = math.radians(component.angle_deg)
    # major axis along the position angle (east of north)
    along = east * math.sin(pa) + north * math.cos(pa)
    across = east * math.cos(pa) - north * math.sin(pa)
    r = np.hypot(along, across / component.axis_ratio)
    n = component.sersic_n
    b_n = float(gammaincinv(2.0 * n, 0.5))
    profile = np.exp(-b_n * (r / component.r_eff_arcsec) ** (1.0 / n))
    profile[r > _TRUNCATE_REFF * component.r_eff_arcsec] = 0.0
    return np.asarray(profile.reshape(size, subsample, size, subsample).mean(axis=(1, 3)))


def _profile_on_fine_grid(
    component: HostComponent,
    jac: FloatArray,
    x0: int,
    y0: int,
    size: int,
    cx: float,
    cy: float,
) -> FloatArray:
    """The profile averaged over each cell of a grid ``_FINE`` times finer than the pixels
    (cells near the centre sampled more finely still, for the cusp), unit sum."""
    n = size * _FINE
    grid = _pixel_profile(component, jac, 0, 0, n, (cx - x0 + 0.5) * _FINE - 0.5,
                          (cy - y0 + 0.5) * _FINE - 0.5, _CELL_SUBSAMPLE, scale=1.0 / _FINE)
    c = _CORE_PX // 2
    fx, fy = round((cx - x0 + 0.5) * _FINE - 0.5), round((cy - y0 + 0.5) * _FINE - 0.5)
    core = _pixel_profile(component, jac, fx - c, fy - c, _CORE_PX,
                          (cx - x0 + 0.5) * _FINE - 0.5, (cy - y0 + 0.5) * _FINE - 0.5,
                          _CORE_SUBSAMPLE, scale=1.0 / _FINE)
    if fx - c >= 0 and fx + c < n and fy - c >= 0 and fy + c < n:
        grid[fy - c : fy + c + 1, fx - c : fx + c + 1] = core
    return np.asarray(grid / grid.sum())


def _psf_on_fine_grid(psf: MoffatField, x: float, y: float, fwhm: float) -> FloatArray:
    """The Moffat PSF at (x, y) sampled at the centres of the fine cells, unit sum."""
    half = math.ceil(6.0 * fwhm) * _FINE
    d = np.arange(-half, half + 1, dtype=np.float64) / _FINE
    a, b, c, _ = psf.coefficients(np.array([x]), np.array([y]))
    dx, dy = np.meshgrid(d, d)
    q = a[0] * dx * dx + 2.0 * b[0] * dx * dy + c[0] * dy * dy
    kernel = profile(q, psf.beta)
    return np.asarray(kernel / kernel.sum())


def render_host(
    image: FloatArray,
    component: HostComponent,
    *,
    flux_adu: float,
    center_xy: tuple[float, float],
    wcs: WCS,
    psf: MoffatField,
) -> None:
    """Add the PSF-convolved component with total flux ``flux_adu`` to ``image`` in place."""
    ny, nx = image.shape
    cx, cy = center_xy
    jac = _local_jacobian(wcs, cx, cy)
    px_scale = math.sqrt(abs(float(np.linalg.det(jac))))
    r_trunc_px = _TRUNCATE_REFF * component.r_eff_arcsec / px_scale
    fwhm = psf.fwhm_at(cx, cy)
    half = math.ceil(r_trunc_px + 4.0 * fwhm) + 2
    x0, y0 = round(cx) - half, round(cy) - half
    size = 2 * half + 1
    # Convolve on a grid finer than the pixels, then integrate over each pixel: convolving
    # pixel-integrated profile and PSF would apply the pixel response twice, in a way that
    # depends on where the centre falls within a pixel (and so differs between frames).
    fine = _profile_on_fine_grid(component, jac, x0, y0, size, cx, cy)
    kernel = _psf_on_fine_grid(psf, float(round(cx)), float(round(cy)), fwhm)
    conv = fftconvolve(fine, kernel, mode="same")
    stamp = conv.reshape(size, _FINE, size, _FINE).sum(axis=(1, 3))
    stamp *= flux_adu / stamp.sum()
    ys, xs = slice(max(y0, 0), min(y0 + size, ny)), slice(max(x0, 0), min(x0 + size, nx))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return
    image[ys, xs] += stamp[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]


def add_hosts(
    image: FloatArray,
    hosts: tuple[HostComponent, ...],
    *,
    wcs: WCS,
    psf: MoffatField,
    photo: PhotometricModelLike,
    target_xy: tuple[float, float] | None = None,
    target_radec: tuple[float, float] | None = None,
) -> None:
    """Render every host component around the target (given in pixels or on the sky)."""
    if not hosts:
        return
    if target_radec is None:
        if target_xy is None:
            raise ValueError("add_hosts needs the target position (pixels or sky)")
        ra, dec = wcs.all_pix2world(np.array([target_xy[0]]), np.array([target_xy[1]]), 0)
        target_radec = (float(ra[0]), float(dec[0]))
    for comp in hosts:
        hra, hdec = sky_position(comp, *target_radec)
        hx, hy = wcs.all_world2pix(np.array([hra]), np.array([hdec]), 0)
        x, y = float(hx[0]), float(hy[0])
        mag, color = np.array([comp.mag]), np.array([comp.color])
        flux = float(photo.flux_adu(mag, color, np.array([x]), np.array([y]))[0])
        render_host(image, comp, flux_adu=flux, center_xy=(x, y), wcs=wcs, psf=psf)


class PhotometricModelLike(Protocol):
    """The part of ``PhotometricModel`` the host renderer needs."""

    def flux_adu(
        self, mag: FloatArray, color: FloatArray, x: FloatArray, y: FloatArray
    ) -> FloatArray:
        """Total flux, ADU."""
        ...
