"""``simulate_frame``: a realistic CCD frame with exactly known truth.

Order of operations (all seeded; each component draws from its own child generator of
``numpy.random.SeedSequence(seed)``, so e.g. changing ``n_cosmic_rays`` leaves the stars alone):

1. True WCS: TAN at the frame centre + SIP distortion. Star pixel positions are drawn
   uniformly; their sky positions are the true WCS applied to them (pixel -> sky is the
   defining direction of SIP, so positions are exactly consistent).
2. Field stars (power-law luminosity function), extra saturated stars, an optional
   saturated neighbour of the target, and the target; total fluxes (ADU, infinite plane)
   from ``PhotometricModel``.
3. Noiseless image = sky plane + pixel-integrated Moffat stamps (``render``).
4. Poisson noise on sky + stars in electrons, Gaussian read noise, divided by the gain.
5. Cosmic rays and a bad column are added, the data clipped at the saturation level and
   converted to the stored dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import astropy.units as u
import numpy as np
from astropy.io.fits import Header
from astropy.table import Table
from astropy.time import Time
from numpy.typing import NDArray

from skyphot.testing.frame import Defects, PhotometricModel, SimulatedFrame, Truth
from skyphot.testing.galaxy import add_hosts
from skyphot.testing.params import SimulationError, SimulationParams
from skyphot.testing.psf import MoffatField
from skyphot.testing.render import (
    add_star_clipped,
    render_stars,
    stamp_halfwidths,
    unit_stamps,
)
from skyphot.testing.wcs import distortion_coefficients, header_wcs_cards, true_wcs

FloatArray = NDArray[np.float64]

DEFAULT_PARAMS = SimulationParams()

# Flux fraction a field-star stamp may miss; the target's stamp misses at most 1e-5.
FIELD_OUTSIDE_FRACTION = 1e-4
TARGET_OUTSIDE_FRACTION = 1e-5
# Stamps extend until the profile is below this fraction of the faintest background rms.
WING_LEVEL_OF_RMS = 0.01


def simulate_frame(
    params: SimulationParams = DEFAULT_PARAMS, *, seed: int = 0, noise_seed: int | None = None
) -> SimulatedFrame:
    """Simulate one frame; see ``SimulationParams`` for every knob and units.

    The same ``params`` and ``seed`` always give the identical frame. ``noise_seed``, when
    given, draws only the photon and read noise from it: the same scene (stars, catalog,
    target, defects) under another noise realisation, so a frame's systematic bias can be
    measured by averaging over noise draws.
    Raises ``SimulationError`` (a ``ValueError``) when the parameters cannot be realised,
    e.g. a saturated neighbour that cannot be placed on the frame.
    """
    p = params
    rng_wcs, rng_stars, rng_target, rng_noise, rng_cat, rng_defects, rng_sat = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)
    )
    if noise_seed is not None:
        rng_noise = np.random.default_rng(np.random.SeedSequence([seed, noise_seed, 104729]))
    offset_angle_deg = float(rng_wcs.uniform(0.0, 360.0))
    psf = MoffatField(p.shape, p.fwhm, p.fwhm_gradient, p.ellipticity, p.psf_angle_deg, p.beta)
    photo = PhotometricModel(p.shape, p.zero_point, p.zp_gradient, p.color_term,
                             p.response, p.response_pivot)
    sip_a, sip_b = distortion_coefficients(p.shape, p.distortion, rng_wcs)
    wcs = true_wcs(
        p.shape, p.center, p.pixel_scale, p.rotation_deg, sip_a, sip_b,
        margin_px=p.catalog_margin_px,
    )
    target_xy = _target_position(p, rng_target)

    sky_e = _sky_electrons(p)
    sky_adu = sky_e / p.gain
    rms_min = math.sqrt(float(sky_e.min()) / p.gain**2 + (p.read_noise / p.gain) ** 2)
    wing_level = WING_LEVEL_OF_RMS * max(rms_min, 0.1)

    stars = _draw_stars(p, photo, psf, sky_adu, target_xy, rng_stars, rng_sat)
    x, y = np.asarray(stars["x"]), np.asarray(stars["y"])
    ra, dec = wcs.all_pix2world(x, y, 0)
    stars["ra"], stars["dec"] = ra * u.deg, dec * u.deg
    stars_img = render_stars(
        p.shape, x, y, np.asarray(stars["flux_adu"]), psf,
        wing_level=wing_level, max_outside_fraction=FIELD_OUTSIDE_FRACTION,
    )
    noiseless = sky_adu + stars_img

    n_eff = math.nan
    if target_xy is not None and p.target_mag is not None:
        tx, ty = target_xy
        t_flux = float(photo.flux_adu(
            np.array([p.target_mag]), np.array([p.target_color]), np.array([tx]), np.array([ty])
        )[0])
        xs, ys = np.array([tx]), np.array([ty])
        a, _ = psf.axes_array(xs, ys)
        *_, norm = psf.coefficients(xs, ys)

        def halfwidth(level: float) -> int:
            return int(stamp_halfwidths(
                np.array([t_flux]), a, norm, p.beta,
                wing_level=level, max_outside_fraction=TARGET_OUTSIDE_FRACTION,
            )[0])

        add_star_clipped(noiseless, tx, ty, t_flux, psf, halfwidth(wing_level))
        # n_eff from the unit PSF itself (its far wings add nothing to sum(P^2))
        stamp, _, _ = unit_stamps(psf, xs, ys, halfwidth(math.inf))
        n_eff = 1.0 / float(np.sum(stamp[0] ** 2))
        add_hosts(noiseless, p.hosts, wcs=wcs, psf=psf, photo=photo, target_xy=target_xy)

    electrons = rng_noise.poisson(noiseless * p.gain).astype(np.float64)
    if p.read_noise > 0:
        electrons += rng_noise.normal(0.0, p.read_noise, size=p.shape)
    adu = electrons / p.gain
    cr_mask = _add_cosmic_rays(adu, p, psf, target_xy, rng_defects)
    column = _add_bad_column(adu, p, psf, target_xy, rng_defects)
    np.minimum(adu, p.saturation, out=adu)
    if p.dtype == "uint16":
        data: np.ndarray = np.clip(np.rint(adu), 0, 65535).astype(np.uint16)
        sat_stored = float(min(np.rint(p.saturation), 65535))
    else:
        data = adu.astype(np.float32)
        sat_stored = float(np.float32(p.saturation))

    stars["saturated"] = _saturated_at(noiseless, x, y, p.saturation)
    catalog = _catalog(p, stars, rng_cat)
    start = Time(p.date_obs, format="isot", scale="utc")
    truth = None
    if target_xy is not None and p.target_mag is not None:
        tx, ty = target_xy
        t_ra, t_dec = wcs.all_pix2world(np.array([tx]), np.array([ty]), 0)
        truth = Truth(
            x=tx, y=ty, ra=float(t_ra[0]), dec=float(t_dec[0]), mag=p.target_mag,
            color=p.target_color, band=p.bands[1], flux_adu=t_flux,
            zero_point_at_target=float(photo.zero_point_at(tx, ty, p.target_color)
                                       - photo.response_offset(p.target_mag)),
            mjd_mid=float(start.mjd) + p.exptime / 2.0 / 86400.0,
            fwhm=psf.fwhm_at(tx, ty),
            background_variance=_sky_at(p, tx, ty) / p.gain**2 + (p.read_noise / p.gain) ** 2,
            n_eff=n_eff,
            saturated=bool(_saturated_at(noiseless, xs, ys, p.saturation)[0]),
            photometry=photo,
        )

    defects = Defects(
        cosmic_ray_mask=cr_mask, saturated_mask=data >= sat_stored,
        bad_column_x=column[0], bad_column_rows=column[1], bad_column_kind=column[2],
    )
    for arr in (data, noiseless, sky_adu, defects.cosmic_ray_mask, defects.saturated_mask):
        arr.setflags(write=False)
    return SimulatedFrame(
        data=data, noiseless=noiseless, sky_adu=sky_adu,
        header=_header(p, seed, float(start.mjd), offset_angle_deg), true_wcs=wcs, catalog=catalog,
        stars=stars, target=truth, psf=psf, photometry=photo, defects=defects, params=p, seed=seed,
    )


def _target_position(p: SimulationParams, rng: np.random.Generator) -> tuple[float, float] | None:
    if p.target_mag is None:
        return None
    if p.target_xy is not None:
        return float(p.target_xy[0]), float(p.target_xy[1])
    ny, nx = p.shape
    mx, my = min(50.0, (nx - 1) / 4.0), min(50.0, (ny - 1) / 4.0)
    return float(rng.uniform(mx, nx - 1 - mx)), float(rng.uniform(my, ny - 1 - my))


def _sky_terms(p: SimulationParams) -> tuple[float, float, float]:
    """(cx, cy, length) so that t = (cx (x - xc) + cy (y - yc)) / length runs -0.5..0.5."""
    ny, nx = p.shape
    angle = math.radians(p.sky_gradient_angle_deg)
    cx, cy = math.cos(angle), math.sin(angle)
    return cx, cy, (nx - 1) * abs(cx) + (ny - 1) * abs(cy)


def _sky_electrons(p: SimulationParams) -> FloatArray:
    """Sky plane, e- per px: sky * (1 + sky_gradient * t)."""
    ny, nx = p.shape
    cx, cy, length = _sky_terms(p)
    # separable plane: one 2-D addition of two 1-D profiles (fast for big frames)
    along_x = p.sky * (1.0 + p.sky_gradient * cx * (np.arange(nx) - (nx - 1) / 2.0) / length)
    along_y = p.sky * p.sky_gradient * cy * (np.arange(ny) - (ny - 1) / 2.0) / length
    return np.asarray(along_x[None, :] + along_y[:, None])


def _sky_at(p: SimulationParams, x: float, y: float) -> float:
    """Sky, e- per px, at (x, y)."""
    ny, nx = p.shape
    cx, cy, length = _sky_terms(p)
    t = (cx * (x - (nx - 1) / 2.0) + cy * (y - (ny - 1) / 2.0)) / length
    return float(p.sky * (1.0 + p.sky_gradient * t))


def _uniform_points(
    rng: np.random.Generator,
    n: int,
    box: tuple[float, float, float, float],
    reject: Callable[[FloatArray, FloatArray], NDArray[np.bool_]],
) -> tuple[FloatArray, FloatArray]:
    """``n`` uniform points in box (x0, x1, y0, y1) outside the ``reject`` region."""
    xs: list[FloatArray] = [np.zeros(0)]
    ys: list[FloatArray] = [np.zeros(0)]
    have = 0
    for _ in range(1000):
        if have >= n:
            break
        m = max(2 * (n - have), 16)
        x = rng.uniform(box[0], box[1], m)
        y = rng.uniform(box[2], box[3], m)
        keep = ~reject(x, y)
        xs.append(x[keep])
        ys.append(y[keep])
        have += int(keep.sum())
    if have < n:
        raise SimulationError(
            f"could not place {n} stars in the allowed area; reduce target_clear_radius_px "
            "or catalog_margin_px, or enlarge the frame."
        )
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def _draw_mags(rng: np.random.Generator, n: int, bright: float, faint: float) -> FloatArray:
    """Magnitudes with N(<m) proportional to 10**(0.3 m) between ``bright`` and ``faint``."""
    lo, hi = 10.0 ** (0.3 * bright), 10.0 ** (0.3 * faint)
    return np.asarray(np.log10(lo + rng.uniform(size=n) * (hi - lo)) / 0.3)


def _draw_colors(rng: np.random.Generator, n: int) -> FloatArray:
    return np.asarray(np.clip(rng.normal(0.6, 0.35, n), -0.3, 1.8))


def _draw_stars(
    p: SimulationParams,
    photo: PhotometricModel,
    psf: MoffatField,
    sky_adu: FloatArray,
    target_xy: tuple[float, float] | None,
    rng: np.random.Generator,
    rng_sat: np.random.Generator,
) -> Table:
    """All true stars (field, saturated, neighbour) with mags, colours and fluxes."""
    ny, nx = p.shape
    m = p.catalog_margin_px
    on_box = (-0.5, nx - 0.5, -0.5, ny - 0.5)

    def on_frame(x: FloatArray, y: FloatArray) -> NDArray[np.bool_]:
        return np.asarray((x >= on_box[0]) & (x < on_box[1]) & (y >= on_box[2]) & (y < on_box[3]))

    def near_target(x: FloatArray, y: FloatArray, radius: float) -> NDArray[np.bool_]:
        if target_xy is None:
            return np.zeros(x.shape, dtype=bool)
        return np.asarray(np.hypot(x - target_xy[0], y - target_xy[1]) < radius)

    clear = p.target_clear_radius_px
    x_on, y_on = _uniform_points(rng, p.n_stars, on_box, lambda x, y: near_target(x, y, clear))
    n_margin = round(p.n_stars * ((nx + 2 * m) * (ny + 2 * m) - nx * ny) / (nx * ny))
    ext_box = (-0.5 - m, nx - 0.5 + m, -0.5 - m, ny - 0.5 + m)
    x_mg, y_mg = _uniform_points(rng, n_margin, ext_box, on_frame)
    n_field = p.n_stars + n_margin
    x_f, y_f = np.concatenate([x_on, x_mg]), np.concatenate([y_on, y_mg])
    mag_f = _draw_mags(rng, n_field, p.mag_bright, p.mag_faint)
    col_f = _draw_colors(rng, n_field)
    flux_f = photo.flux_adu(mag_f, col_f, x_f, y_f)

    # extra saturated stars: peak pixel 3-30x above saturation, away from the target
    avoid = max(60.0, clear)
    try:
        x_s, y_s = _uniform_points(
            rng_sat, p.n_saturated, on_box, lambda x, y: near_target(x, y, avoid)
        )
    except SimulationError:
        x_s, y_s = _uniform_points(
            rng_sat, p.n_saturated, on_box, lambda x, y: near_target(x, y, clear)
        )
    factor_s = 10.0 ** rng_sat.uniform(math.log10(3.0), math.log10(30.0), p.n_saturated)
    kinds = ["field"] * n_field + ["saturated"] * p.n_saturated
    xs_list, ys_list, fac_list = [x_s], [y_s], [factor_s]
    if p.saturated_neighbour_px is not None and target_xy is not None:
        nbx, nby = _place_neighbour(p, target_xy, rng_sat)
        xs_list.append(np.array([nbx]))
        ys_list.append(np.array([nby]))
        fac_list.append(np.array([p.neighbour_peak]))
        kinds.append("neighbour")
    x_b, y_b, fac_b = np.concatenate(xs_list), np.concatenate(ys_list), np.concatenate(fac_list)
    col_b = _draw_colors(rng_sat, len(x_b))
    *_, norm_b = psf.coefficients(x_b, y_b)
    sky_b = sky_adu[np.clip(np.rint(y_b).astype(int), 0, ny - 1),
                    np.clip(np.rint(x_b).astype(int), 0, nx - 1)]
    flux_b = fac_b * (p.saturation - sky_b) / norm_b
    mag_b = photo.zero_point_at(x_b, y_b, col_b) - 2.5 * np.log10(flux_b)

    x = np.concatenate([x_f, x_b])
    y = np.concatenate([y_f, y_b])
    mag = np.concatenate([mag_f, mag_b])
    color = np.concatenate([col_f, col_b])
    b0, b1 = p.bands
    table = Table()
    table["id"] = [f"SIM{i:06d}" for i in range(len(x))]
    table["kind"] = kinds
    table["x"] = x
    table["y"] = y
    table["ra"] = np.zeros(len(x)) * u.deg
    table["dec"] = np.zeros(len(x)) * u.deg
    table[b0] = (mag + color) * u.mag
    table[b1] = mag * u.mag
    table["color"] = color * u.mag
    table["flux_adu"] = np.concatenate([flux_f, flux_b])
    # Saturated stars' counts are set from the saturation level, so their magnitudes are
    # linear ones (a quadratic response has no inverse that bright): no response offset.
    offset = np.concatenate([photo.response_offset(mag_f), np.zeros(len(x_b))])
    table["zero_point"] = (photo.zero_point_at(x, y, color) - offset) * u.mag
    table["fwhm"] = psf.fwhm_array(x, y)
    table["on_frame"] = on_frame(x, y)
    table["in_catalog"] = mag <= p.catalog_depth
    table["saturated"] = np.zeros(len(x), dtype=bool)
    return table


def _place_neighbour(
    p: SimulationParams, target_xy: tuple[float, float], rng: np.random.Generator
) -> tuple[float, float]:
    ny, nx = p.shape
    d = float(p.saturated_neighbour_px or 0.0)
    for angle in rng.uniform(0.0, 2.0 * math.pi, 360):
        x = target_xy[0] + d * math.cos(angle)
        y = target_xy[1] + d * math.sin(angle)
        if 0.0 <= x <= nx - 1 and 0.0 <= y <= ny - 1:
            return x, y
    raise SimulationError(
        f"saturated_neighbour_px={d} puts the neighbour off the frame in every direction from "
        f"the target at ({target_xy[0]:.1f}, {target_xy[1]:.1f}); use a smaller distance."
    )


def _saturated_at(
    noiseless: FloatArray, x: FloatArray, y: FloatArray, saturation: float
) -> NDArray[np.bool_]:
    """True where any pixel within 1 px of the nearest pixel is at/above saturation."""
    ny, nx = noiseless.shape
    out = np.zeros(len(x), dtype=bool)
    xi, yi = np.rint(x).astype(int), np.rint(y).astype(int)
    for k in np.flatnonzero((xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)):
        box = noiseless[max(yi[k] - 1, 0) : yi[k] + 2, max(xi[k] - 1, 0) : xi[k] + 2]
        out[k] = bool(np.max(box) >= saturation)
    return out


def _keepout(psf: MoffatField, target_xy: tuple[float, float]) -> float:
    """Cosmic rays and the bad column stay this far (px) from the target."""
    return max(4.0 * psf.fwhm_at(*target_xy), 12.0)


def _add_cosmic_rays(
    adu: FloatArray,
    p: SimulationParams,
    psf: MoffatField,
    target_xy: tuple[float, float] | None,
    rng: np.random.Generator,
) -> NDArray[np.bool_]:
    """Add 1-3 px hits (2,000-30,000 e- per px) in place; return their mask."""
    ny, nx = p.shape
    mask = np.zeros(p.shape, dtype=bool)
    keepout = _keepout(psf, target_xy) if target_xy is not None else 0.0
    steps = [(1, 0), (0, 1), (1, 1), (1, -1)]
    placed = 0
    while placed < p.n_cosmic_rays:
        x0, y0 = int(rng.integers(0, nx)), int(rng.integers(0, ny))
        length = int(rng.integers(1, 4))
        sx, sy = steps[int(rng.integers(0, len(steps)))]
        px = np.clip(x0 + sx * np.arange(length), 0, nx - 1)
        py = np.clip(y0 + sy * np.arange(length), 0, ny - 1)
        if target_xy is not None and np.any(
            np.hypot(px - target_xy[0], py - target_xy[1]) < keepout
        ):
            continue
        adu[py, px] += rng.uniform(2000.0, 30000.0, length) / p.gain
        mask[py, px] = True
        placed += 1
    return mask


def _add_bad_column(
    adu: FloatArray,
    p: SimulationParams,
    psf: MoffatField,
    target_xy: tuple[float, float] | None,
    rng: np.random.Generator,
) -> tuple[int | None, tuple[int, int] | None, Literal["hot", "dead"] | None]:
    """Set one (full or partial) column hot (= saturation) or dead (= 0) in place."""
    if not p.bad_column:
        return None, None, None
    ny, nx = p.shape
    keepout = _keepout(psf, target_xy) if target_xy is not None else 0.0
    allowed = np.arange(2, nx - 2)
    if target_xy is not None:
        allowed = allowed[np.abs(allowed - target_xy[0]) >= keepout]
    if len(allowed) == 0:
        raise SimulationError(
            "no column is far enough from the target for the bad column; "
            "set bad_column=False or enlarge the frame."
        )
    col = int(rng.choice(allowed))
    start = 0 if rng.uniform() < 0.5 else int(rng.integers(0, ny // 2))
    kind: Literal["hot", "dead"] = "hot" if rng.uniform() < 0.5 else "dead"
    adu[start:, col] = p.saturation if kind == "hot" else 0.0
    return col, (start, ny), kind


def _catalog_errors(p: SimulationParams, mag: FloatArray) -> FloatArray:
    random = p.catalog_error_at_depth * 10.0 ** (0.4 * (mag - p.catalog_depth))
    return np.asarray(np.hypot(p.catalog_error_floor, random))


def _catalog(p: SimulationParams, stars: Table, rng: np.random.Generator) -> Table:
    """Reference catalog: stars with true bands[1] <= catalog_depth, noisy mags, true errors."""
    sel = np.asarray(stars["in_catalog"])
    cat = Table()
    cat["id"] = stars["id"][sel]
    cat["ra"] = np.asarray(stars["ra"][sel]) * u.deg
    cat["dec"] = np.asarray(stars["dec"][sel]) * u.deg
    for band in p.bands:
        true = np.asarray(stars[band][sel])
        err = _catalog_errors(p, true)
        cat[band] = (true + err * rng.standard_normal(len(true))) * u.mag
        cat[f"{band}_err"] = err * u.mag
    return cat


def _header(p: SimulationParams, seed: int, mjd_start: float, offset_angle_deg: float) -> Header:
    h = Header()
    h["OBJECT"] = p.object_name
    h["DATE-OBS"] = (p.date_obs, "UTC start of exposure")
    h["MJD-OBS"] = (mjd_start, "UTC MJD at start of exposure")
    h["TIMESYS"] = "UTC"
    h["EXPTIME"] = (p.exptime, "[s] exposure time")
    h["FILTER"] = p.filter
    h["GAIN"] = (p.gain, "[e-/ADU]")
    h["RDNOISE"] = (p.read_noise, "[e-] read noise")
    h["SATURATE"] = (p.saturation, "[ADU] saturation level")
    h["INSTRUME"] = p.instrument
    h["TELESCOP"] = p.telescope
    h["BUNIT"] = "adu"
    h["SIMULATD"] = (True, "made by skyphot.testing.simulate_frame")
    h["SIMSEED"] = (seed, "simulation seed")
    if p.include_wcs:
        h.extend(header_wcs_cards(
            p.shape, p.center, p.pixel_scale, p.rotation_deg,
            offset_arcsec=p.wcs_offset_arcsec,
            offset_angle_deg=offset_angle_deg,
            rotation_error_deg=p.wcs_rotation_error_deg,
            frame=p.wcs_frame,
            mjd_obs=mjd_start,
        ))
    return h
