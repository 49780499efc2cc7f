"""A template (reference image) of a simulated field: the same sky at another epoch.

The template shows the science frame's stars and host galaxies but not the transient, with
its own seeing, depth, pointing, rotation, pixel scale, size and noise. Truth for image
subtraction is then the science frame's ``Truth`` (the transient's flux).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io.fits import Header
from astropy.table import Table
from astropy.time import Time

from skyphot.testing.frame import Defects, PhotometricModel, SimulatedFrame
from skyphot.testing.galaxy import add_hosts
from skyphot.testing.params import SimulationError, SimulationParams
from skyphot.testing.psf import MoffatField
from skyphot.testing.render import render_stars
from skyphot.testing.wcs import header_wcs_cards, true_wcs


@dataclass(frozen=True)
class TemplateParams:
    """How the template differs from the science frame (every other property is shared)."""

    fwhm: float = 2.5
    """Template PSF FWHM at its centre, template px."""
    pixel_scale: float = 0.5
    """Template pixel scale, arcsec/px."""
    rotation_deg: float = 15.0
    """Template position angle of +y, degrees east of north."""
    shape: tuple[int, int] = (700, 900)
    """(ny, nx) of the template, px."""
    pointing_offset_arcsec: tuple[float, float] = (20.0, -15.0)
    """Template centre minus science centre (east, north), arcsec."""
    sky: float = 2000.0
    """Template sky, e- per px."""
    zero_point: float = 29.5
    """Magnitude giving 1 ADU in the template (deeper templates: larger)."""
    gain: float = 2.0
    """Template gain, e-/ADU."""
    read_noise: float = 5.0
    """Template read noise, e-."""
    saturation: float = 60000.0
    """Template saturation level, ADU."""
    date_obs: str = "2022-01-10T06:00:00.000"
    """Template epoch (UTC start)."""
    wcs_offset_arcsec: float = 2.0
    """Error of the template header WCS centre, arcsec."""
    transient_mag: float | None = None
    """The transient as it was at the template epoch (bands[1] mag); None: absent. With it
    brighter than on the science frame, the difference flux is negative (a fading source)."""
    filter: str | None = None
    """Header FILTER of the template; None: the science frame's."""


def simulate_template(
    science: SimulatedFrame,
    params: TemplateParams = TemplateParams(),
    *,
    seed: int = 0,
    noise_seed: int | None = None,
) -> SimulatedFrame:
    """Render the science frame's sky (stars, hosts, no transient) as a template.

    ``noise_seed``, when given, draws only the template's noise from it (see
    ``simulate_frame``)."""
    sp = science.params
    tp = params
    if not (tp.fwhm > 0 and tp.pixel_scale > 0 and tp.gain > 0 and tp.sky >= 0):
        raise SimulationError(
            "TemplateParams: fwhm, pixel_scale and gain must be positive and sky >= 0."
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
    centre = SkyCoord(sp.center[0], sp.center[1], unit="deg")
    de, dn = tp.pointing_offset_arcsec
    moved = centre.spherical_offsets_by(de / 3600.0 * centre.ra.unit, dn / 3600.0 * centre.ra.unit)
    t_center = (float(moved.ra.deg), float(moved.dec.deg))
    no_sip = np.zeros((4, 4))
    wcs = true_wcs(
        tp.shape, t_center, tp.pixel_scale, tp.rotation_deg, no_sip, no_sip, margin_px=0.0
    )
    psf = MoffatField(
        tp.shape, tp.fwhm, sp.fwhm_gradient, sp.ellipticity, sp.psf_angle_deg, sp.beta
    )
    photo = PhotometricModel(tp.shape, tp.zero_point, sp.zp_gradient, sp.color_term)
    stars = science.stars
    x, y = wcs.all_world2pix(np.asarray(stars["ra"]), np.asarray(stars["dec"]), 0)
    mag = np.asarray(stars[sp.bands[1]], dtype=float)
    color = np.asarray(stars["color"], dtype=float)
    flux = photo.flux_adu(mag, color, x, y)
    sky_adu = np.full(tp.shape, tp.sky / tp.gain)
    rms = math.sqrt(tp.sky / tp.gain**2 + (tp.read_noise / tp.gain) ** 2)
    image = render_stars(
        tp.shape, x, y, flux, psf, wing_level=0.01 * max(rms, 0.1), max_outside_fraction=1e-4
    )
    if sp.hosts:
        truth = science.truth
        add_hosts(
            image, sp.hosts, wcs=wcs, psf=psf, photo=photo, target_radec=(truth.ra, truth.dec)
        )
    if tp.transient_mag is not None:
        truth = science.truth
        txy = wcs.all_world2pix(np.array([truth.ra]), np.array([truth.dec]), 0)
        t_flux = photo.flux_adu(
            np.array([tp.transient_mag]), np.array([truth.color]), txy[0], txy[1]
        )
        image += render_stars(
            tp.shape, txy[0], txy[1], t_flux, psf, wing_level=0.01 * max(rms, 0.1),
            max_outside_fraction=1e-5,
        )
    noiseless = sky_adu + image
    if noise_seed is None:
        noise = rng
    else:
        # the header's offset direction is drawn before the noise, so every noise draw
        # shares it
        angle = float(rng.uniform(0, 360))
        noise = np.random.default_rng(np.random.SeedSequence([seed, noise_seed, 104729]))
    electrons = noise.poisson(noiseless * tp.gain).astype(np.float64)
    electrons += noise.normal(0.0, tp.read_noise, size=tp.shape)
    adu = np.minimum(electrons / tp.gain, tp.saturation)
    data = adu.astype(np.float32)
    table = Table(stars, copy=True)
    table["x"], table["y"] = x, y
    table["flux_adu"] = flux
    ny, nx = tp.shape
    table["on_frame"] = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    start = Time(tp.date_obs, format="isot", scale="utc")
    if noise_seed is None:
        angle = float(rng.uniform(0, 360))
    header = _header(sp, tp, seed, float(start.mjd), t_center, angle)
    t_params = replace(
        sp, shape=tp.shape, pixel_scale=tp.pixel_scale, rotation_deg=tp.rotation_deg,
        center=t_center, fwhm=tp.fwhm, sky=tp.sky, zero_point=tp.zero_point, gain=tp.gain,
        read_noise=tp.read_noise, saturation=tp.saturation, date_obs=tp.date_obs,
        target_mag=None, distortion=0.0, n_cosmic_rays=0, bad_column=False, hosts=(),
        saturated_neighbour_px=None, target_xy=None,
    )
    empty = np.zeros(tp.shape, dtype=bool)
    defects = Defects(
        cosmic_ray_mask=empty, saturated_mask=data >= np.float32(tp.saturation),
        bad_column_x=None, bad_column_rows=None, bad_column_kind=None,
    )
    for arr in (data, noiseless, sky_adu):
        arr.setflags(write=False)
    return SimulatedFrame(
        data=data, noiseless=noiseless, sky_adu=sky_adu, header=header, true_wcs=wcs,
        catalog=science.catalog, stars=table, target=None, psf=psf, photometry=photo,
        defects=defects, params=t_params, seed=seed,
    )


def _header(
    sp: SimulationParams,
    tp: TemplateParams,
    seed: int,
    mjd: float,
    center: tuple[float, float],
    offset_angle_deg: float,
) -> Header:
    h = Header()
    h["OBJECT"] = sp.object_name
    h["DATE-OBS"] = (tp.date_obs, "UTC start of exposure")
    h["MJD-OBS"] = (mjd, "UTC MJD at start of exposure")
    h["EXPTIME"] = (300.0, "[s] exposure time")
    h["FILTER"] = tp.filter or sp.filter
    h["GAIN"] = (tp.gain, "[e-/ADU]")
    h["RDNOISE"] = (tp.read_noise, "[e-] read noise")
    h["SATURATE"] = (tp.saturation, "[ADU] saturation level")
    h["INSTRUME"] = "SimTemplateCam"
    h["TELESCOP"] = "Sim survey"
    h["BUNIT"] = "adu"
    h["SIMULATD"] = (True, "skyphot.testing.simulate_template")
    h["SIMSEED"] = (seed, "simulation seed")
    h.extend(header_wcs_cards(
        tp.shape, center, tp.pixel_scale, tp.rotation_deg,
        offset_arcsec=tp.wcs_offset_arcsec, offset_angle_deg=offset_angle_deg,
        rotation_error_deg=0.05,
    ))
    return h
