"""Truth-based tests of the simulator: what ``Truth`` says must be what is in the pixels."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skyphot.errors import ConfigError
from skyphot.testing import (
    MoffatField,
    SimulatedFrame,
    SimulationError,
    SimulationParams,
    simulate_frame,
)

# A lone star on an empty (sky = 0) frame: nothing but the target is in the noiseless image.
LONE = dict(
    n_stars=0, n_saturated=0, sky=0.0, n_cosmic_rays=0, bad_column=False, target_mag=15.0
)


@pytest.fixture(scope="module")
def default_frame() -> SimulatedFrame:
    return simulate_frame(SimulationParams(), seed=7)


def _moffat_pixels(
    psf: MoffatField, x: float, y: float, half: int, sub: int = 24
) -> tuple[np.ndarray, int, int]:
    """Independent brute-force pixel integration (sub x sub midpoint rule), written from the
    profile definition, to check the simulator's quadrature."""
    fwhm = psf.fwhm_at(x, y)
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / psf.beta) - 1.0))
    a = alpha / math.sqrt(1.0 - psf.ellipticity)
    b = alpha * math.sqrt(1.0 - psf.ellipticity)
    xc = (psf.shape[1] - 1) / 2.0
    theta = math.radians(psf.angle_deg + psf.angle_swing_deg * (x - xc) / xc)
    x0, y0 = round(x) - half, round(y) - half
    t = (np.arange(sub) + 0.5) / sub - 0.5
    px = (x0 + np.arange(2 * half + 1))[:, None] + t[None, :]  # (pixel, sub)
    py = (y0 + np.arange(2 * half + 1))[:, None] + t[None, :]
    dx = px.ravel()[None, :] - x
    dy = py.ravel()[:, None] - y
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = -dx * math.sin(theta) + dy * math.cos(theta)
    val = (psf.beta - 1) / (math.pi * a * b) * (1 + (u / a) ** 2 + (v / b) ** 2) ** -psf.beta
    n = 2 * half + 1
    pix = val.reshape(n, sub, n, sub).mean(axis=(1, 3))
    return pix, x0, y0


# ---------------------------------------------------------------- flux and PSF truth


@pytest.mark.parametrize(
    ("fwhm", "beta", "xy"),
    [(3.5, 3.0, (400.3, 300.7)), (1.6, 2.5, (123.8, 511.2)), (5.0, 4.765, (2.0, 300.0))],
)
def test_noiseless_single_star_sums_to_truth_flux(
    fwhm: float, beta: float, xy: tuple[float, float]
) -> None:
    params = SimulationParams(**LONE, fwhm=fwhm, beta=beta, target_xy=xy, shape=(600, 800))
    frame = simulate_frame(params, seed=3)
    total = frame.noiseless.sum()
    if xy[0] < 50:  # target 10 px from the edge: part of its light falls off the frame
        stamp, x0, _ = frame.psf.render(*xy, size=201)
        on = stamp[:, max(-x0, 0) :].sum()
        assert total / (frame.truth.flux_adu * on) == pytest.approx(1.0, abs=3e-4)
        assert on < 0.9  # the truth flux is still the total over the plane
    else:
        # spec: < 0.2 %; the quadrature is good to ~1e-4 and the target's stamp misses < 1e-5
        assert total / frame.truth.flux_adu == pytest.approx(1.0, abs=3e-4)
    # the catalog-system magnitude follows from the flux and the zero point at the target
    mag = -2.5 * math.log10(frame.truth.flux_adu) + frame.truth.zero_point_at_target
    assert mag == pytest.approx(frame.truth.mag, abs=1e-12)


def test_bright_star_big_stamp_keeps_its_wings() -> None:
    # 9th mag: ~2.5e6 ADU; its Moffat wings need a large stamp to hold the flux
    frame = simulate_frame(SimulationParams(**{**LONE, "target_mag": 9.0}), seed=1)
    assert frame.noiseless.sum() / frame.truth.flux_adu == pytest.approx(1.0, abs=3e-4)
    assert frame.truth.saturated


def test_psf_quadrature_matches_brute_force_integration() -> None:
    psf = MoffatField((600, 800), 3.5, 0.1, 0.05, 30.0, 3.0)
    for x, y in [(400.2, 300.4), (12.7, 580.1)]:
        stamp, x0, y0 = psf.render(x, y, size=41)
        ref, rx0, ry0 = _moffat_pixels(psf, x, y, 20)
        assert (x0, y0) == (rx0, ry0)
        # midpoint 24x24 has relative error ~1e-4 at the peak; GL is far better
        assert np.max(np.abs(stamp - ref)) < 3e-4 * ref.max()


def test_psf_fwhm_is_where_the_profile_halves() -> None:
    psf = MoffatField((600, 800), 4.0, 0.0, 0.0, 0.0, 2.5)
    A, *_ = psf.coefficients(np.array([399.5]), np.array([299.5]))
    r = psf.fwhm_at(399.5, 299.5) / 2.0
    assert (1.0 + A[0] * r * r) ** -2.5 == pytest.approx(0.5, rel=1e-12)
    # the profile integrates to 1 over the plane (analytic normalisation)
    stamp, *_ = psf.render(399.5, 299.5, size=801)
    assert stamp.sum() == pytest.approx(1.0, abs=2e-4)


def test_psf_varies_across_the_field() -> None:
    psf = SimulationParams()
    frame = simulate_frame(SimulationParams(n_stars=0, n_saturated=0), seed=0)
    ny, nx = psf.shape
    centre = frame.psf.fwhm_at((nx - 1) / 2, (ny - 1) / 2)
    corner = frame.psf.fwhm_at(0, 0)
    assert centre == pytest.approx(psf.fwhm)
    assert corner == pytest.approx(psf.fwhm * (1 + psf.fwhm_gradient))


def test_ideal_flux_error_matches_explicit_sum_over_rendered_psf() -> None:
    params = SimulationParams(target_xy=(321.4, 210.9))
    frame = simulate_frame(params, seed=5)
    t = frame.truth
    ref, *_ = _moffat_pixels(frame.psf, t.x, t.y, 60, sub=12)
    n_eff = 1.0 / np.sum(ref**2)
    assert t.n_eff == pytest.approx(n_eff, rel=1e-3)
    sky_e = frame.sky_adu[round(t.y), round(t.x)] * params.gain
    b = sky_e / params.gain**2 + (params.read_noise / params.gain) ** 2
    assert t.background_variance == pytest.approx(b, rel=1e-3)  # sky plane: sub-px shift
    assert t.ideal_flux_error() == pytest.approx(math.sqrt(b * n_eff), rel=1e-3)
    limit = t.zero_point_at_target - 2.5 * math.log10(5 * math.sqrt(b * n_eff))
    assert t.ideal_limit(5.0) == pytest.approx(limit, abs=1e-3)
    assert t.ideal_mag_error() == pytest.approx(1.0857 * t.ideal_flux_error() / t.flux_adu,
                                                rel=1e-4)


def test_pixel_noise_matches_background_variance() -> None:
    params = SimulationParams(n_stars=0, n_saturated=0, n_cosmic_rays=0, bad_column=False,
                              target_mag=None)
    frame = simulate_frame(params, seed=9)
    resid = frame.data.astype(float) - frame.noiseless
    b = frame.sky_adu / params.gain + (params.read_noise / params.gain) ** 2
    pulls = (resid / np.sqrt(b)).ravel()
    # variance of a sample variance: 2/N; 4 sigma
    assert np.var(pulls) == pytest.approx(1.0, abs=4 * math.sqrt(2 / pulls.size))
    assert abs(np.mean(pulls)) < 4 / math.sqrt(pulls.size)


def test_star_fluxes_follow_the_photometric_model(default_frame: SimulatedFrame) -> None:
    s = default_frame.stars
    p = default_frame.params
    b0, b1 = p.bands
    mag = -2.5 * np.log10(s["flux_adu"]) + np.asarray(s["zero_point"])
    assert np.allclose(mag, s[b1], atol=1e-9)
    assert np.allclose(np.asarray(s[b0]) - np.asarray(s[b1]), s["color"], atol=1e-12)
    ny, nx = p.shape
    assert default_frame.zero_point_at(0, 0, 1.0) == pytest.approx(
        p.zero_point - p.zp_gradient + p.color_term
    )
    assert default_frame.zero_point_at((nx - 1) / 2, (ny - 1) / 2, 0.0) == p.zero_point
    field = s[s["kind"] == "field"]
    assert np.sum(field["on_frame"]) == p.n_stars
    assert np.all((field["color"] >= -0.3) & (field["color"] <= 1.8))
    assert np.all((field[b1] >= p.mag_bright) & (field[b1] <= p.mag_faint))


# ---------------------------------------------------------------- reproducibility, shape


def test_seeded_reproducibility() -> None:
    params = SimulationParams(shape=(200, 300), n_stars=60)
    a, b = simulate_frame(params, seed=4), simulate_frame(params, seed=4)
    c = simulate_frame(params, seed=5)
    assert np.array_equal(a.data, b.data)
    assert np.array_equal(a.catalog["r"], b.catalog["r"])
    assert a.header.tostring() == b.header.tostring()
    assert a.truth == b.truth
    assert not np.array_equal(a.data, c.data)


def test_a_noise_draw_changes_only_the_noise() -> None:
    params = SimulationParams(shape=(200, 300), n_stars=60)
    base = simulate_frame(params, seed=4)
    a, b = (simulate_frame(params, seed=4, noise_seed=n) for n in (1, 2))
    assert np.array_equal(a.noiseless, base.noiseless)
    assert np.array_equal(a.catalog["r"], base.catalog["r"])
    assert np.array_equal(a.defects.cosmic_ray_mask, base.defects.cosmic_ray_mask)
    assert a.header.tostring() == base.header.tostring() and a.truth == base.truth
    assert not np.array_equal(a.data, b.data)
    assert np.array_equal(a.data, simulate_frame(params, seed=4, noise_seed=1).data)
    # two draws of an empty sky differ by twice the pixel variance the model predicts
    empty = SimulationParams(n_stars=0, n_saturated=0, n_cosmic_rays=0, bad_column=False,
                             target_mag=None)
    c, d = (simulate_frame(empty, seed=9, noise_seed=n) for n in (1, 2))
    predicted = c.sky_adu / empty.gain + (empty.read_noise / empty.gain) ** 2
    ratio = np.var(c.data.astype(float) - d.data.astype(float)) / (2 * np.mean(predicted))
    assert ratio == pytest.approx(1.0, abs=0.02)


def test_non_square_frame_keeps_x_and_y_apart() -> None:
    # x = 450 exists only on the long axis: a swapped convention would fail here
    params = SimulationParams(shape=(300, 500), target_xy=(450.0, 120.0), **LONE)
    frame = simulate_frame(params, seed=2)
    assert frame.data.shape == (300, 500)
    assert frame.noiseless.shape == (300, 500)
    peak = np.unravel_index(np.argmax(frame.noiseless), frame.noiseless.shape)
    assert peak == (120, 450)


def test_arrays_are_read_only(default_frame: SimulatedFrame) -> None:
    with pytest.raises(ValueError, match="read-only"):
        default_frame.data[0, 0] = 1


# ---------------------------------------------------------------- writing


def test_uint16_written_as_bitpix16_bzero(tmp_path: Path) -> None:
    params = SimulationParams(shape=(200, 300), n_stars=50, dtype="uint16")
    frame = simulate_frame(params, seed=1)
    paths = frame.write(tmp_path)
    with fits.open(paths.image) as hdul:
        assert hdul[0].header["BITPIX"] == 16
        assert hdul[0].header["BZERO"] == 32768
        assert np.array_equal(hdul[0].data, frame.data)
        assert hdul[0].header["SATURATE"] == params.saturation
    # same seed as float32: values equal within rounding (apart from the 0 / 65535 clip)
    f32 = simulate_frame(SimulationParams(shape=(200, 300), n_stars=50), seed=1)
    assert np.max(np.abs(frame.data.astype(float) - f32.data.astype(float))) <= 0.5 + 1e-3


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
@pytest.mark.parametrize("compression", ["fz", "gz"])
def test_compressed_round_trip(tmp_path: Path, dtype: str, compression: str) -> None:
    frame = simulate_frame(SimulationParams(shape=(150, 200), n_stars=30, dtype=dtype), seed=2)
    paths = frame.write(tmp_path, compression=compression)
    assert paths.image.name.endswith(f".fits.{compression}")
    with fits.open(paths.image) as hdul:
        hdu = hdul[1] if compression == "fz" else hdul[0]
        assert np.array_equal(hdu.data, frame.data)  # lossless, bit for bit
        assert hdu.data.dtype.name == frame.data.dtype.name
        assert hdu.header["GAIN"] == frame.params.gain
        assert hdu.header["FILTER"] == "r"
        assert WCS(hdu.header).has_celestial


@pytest.mark.parametrize("fmt", ["ecsv", "csv", "fits", "parquet"])
@pytest.mark.parametrize("style", ["plain", "vizier"])
def test_catalog_formats_round_trip(
    tmp_path: Path, default_frame: SimulatedFrame, fmt: str, style: str
) -> None:
    paths = default_frame.write(tmp_path, catalog_format=fmt, catalog_style=style)  # type: ignore[arg-type]
    table = Table.read(paths.catalog)
    names = ("RAJ2000", "DEJ2000", "rmag", "e_rmag", "gmag") if style == "vizier" else (
        "ra", "dec", "r", "r_err", "g"
    )
    for name in names:
        assert name in table.colnames
    assert np.allclose(table[names[2]], default_frame.catalog["r"])
    assert len(table) == len(default_frame.catalog)


def test_write_rejects_unknown_options(tmp_path: Path, default_frame: SimulatedFrame) -> None:
    with pytest.raises(SimulationError, match="compression='zip' is not known"):
        default_frame.write(tmp_path, compression="zip")  # type: ignore[arg-type]
    with pytest.raises(SimulationError, match="catalog_format='votable' is not known"):
        default_frame.write(tmp_path, catalog_format="votable")  # type: ignore[arg-type]
    with pytest.raises(SimulationError, match="catalog_style='sdss' is not known"):
        default_frame.write(tmp_path, catalog_style="sdss")  # type: ignore[arg-type]


# ---------------------------------------------------------------- catalog


def test_catalog_noise_matches_reported_errors() -> None:
    frame = simulate_frame(SimulationParams(n_stars=1500, catalog_depth=21.5), seed=8)
    stars = frame.stars[frame.stars["in_catalog"]]
    cat = frame.catalog
    assert list(cat["id"]) == list(stars["id"])
    pulls = np.concatenate([
        (np.asarray(cat[b]) - np.asarray(stars[b])) / np.asarray(cat[f"{b}_err"])
        for b in frame.params.bands
    ])
    n = pulls.size
    assert n > 500
    assert np.std(pulls) == pytest.approx(1.0, abs=4 / math.sqrt(2 * n))
    assert abs(np.mean(pulls)) < 4 / math.sqrt(n)
    err = np.asarray(cat["r_err"])
    assert err.min() >= frame.params.catalog_error_floor


def test_catalog_content(default_frame: SimulatedFrame) -> None:
    p = default_frame.params
    s = default_frame.stars
    cat = default_frame.catalog
    ny, nx = p.shape
    m = p.catalog_margin_px
    assert set(cat.colnames) >= {"ra", "dec", "g", "g_err", "r", "r_err"}
    # everything on the frame down to the depth is in; nothing fainter; nothing beyond margin
    want = s["r"] <= p.catalog_depth
    assert set(cat["id"]) == set(s["id"][want])
    x, y = default_frame.true_wcs.all_world2pix(cat["ra"], cat["dec"], 0)
    assert np.all((x > -m - 1) & (x < nx + m) & (y > -m - 1) & (y < ny + m))
    assert np.any((x < 0) | (x > nx - 1))  # the margin is used
    # saturated stars are in the catalog; the target is not
    sat = s[s["saturated"] & s["on_frame"]]
    assert len(sat) >= p.n_saturated
    assert set(sat["id"]) <= set(cat["id"])
    t = default_frame.truth
    sep = SkyCoord(cat["ra"], cat["dec"], unit="deg").separation(
        SkyCoord(t.ra, t.dec, unit="deg")
    )
    assert sep.arcsec.min() > p.target_clear_radius_px * p.pixel_scale * 0.9


def test_catalog_positions_are_where_the_flux_peaks() -> None:
    # a field of bright stars, so that many are isolated and well above the sky
    f = simulate_frame(SimulationParams(n_stars=120, mag_faint=17.5), seed=12)
    s = f.stars
    ny, nx = f.params.shape
    x, y = f.true_wcs.all_world2pix(f.catalog["ra"], f.catalog["dec"], 0)
    stars_only = f.noiseless - f.sky_adu
    sx, sy, sflux = np.asarray(s["x"]), np.asarray(s["y"]), np.asarray(s["flux_adu"])
    checked = 0
    for xi, yi in zip(x, y, strict=True):
        if not (20 < xi < nx - 21 and 20 < yi < ny - 21):
            continue
        d = np.hypot(sx - xi, sy - yi)
        own = int(np.argmin(d))
        # others' light here (Moffat wing, alpha ~ FWHM) must be < 1e-3 of this star's peak
        wing = sflux * (1 + (d / f.params.fwhm) ** 2) ** -f.params.beta
        wing[own] = 0.0
        near = (d < 25) & (d > 0.01) & (sflux > 1e-3 * sflux[own])
        if np.any(wing > 1e-3 * sflux[own]) or np.any(near) or s["saturated"][own]:
            continue  # not isolated
        ix, iy = round(xi), round(yi)
        yy, xx = np.mgrid[iy - 12 : iy + 13, ix - 12 : ix + 13]
        cut = stars_only[iy - 12 : iy + 13, ix - 12 : ix + 13]
        # the brightest pixel is the one containing the catalog position
        py, px = np.unravel_index(np.argmax(cut), cut.shape)
        assert abs(xx[py, px] - xi) <= 0.6 and abs(yy[py, px] - yi) <= 0.6
        # and the light is centred on it (centroid in a 10 px circle around it)
        w = cut * (np.hypot(xx - xi, yy - yi) < 10)
        cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
        assert math.hypot(cx - xi, cy - yi) < 0.05  # distortion alone is up to 1.5 px
        checked += 1
    assert checked >= 10


# ---------------------------------------------------------------- WCS


def test_header_wcs_is_off_by_the_requested_offset_and_rotation() -> None:
    params = SimulationParams(wcs_offset_arcsec=7.5, wcs_rotation_error_deg=0.3, rotation_deg=20)
    frame = simulate_frame(params, seed=3)
    ny, nx = params.shape
    xc, yc = (nx - 1) / 2, (ny - 1) / 2
    head = WCS(frame.header)
    assert not head.has_distortion
    true = frame.true_wcs
    sep = head.pixel_to_world(xc, yc).separation(true.pixel_to_world(xc, yc))
    assert sep.arcsec == pytest.approx(7.5, abs=1e-6)
    # rotation: position angle of the +y axis (200 px up from the centre), header vs truth
    def pa(w: WCS) -> float:
        # linear (TAN) part only: the truth's SIP distortion would add its own small turn
        (ra0, ra1), (dec0, dec1) = w.wcs_pix2world([xc, xc], [yc, yc + 200], 0)
        c0, c1 = SkyCoord(ra0, dec0, unit="deg"), SkyCoord(ra1, dec1, unit="deg")
        return float(c0.position_angle(c1).deg)

    assert pa(head) - pa(true) == pytest.approx(0.3, abs=2e-3)
    assert pa(true) == pytest.approx(20.0, abs=0.01)  # rotation_deg: PA of +y, N through E
    # the pixel scale is right
    scale = true.proj_plane_pixel_scales()[0].to_value("arcsec")
    assert scale == pytest.approx(params.pixel_scale)


def test_true_wcs_carries_the_distortion() -> None:
    params = SimulationParams(distortion=2.0)
    frame = simulate_frame(params, seed=4)
    ny, nx = params.shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 101), np.linspace(0, ny - 1, 101))
    ra, dec = frame.true_wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
    ux, uy = frame.true_wcs.wcs_world2pix(ra, dec, 0)  # TAN part alone, no SIP
    shift = np.hypot(ux - gx.ravel(), uy - gy.ravel())
    assert shift.max() == pytest.approx(2.0, rel=0.02)
    # star positions come from the true WCS: its inverse gives back the pixel positions
    s = frame.stars
    x, y = frame.true_wcs.all_world2pix(s["ra"], s["dec"], 0, tolerance=1e-8)
    assert np.max(np.hypot(x - s["x"], y - s["y"])) < 1e-5
    # the fitted inverse (AP/BP) in the SIP header is good to < 1e-3 px
    fx, fy = frame.true_wcs.sip_foc2pix(
        frame.true_wcs.sip_pix2foc(np.c_[gx.ravel(), gy.ravel()] + 1, 1), 1
    ).T
    assert np.max(np.hypot(fx - 1 - gx.ravel(), fy - 1 - gy.ravel())) < 1e-3


def test_no_wcs_frame_has_no_wcs_keywords(tmp_path: Path) -> None:
    frame = simulate_frame(SimulationParams(include_wcs=False, shape=(100, 120), n_stars=5),
                           seed=0)
    paths = frame.write(tmp_path)
    header = fits.getheader(paths.image)
    wcs_keys = ("CTYPE", "CRPIX", "CRVAL", "CD1_", "CD2_", "PC1_", "PC2_", "CDELT", "WCSAXES",
                "A_ORDER", "RADESYS")
    assert not [k for k in header if k.startswith(wcs_keys)]
    assert not WCS(header).has_celestial
    assert frame.true_wcs.has_celestial  # the truth still knows where the stars are


def test_header_metadata(default_frame: SimulatedFrame) -> None:
    h = default_frame.header
    p = default_frame.params
    for key, value in [("EXPTIME", p.exptime), ("FILTER", p.filter), ("GAIN", p.gain),
                       ("RDNOISE", p.read_noise), ("SATURATE", p.saturation),
                       ("INSTRUME", p.instrument), ("TELESCOP", p.telescope),
                       ("OBJECT", p.object_name), ("DATE-OBS", p.date_obs)]:
        assert h[key] == value
    assert default_frame.truth.mjd_mid - h["MJD-OBS"] == pytest.approx(
        p.exptime / 2 / 86400, abs=1e-9
    )


# ---------------------------------------------------------------- target and artefacts


def test_target_off_frame_raises_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"target_xy=\(800\.0, 10\.0\) is off the 800x600"):
        SimulationParams(target_xy=(800.0, 10.0))
    with pytest.raises(ConfigError, match="Put the target on the frame"):
        SimulationParams(target_xy=(10.0, -3.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": 1.5}, "beta=1.5 is below 2"),
        ({"shape": (8, 100)}, "too small"),
        ({"mag_bright": 20.0, "mag_faint": 19.0}, "must be brighter"),
        ({"dtype": "uint16", "saturation": 70000.0}, "exceeds 65535"),
        ({"bands": ("r", "r")}, "two different band names"),
        ({"date_obs": "yesterday"}, "is not an ISO time"),
        ({"gain": 0.0}, "gain=0.0 must be a positive number"),
        ({"n_stars": -1}, "n_stars=-1 must be zero or positive"),
        ({"saturated_neighbour_px": 20.0, "target_mag": None}, "needs a target"),
        ({"sky": 100000.0}, "at or above the saturation level"),
    ],
)
def test_invalid_parameters_are_explained(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        SimulationParams(**kwargs)  # type: ignore[arg-type]


def test_saturated_neighbour_and_unplaceable_neighbour() -> None:
    params = SimulationParams(shape=(200, 300), n_stars=20, saturated_neighbour_px=15.0,
                              target_xy=(150.0, 100.0))
    frame = simulate_frame(params, seed=6)
    nb = frame.stars[frame.stars["kind"] == "neighbour"]
    assert len(nb) == 1 and nb["saturated"][0]
    assert math.hypot(nb["x"][0] - 150.0, nb["y"][0] - 100.0) == pytest.approx(15.0)
    assert frame.data[round(nb["y"][0]), round(nb["x"][0])] == params.saturation
    with pytest.raises(SimulationError, match="off the frame in every direction"):
        simulate_frame(SimulationParams(shape=(200, 300), saturated_neighbour_px=400.0), seed=0)


def test_cosmic_rays_and_bad_column_avoid_the_target() -> None:
    for seed in range(4):
        params = SimulationParams(shape=(120, 160), n_stars=10, n_cosmic_rays=200)
        frame = simulate_frame(params, seed=seed)
        t, d = frame.truth, frame.defects
        yy, xx = np.nonzero(d.cosmic_ray_mask)
        assert len(xx) >= 200
        assert np.min(np.hypot(xx - t.x, yy - t.y)) >= 4 * t.fwhm
        assert d.bad_column_x is not None and abs(d.bad_column_x - t.x) >= 4 * t.fwhm
        assert d.bad_column_rows is not None
        col = frame.data[d.bad_column_rows[0] : d.bad_column_rows[1], d.bad_column_x]
        expected = params.saturation if d.bad_column_kind == "hot" else 0.0
        assert np.all(col == expected)
        # cosmic rays are sharp and high (where the bad column or saturation did not win)
        hit = d.cosmic_ray_mask & ~d.saturated_mask
        hit[:, d.bad_column_x] = False
        assert np.all(frame.data[hit] - frame.noiseless[hit] > 500)


def test_frame_without_target() -> None:
    frame = simulate_frame(SimulationParams(target_mag=None, shape=(100, 100), n_stars=10))
    assert frame.target is None
    with pytest.raises(SimulationError, match="has no target"):
        _ = frame.truth


@pytest.mark.slow
def test_speed() -> None:
    # CPU time, not wall time: other jobs on a shared machine must not fail this test
    best = math.inf
    for seed in range(2):
        t0 = time.process_time()
        simulate_frame(SimulationParams(shape=(2048, 2048), n_stars=3000), seed=seed)
        best = min(best, time.process_time() - t0)
    assert best < 3.0
    best = math.inf
    for seed in range(3):
        t0 = time.process_time()
        simulate_frame(SimulationParams(shape=(512, 768)), seed=seed)
        best = min(best, time.process_time() - t0)
    assert best < 0.5


def test_nonlinear_response_records_known_counts() -> None:
    params = SimulationParams(shape=(200, 240), n_stars=40, target_mag=19.0, response=0.05,
                              response_pivot=17.0, n_cosmic_rays=0, bad_column=False)
    frame = simulate_frame(params, seed=3)
    linear = simulate_frame(SimulationParams(**{**params.__dict__, "response": 0.0}), seed=3)
    # the target records 0.05 * 2^2 = 0.2 mag fainter than on a linear detector; truth stays
    assert frame.truth.mag == linear.truth.mag == 19.0
    assert -2.5 * math.log10(frame.truth.flux_adu / linear.truth.flux_adu) == pytest.approx(
        0.2, abs=1e-12)
    mag = -2.5 * math.log10(frame.truth.flux_adu) + frame.truth.zero_point_at_target
    assert mag == pytest.approx(19.0, abs=1e-12)
    s = frame.stars
    # every star (saturated ones keep linear magnitudes) still obeys the zero_point column
    rec = -2.5 * np.log10(s["flux_adu"]) + np.asarray(s["zero_point"])
    assert len(s) > 40 and np.allclose(rec, np.asarray(s["r"]), atol=1e-9)
    with pytest.raises(SimulationError, match="response="):
        SimulationParams(response=0.5)
