"""Parameters of a simulated frame (every field documented, realistic defaults)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from astropy.time import Time

from skyphot.errors import ConfigError
from skyphot.testing.galaxy import HostComponent


class SimulationError(ConfigError, ValueError):
    """A simulation parameter is invalid. Is a ``ValueError`` as well as a ``ConfigError``."""


@dataclass(frozen=True)
class SimulationParams:
    """Everything that defines a simulated frame; ``simulate_frame`` adds only the random seed.

    Pixel convention: 0-based, ``data[y, x]``, pixel centres at integer coordinates.
    """

    shape: tuple[int, int] = (600, 800)
    """(ny, nx) of the image, px."""
    pixel_scale: float = 0.6
    """arcsec/px at the frame centre."""
    center: tuple[float, float] = (150.1, 2.2)
    """(ra, dec) of the frame centre (the true CRVAL), degrees ICRS."""
    rotation_deg: float = 0.7
    """True position angle of the +y axis, degrees north through east (0: north up, east left)."""
    fwhm: float = 3.5
    """PSF FWHM at the frame centre, px (geometric mean of major and minor axis)."""
    fwhm_gradient: float = 0.1
    """Fractional FWHM increase at the frame corners (grows as distance**2 from the centre)."""
    ellipticity: float = 0.05
    """PSF ellipticity 1 - b/a, the same everywhere."""
    psf_angle_deg: float = 30.0
    """Major-axis angle at the centre, deg counter-clockwise from +x; turns by +-30 deg from the
    centre to the left/right edge."""
    beta: float = 3.0
    """Moffat beta (>= 2)."""
    sky: float = 1000.0
    """Sky level at the frame centre, electrons per px."""
    sky_gradient: float = 0.05
    """Fractional sky change across the frame: a plane, ``sky * (1 + sky_gradient * t)`` with
    ``t`` running from -0.5 to +0.5 across the frame along ``sky_gradient_angle_deg``."""
    sky_gradient_angle_deg: float = 30.0
    """Direction of the sky gradient, deg counter-clockwise from +x."""
    gain: float = 1.5
    """Detector gain, e-/ADU (header GAIN)."""
    read_noise: float = 8.0
    """Read noise, e- rms (header RDNOISE)."""
    exptime: float = 60.0
    """Exposure time, s (header EXPTIME). Only metadata: fluxes follow ``zero_point``."""
    zero_point: float = 28.5
    """Magnitude of a star giving 1 ADU total (in this exposure) at the frame centre, colour 0.
    With the default sky, gain and PSF the 5-sigma PSF-fit limit is then r ~ 21.3, like a
    1-m telescope in 60 s."""
    zp_gradient: float = 0.03
    """Vignetting-like zero-point loss, mag: ``ZP(x, y) = zero_point - zp_gradient * rho**2``
    with rho = distance from the centre / distance centre-to-corner (so zp_gradient at the
    corners, about zp_gradient/2 at the middle of the long edges)."""
    color_term: float = 0.08
    """C in ``m_cat = -2.5 log10(ADU) + ZP(x, y) + C * (bands[0] - bands[1])``."""
    response: float = 0.0
    """Non-linear response (photographic plate, detector near saturation), mag per mag^2: a
    star of true bands[1] magnitude m records ``response * (m - response_pivot)**2`` mag
    fainter than a linear detector would (0: linear). The truth stays the true magnitude."""
    response_pivot: float = 17.0
    """True bands[1] magnitude about which ``response`` is quadratic, mag."""
    n_stars: int = 400
    """Field stars whose true position falls on the frame (more are drawn, at the same density,
    in the catalog margin around it)."""
    mag_bright: float = 14.0
    """Brightest field-star magnitude (bands[1]); luminosity function N(<m) ~ 10**(0.3 m)."""
    mag_faint: float = 22.5
    """Faintest field-star magnitude (bands[1])."""
    catalog_depth: float = 20.5
    """Faintest true bands[1] magnitude that is in the reference catalog."""
    catalog_error_floor: float = 0.01
    """Systematic floor of the catalog magnitude errors, mag."""
    catalog_error_at_depth: float = 0.05
    """Random catalog error (added in quadrature to the floor) at ``catalog_depth``; it scales
    as 10**(0.4 (m - catalog_depth)), i.e. sky-limited."""
    catalog_margin_px: float = 100.0
    """The catalog covers the frame plus this margin on every side, px."""
    saturation: float = 50000.0
    """Saturation level, ADU (physical value, after BZERO); header SATURATE; data clipped there."""
    n_saturated: int = 2
    """Extra stars made bright enough to saturate (peak 3-30x the saturation level)."""
    saturated_neighbour_px: float | None = None
    """If set: a saturated star this many px from the target (random direction, on the frame)."""
    neighbour_peak: float = 10.0
    """Peak of that star in units of the saturation level above the sky (below 1: a bright
    star that is not saturated)."""
    n_cosmic_rays: int = 20
    """Cosmic-ray hits (1-3 px each), never close to the target."""
    bad_column: bool = True
    """One hot or dead (full or partial) column, never through or close to the target."""
    wcs_offset_arcsec: float = 5.0
    """The header WCS centre is off the true one by this much (random direction), arcsec."""
    wcs_rotation_error_deg: float = 0.2
    """The header WCS is rotated by this much relative to the truth, deg."""
    distortion: float = 1.5
    """True field distortion (SIP, quadratic + cubic): largest displacement on the frame, px.
    The header WCS is plain TAN without it."""
    dtype: Literal["float32", "uint16"] = "float32"
    """Stored data type; uint16 is rounded, clipped to [0, 65535] and written as BITPIX=16,
    BZERO=32768."""
    target_mag: float | None = 19.0
    """True bands[1] magnitude (catalog system) of the target; None: no target."""
    target_color: float = 0.5
    """bands[0] - bands[1] of the target, mag."""
    target_xy: tuple[float, float] | None = None
    """True pixel position of the target; None: random, at least 50 px (or a quarter of the
    frame if smaller) from every edge."""
    target_clear_radius_px: float = 10.0
    """No random field star is placed within this distance of the target, px."""
    include_wcs: bool = True
    """False: no WCS keywords at all in the header (for blind-solve tests)."""
    wcs_frame: Literal["icrs", "fk5", "fk4", "galactic", "ecliptic"] = "icrs"
    """Celestial system of the header WCS: ICRS, FK5 J2000, FK4 B1950 (old plates), galactic
    (GLON/GLAT) or ecliptic J2000 (ELON/ELAT). The truth and the catalog stay ICRS."""
    filter: str = "r"
    """Header FILTER."""
    date_obs: str = "2024-03-15T03:12:45.000"
    """Start of the exposure, ISO UTC (header DATE-OBS)."""
    instrument: str = "SimCam"
    """Header INSTRUME."""
    telescope: str = "Sim 1.0m"
    """Header TELESCOP."""
    object_name: str = "SIM-TARGET"
    """Header OBJECT."""
    bands: tuple[str, str] = ("g", "r")
    """Catalog bands; calibration band is bands[1], colour is bands[0] - bands[1]."""
    hosts: tuple[HostComponent, ...] = ()
    """Host-galaxy components (Sérsic) placed relative to the target; need a target."""

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise SimulationError("SimulationParams: " + " ".join(problems))


def _problems(p: SimulationParams) -> list[str]:
    """Everything wrong with ``p``, each as a sentence saying what to change."""
    out: list[str] = []
    ny, nx = p.shape
    if ny < 16 or nx < 16:
        out.append(f"shape={p.shape} is too small; use at least (16, 16) pixels (ny, nx).")
    positive = {
        "pixel_scale": p.pixel_scale, "fwhm": p.fwhm, "gain": p.gain, "exptime": p.exptime,
        "saturation": p.saturation,
    }
    for name, value in positive.items():
        if not (math.isfinite(value) and value > 0):
            out.append(f"{name}={value} must be a positive number.")
    non_negative = {
        "sky": p.sky, "read_noise": p.read_noise, "catalog_error_floor": p.catalog_error_floor,
        "catalog_error_at_depth": p.catalog_error_at_depth, "distortion": p.distortion,
        "wcs_offset_arcsec": p.wcs_offset_arcsec, "catalog_margin_px": p.catalog_margin_px,
        "target_clear_radius_px": p.target_clear_radius_px,
    }
    for name, value in non_negative.items():
        if not (math.isfinite(value) and value >= 0):
            out.append(f"{name}={value} must be zero or positive.")
    if not (math.isfinite(p.response) and abs(p.response) <= 0.1):
        out.append(f"response={p.response} must be a number within +-0.1 mag per mag^2.")
    counts = {"n_stars": p.n_stars, "n_saturated": p.n_saturated,
              "n_cosmic_rays": p.n_cosmic_rays}
    for name, count in counts.items():
        if count < 0:
            out.append(f"{name}={count} must be zero or positive.")
    if not 0 <= p.ellipticity < 1:
        out.append(f"ellipticity={p.ellipticity} must be in [0, 1).")
    if not p.beta >= 2.0:
        out.append(
            f"beta={p.beta} is below 2: the Moffat wings would hold too much flux outside any "
            "stamp to keep the truth exact; use beta >= 2."
        )
    if not p.fwhm_gradient > -0.5:
        out.append(f"fwhm_gradient={p.fwhm_gradient} must be > -0.5.")
    if not abs(p.sky_gradient) <= 2.0:
        out.append(f"sky_gradient={p.sky_gradient} must be within [-2, 2] (sky stays >= 0).")
    if not p.mag_bright < p.mag_faint:
        out.append(f"mag_bright={p.mag_bright} must be brighter (smaller) than "
                   f"mag_faint={p.mag_faint}.")
    if p.wcs_frame not in ("icrs", "fk5", "fk4", "galactic", "ecliptic"):
        out.append(f"wcs_frame={p.wcs_frame!r} must be one of icrs, fk5, fk4, galactic, "
                   "ecliptic.")
    if p.dtype not in ("float32", "uint16"):
        out.append(f"dtype={p.dtype!r} must be 'float32' or 'uint16'.")
    if p.dtype == "uint16" and p.saturation > 65535:
        out.append(f"saturation={p.saturation} exceeds 65535, the uint16 maximum.")
    if p.gain > 0 and p.sky / p.gain >= p.saturation:
        out.append(f"sky={p.sky} e- is at or above the saturation level; lower it.")
    if len(p.bands) != 2 or p.bands[0] == p.bands[1] or not all(p.bands):
        out.append(f"bands={p.bands} must be two different band names, e.g. ('g', 'r').")
    if p.saturated_neighbour_px is not None and not p.saturated_neighbour_px > 0:
        out.append(f"saturated_neighbour_px={p.saturated_neighbour_px} must be positive or None.")
    if not (math.isfinite(p.neighbour_peak) and p.neighbour_peak > 0):
        out.append(f"neighbour_peak={p.neighbour_peak} must be positive (units of saturation).")
    if p.saturated_neighbour_px is not None and p.target_mag is None:
        out.append("saturated_neighbour_px needs a target; set target_mag.")
    if p.target_xy is not None:
        x, y = p.target_xy
        if not (-0.5 <= x < nx - 0.5 and -0.5 <= y < ny - 0.5):
            out.append(
                f"target_xy=({x}, {y}) is off the {nx}x{ny} (nx x ny) frame: x must be in "
                f"[-0.5, {nx - 0.5}) and y in [-0.5, {ny - 0.5}). Put the target on the "
                "frame, or pass target_xy=None for a random position."
            )
    if p.hosts and p.target_mag is None:
        out.append("hosts are placed relative to the target; set target_mag.")
    for host in p.hosts:
        out.extend(host.problems())
    try:
        Time(p.date_obs, format="isot", scale="utc")
    except ValueError as exc:
        out.append(f"date_obs={p.date_obs!r} is not an ISO time like "
                   f"'2024-03-15T03:12:45.000' ({exc}).")
    return out
