"""refine_wcs and the WCS helpers, against synthetic star lists with a known TAN-SIP truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, Sip

from skyphot.core.astrometry import (
    AstrometricSolution,
    footprint_radius_deg,
    pixel_scale_arcsec,
    refine_wcs,
    world_to_pixel,
)
from skyphot.core.wcs_utils import gnomonic, inverse_gnomonic
from skyphot.errors import AstrometryError, InputError, WCSError

NX = NY = 2048
SHAPE = (NY, NX)
SCALE = 1.0  # arcsec / px
REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"


def truth_wcs(
    *, flip: bool = False, order: int = 2, distortion_px: float = 3.0, shape: tuple[int, int]
    = SHAPE, scale: float = SCALE
) -> WCS:
    """A TAN-SIP truth: reference pixel off-centre, rotated 20 deg, a few px of distortion."""
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval = [150.0, 30.0]
    w.wcs.crpix = [nx / 2 + 10.3, ny / 2 - 7.1]
    t = np.deg2rad(20.0)
    cd = scale / 3600 * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    if flip:
        cd[:, 0] *= -1.0
    w.wcs.cd = cd
    half = nx / 2
    a = np.zeros((order + 1, order + 1))
    b = np.zeros((order + 1, order + 1))
    # Corner displacement (|u| = |v| = half) is about distortion_px.
    a[2, 0], a[1, 1], b[0, 2], b[1, 1] = np.array([0.5, -0.3, 0.4, 0.25]) * distortion_px / half**2
    if order >= 3:
        a[3, 0], b[2, 1], b[0, 3] = np.array([0.3, 0.2, -0.25]) * distortion_px / half**3
    w.sip = Sip(a, b, None, None, w.wcs.crpix)
    w.wcs.set()
    return w


def header_guess(
    truth: WCS, *, shift_arcsec: float = 30.0, rotation_deg: float = 0.5, scale: float = 1.01
) -> WCS:
    """The truth's linear part, shifted, rotated and scaled, without distortion."""
    h = WCS(naxis=2)
    h.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    h.wcs.crpix = truth.wcs.crpix
    dec0 = truth.wcs.crval[1]
    h.wcs.crval = [
        truth.wcs.crval[0] + 0.6 * shift_arcsec / 3600 / np.cos(np.deg2rad(dec0)),
        dec0 + 0.8 * shift_arcsec / 3600,
    ]
    t = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    h.wcs.cd = scale * rot @ truth.wcs.cd
    h.wcs.set()
    return h


@dataclass(frozen=True)
class Stars:
    x: np.ndarray  # detections (after spurious/shuffle)
    y: np.ndarray
    flux: np.ndarray
    ra: np.ndarray  # catalog
    dec: np.ndarray
    mag: np.ndarray
    det_truth: np.ndarray  # index of the true star of each detection, -1 if spurious
    cat_truth: np.ndarray  # index of the true star of each catalog entry


def make_stars(
    truth: WCS,
    *,
    n: int = 2000,
    seed: int = 1,
    noise_px: float = 0.0,
    spurious: float = 0.0,
    missing: float = 0.0,
    undetected: float = 0.0,
    shape: tuple[int, int] = SHAPE,
) -> Stars:
    """True stars over the frame plus a margin; detections and catalog derived from them."""
    ny, nx = shape
    rng = np.random.default_rng(seed)
    mag = 14.0 + 6.0 * rng.random(n) ** 0.5
    x = rng.uniform(-20, nx + 20, n)
    y = rng.uniform(-20, ny + 20, n)
    ra, dec = truth.all_pix2world(x, y, 0)
    inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
    detected = inside & (rng.random(n) >= undetected)
    idx = np.flatnonzero(detected)
    xd = x[idx] + rng.normal(0, noise_px, idx.size)
    yd = y[idx] + rng.normal(0, noise_px, idx.size)
    fd = 10 ** (-0.4 * (mag[idx] - 25.0)) * rng.lognormal(0, 0.05, idx.size)
    n_sp = int(spurious * idx.size)
    xd = np.concatenate([xd, rng.uniform(0, nx - 1, n_sp)])
    yd = np.concatenate([yd, rng.uniform(0, ny - 1, n_sp)])
    fd = np.concatenate([fd, 10 ** (-0.4 * (rng.uniform(14, 20, n_sp) - 25.0))])
    det_truth = np.concatenate([idx, np.full(n_sp, -1)])
    perm = rng.permutation(xd.size)
    cat = np.flatnonzero(rng.random(n) >= missing)
    return Stars(xd[perm], yd[perm], fd[perm], ra[cat], dec[cat], mag[cat], det_truth[perm], cat)


def pixel_errors(solution: AstrometricSolution, truth: WCS, stars: Stars) -> np.ndarray:
    """|fitted - true| world-to-pixel position of every catalog star on the frame, px."""
    xt, yt = world_to_pixel(truth, stars.ra, stars.dec)
    xf, yf = world_to_pixel(solution.wcs, stars.ra, stars.dec)
    inside = (xt >= 0) & (xt <= NX - 1) & (yt >= 0) & (yt <= NY - 1)
    return np.hypot(xf - xt, yf - yt)[inside]


def solve(stars: Stars, header: WCS, **kw: object) -> AstrometricSolution:
    return refine_wcs(
        stars.x, stars.y, stars.flux, stars.ra, stars.dec, wcs=header, shape=SHAPE,
        mag=stars.mag, **kw,  # type: ignore[arg-type]
    )


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2)))


def test_recovers_tan_sip_from_offset_rotated_scaled_header_noiseless() -> None:
    truth = truth_wcs()
    header = header_guess(truth)
    before = header.to_header_string()
    stars = make_stars(truth)
    sol = solve(stars, header)
    err = pixel_errors(sol, truth, stars)
    assert rms(err) < 0.05 and err.max() < 0.1
    assert sol.method == "refine"
    assert sol.wcs.sip is not None and sol.wcs.sip.a_order == 2
    assert sol.wcs.wcs.ctype[0] == "RA---TAN-SIP"
    assert header.to_header_string() == before  # input untouched
    # Every used pair is a true pair, and nearly all catalog stars on the frame are used.
    assert np.all(stars.det_truth[sol.matched_source] == stars.cat_truth[sol.matched_catalog])
    assert sol.n_matched == sol.matched_source.size == sol.residual_x_arcsec.size
    assert sol.n_matched > 0.95 * err.size
    assert sol.matched_fraction > 0.95
    assert sol.rms_arcsec < 0.01


def test_noisy_centroids_give_centroid_level_accuracy() -> None:
    truth = truth_wcs()
    noise = 0.1  # px per axis
    stars = make_stars(truth, noise_px=noise)
    sol = solve(stars, header_guess(truth))
    err = pixel_errors(sol, truth, stars)
    # Mean-position error of a 12-parameter fit to ~1900 stars is << the centroid noise.
    assert rms(err) < 0.3 * noise
    # The 2-D residual rms is sqrt(2) * noise, slightly trimmed by the 3-sigma clip.
    assert sol.rms_arcsec == pytest.approx(np.sqrt(2) * noise * SCALE, rel=0.06)
    assert rms(sol.residual_x_arcsec) == pytest.approx(noise * SCALE, rel=0.08)
    assert rms(sol.residual_y_arcsec) == pytest.approx(noise * SCALE, rel=0.08)
    assert abs(np.mean(sol.residual_x_arcsec)) < 5 * noise / np.sqrt(sol.n_matched)


def test_mirrored_parity() -> None:
    truth = truth_wcs(flip=True)
    assert np.linalg.det(truth.wcs.cd) > 0  # the opposite parity of the usual sky image
    stars = make_stars(truth, seed=2)
    sol = solve(stars, header_guess(truth, rotation_deg=-0.5, scale=0.99))
    err = pixel_errors(sol, truth, stars)
    assert rms(err) < 0.05
    assert np.linalg.det(sol.wcs.wcs.cd) > 0


def test_spurious_detections_and_missing_catalog_stars() -> None:
    truth = truth_wcs()
    stars = make_stars(truth, noise_px=0.05, spurious=0.3, missing=0.3, seed=3)
    sol = solve(stars, header_guess(truth))
    err = pixel_errors(sol, truth, stars)
    assert rms(err) < 0.05
    real = stars.det_truth[sol.matched_source]
    assert np.mean(real == stars.cat_truth[sol.matched_catalog]) > 0.999
    # Missing catalog stars do not lower the fraction: it counts catalog stars on the frame.
    assert sol.matched_fraction > 0.95


def test_matched_fraction_reflects_undetected_catalog_stars() -> None:
    truth = truth_wcs()
    stars = make_stars(truth, undetected=0.3, seed=4)
    sol = solve(stars, header_guess(truth))
    # 30 % of the stars, at random brightness, were never detected.
    assert sol.matched_fraction == pytest.approx(0.7, abs=0.05)


def test_largest_stated_header_errors_and_no_magnitudes() -> None:
    truth = truth_wcs()
    stars = make_stars(truth, noise_px=0.05, seed=5)
    header = header_guess(truth, shift_arcsec=58.0, rotation_deg=-1.0, scale=0.98)
    sol = refine_wcs(
        stars.x, stars.y, stars.flux, stars.ra, stars.dec, wcs=header, shape=SHAPE
    )
    assert rms(pixel_errors(sol, truth, stars)) < 0.05


def test_cubic_distortion_with_sip_order_3_and_inverse_polynomial() -> None:
    truth = truth_wcs(order=3, distortion_px=4.0)
    stars = make_stars(truth, seed=6)
    sol = solve(stars, header_guess(truth), sip_order=3)
    assert rms(pixel_errors(sol, truth, stars)) < 0.05
    sip = sol.wcs.sip
    assert sip is not None and sip.a_order == 3
    # The fitted inverse AP/BP alone maps sky to pixel to 0.02 px (for other software).
    crpix0 = sol.wcs.wcs.crpix - 1.0
    xl, yl = sol.wcs.wcs_world2pix(stars.ra, stars.dec, 0)
    big_u, big_v = xl - crpix0[0], yl - crpix0[1]
    du = sum(sip.ap[p, q] * big_u**p * big_v**q for p in range(sip.ap_order + 1)
             for q in range(sip.ap_order + 1 - p))
    dv = sum(sip.bp[p, q] * big_u**p * big_v**q for p in range(sip.bp_order + 1)
             for q in range(sip.bp_order + 1 - p))
    xa, ya = world_to_pixel(sol.wcs, stars.ra, stars.dec)
    inside = (xa >= 0) & (xa <= NX - 1) & (ya >= 0) & (ya <= NY - 1)
    gap = np.hypot(xl + du - xa, yl + dv - ya)[inside]
    assert gap.max() < 0.02


def test_order_follows_the_number_of_stars() -> None:
    truth = truth_wcs(distortion_px=0.05)
    stars = make_stars(truth, n=15, seed=7)
    sol = solve(stars, header_guess(truth))
    # About 14 stars: too few for the 6 terms per axis of order 2 -> plain TAN.
    assert sol.wcs.sip is None and sol.wcs.wcs.ctype[0] == "RA---TAN"
    assert rms(pixel_errors(sol, truth, stars)) < 0.1
    pure = solve(make_stars(truth, seed=8), header_guess(truth), sip_order=0)
    assert pure.wcs.sip is None


def test_small_frame_with_few_stars() -> None:
    shape = (256, 256)
    truth = truth_wcs(shape=shape, scale=0.56, distortion_px=0.3)
    stars = make_stars(truth, n=40, seed=9, noise_px=0.05, shape=shape)
    sol = refine_wcs(
        stars.x, stars.y, stars.flux, stars.ra, stars.dec,
        wcs=header_guess(truth, shift_arcsec=40.0, rotation_deg=1.0), shape=shape,
        mag=stars.mag,
    )
    xt, yt = world_to_pixel(truth, stars.ra, stars.dec)
    xf, yf = world_to_pixel(sol.wcs, stars.ra, stars.dec)
    assert rms(np.hypot(xf - xt, yf - yt)) < 0.1
    assert sol.n_matched >= stars.x.size - 1


def test_header_far_beyond_max_offset_fails_clearly() -> None:
    truth = truth_wcs()
    stars = make_stars(truth, seed=10)
    with pytest.raises(AstrometryError, match="more than 60 arcsec off") as info:
        solve(stars, header_guess(truth, shift_arcsec=300.0))
    assert "astrometry.net" in str(info.value)
    assert "matched" in str(info.value)


def test_unrelated_catalog_fails_clearly() -> None:
    truth = truth_wcs()
    stars = make_stars(truth, seed=11)
    rng = np.random.default_rng(12)
    ra = rng.uniform(149.6, 150.4, stars.ra.size)
    dec = rng.uniform(29.6, 30.4, stars.ra.size)
    with pytest.raises(AstrometryError, match=r"matched \d+ of \d+ .*no more than chance"):
        refine_wcs(
            stars.x, stars.y, stars.flux, ra, dec, wcs=header_guess(truth), shape=SHAPE,
            mag=stars.mag,
        )


def test_rms_above_limit_is_rejected() -> None:
    truth = truth_wcs()
    stars = make_stars(truth, noise_px=0.3, seed=13)
    with pytest.raises(AstrometryError, match=r"rms 0\.4\d arcsec .* exceeds max_rms 0\.2"):
        solve(stars, header_guess(truth), max_rms_arcsec=0.2)


def test_too_few_stars_fail_with_counts() -> None:
    truth = truth_wcs()
    stars = make_stars(truth, n=8, seed=14)
    with pytest.raises(AstrometryError, match=r"only \d detections to match; need 20"):
        solve(stars, header_guess(truth), min_matches=20)
    # A catalog for another part of the sky.
    with pytest.raises(AstrometryError, match="catalog does not cover this frame"):
        refine_wcs(
            stars.x, stars.y, stars.flux, stars.ra + 5.0, stars.dec, wcs=header_guess(truth),
            shape=SHAPE,
        )


def test_too_few_matches_names_the_numbers() -> None:
    truth = truth_wcs()
    stars = make_stars(truth, n=60, seed=15)
    # Enough stars to find the offset, but a match radius so small only a few survive it.
    noisy = Stars(stars.x + np.random.default_rng(0).normal(0, 2.0, stars.x.size), stars.y,
                  stars.flux, stars.ra, stars.dec, stars.mag, stars.det_truth, stars.cat_truth)
    with pytest.raises(AstrometryError, match=r"matched \d+ of \d+ catalog stars; need 50 —"
                       r" is the header WCS more than 60 arcsec off"):
        solve(noisy, header_guess(truth), min_matches=50, match_radius_arcsec=0.5)


def test_inconsistent_inputs_are_input_errors() -> None:
    header = header_guess(truth_wcs())
    with pytest.raises(InputError, match=r"x, y, flux differ in length \(3, 3, 2\)"):
        refine_wcs(np.zeros(3), np.zeros(3), np.zeros(2), np.zeros(5), np.zeros(5),
                   wcs=header, shape=SHAPE)
    with pytest.raises(InputError, match="catalog ra, dec"):
        refine_wcs(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(5), np.zeros(4),
                   wcs=header, shape=SHAPE)
    with pytest.raises(InputError, match="image shape must be positive"):
        refine_wcs(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(5), np.zeros(5),
                   wcs=header, shape=(0, 10))


def test_non_celestial_wcs_is_a_wcs_error() -> None:
    linear = WCS(naxis=2)
    linear.wcs.ctype = ["LINEAR", "LINEAR"]
    with pytest.raises(WCSError, match="no celestial"):
        refine_wcs(np.zeros(10), np.zeros(10), np.ones(10), np.zeros(10), np.zeros(10),
                   wcs=linear, shape=SHAPE)


def test_pixel_scale_footprint_and_round_trip() -> None:
    truth = truth_wcs(distortion_px=3.0)
    assert pixel_scale_arcsec(truth) == pytest.approx(SCALE, rel=1e-9)
    (ra0, dec0), radius = footprint_radius_deg(truth, SHAPE)
    cx, cy = world_to_pixel(truth, np.array([ra0]), np.array([dec0]))
    assert cx[0] == pytest.approx((NX - 1) / 2, abs=1e-5)
    assert cy[0] == pytest.approx((NY - 1) / 2, abs=1e-5)
    # Half-diagonal of a 2048 px square at 1"/px, within the few px of distortion.
    assert radius * 3600 == pytest.approx(np.hypot(NX, NY) / 2 * SCALE, abs=6.0)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, NX - 1, 100), rng.uniform(0, NY - 1, 100)
    ra, dec = truth.all_pix2world(x, y, 0)
    xb, yb = world_to_pixel(truth, ra, dec)
    np.testing.assert_allclose(xb, x, atol=1e-5)
    np.testing.assert_allclose(yb, y, atol=1e-5)


def test_gnomonic_matches_astropy_tan_and_inverts() -> None:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [359.9, -62.0]
    w.wcs.crpix = [1.0, 1.0]
    w.wcs.cd = np.eye(2)  # pixel offsets are then intermediate world coordinates, degrees
    rng = np.random.default_rng(1)
    xi, eta = rng.uniform(-2, 2, 50), rng.uniform(-2, 2, 50)
    ra, dec = w.wcs_pix2world(xi, eta, 0)
    gx, gy = gnomonic(ra, dec, 359.9, -62.0)
    np.testing.assert_allclose(gx, xi, atol=1e-10)
    np.testing.assert_allclose(gy, eta, atol=1e-10)
    rb, db = inverse_gnomonic(gx, gy, 359.9, -62.0)
    np.testing.assert_allclose(np.cos(np.deg2rad(rb - ra)), 1.0, atol=1e-14)
    np.testing.assert_allclose(db, dec, atol=1e-10)


def test_simulated_frame_detections_against_its_catalog() -> None:
    testing = pytest.importorskip("skyphot.testing")
    from skyphot.core.detection import detect_sources, estimate_background

    params = testing.SimulationParams(
        wcs_offset_arcsec=30.0, wcs_rotation_error_deg=0.5, target_mag=None
    )
    sim = testing.simulate_frame(params, seed=3)
    data = np.asarray(sim.data, dtype=float)
    background = estimate_background(data)
    sources = detect_sources(data - background.level, rms=background.rms)
    ra = np.asarray(sim.catalog["ra"], dtype=float)
    dec = np.asarray(sim.catalog["dec"], dtype=float)
    mag = np.asarray(sim.catalog[params.bands[1]], dtype=float)
    header = WCS(sim.header)
    # The simulator's distortion is mostly cubic: ask for order 3 (the data allow it).
    sol = refine_wcs(sources.x, sources.y, sources.flux, ra, dec, wcs=header,
                     shape=data.shape, mag=mag, sip_order=3)
    ny, nx = data.shape
    xt, yt = world_to_pixel(sim.true_wcs, ra, dec)
    xf, yf = world_to_pixel(sol.wcs, ra, dec)
    xh, yh = world_to_pixel(header, ra, dec)
    inside = (xt >= 0) & (xt <= nx - 1) & (yt >= 0) & (yt <= ny - 1)
    err = np.hypot(xf - xt, yf - yt)[inside]
    centroid_scatter_px = sol.rms_arcsec / params.pixel_scale  # 2-D, per matched star
    assert rms(np.hypot(xh - xt, yh - yt)[inside]) > 30  # the header really is off
    # A 10-term fit to ~37 stars predicts positions better than one centroid measures them.
    assert rms(err) < centroid_scatter_px
    assert sol.n_matched >= 30 and sol.matched_fraction > 0.7


def test_real_photographic_plate_against_tycho2() -> None:
    """DSS plate of M67 (1951, 1.7"/px) with ~19 Tycho-2 stars on it: few, saturated stars."""
    image, catalog = REAL / "M6707HH.fits", REAL / "m67_tycho2_vt.ecsv"
    if not (image.is_file() and catalog.is_file()):
        pytest.skip(f"real data {REAL} not present")
    from skyphot.core.detection import detect_sources, estimate_background

    with fits.open(image) as hdul:
        data = np.asarray(hdul[0].data, dtype=float)
        original = WCS(hdul[0].header)
    table = Table.read(catalog)
    ra, dec = np.asarray(table["ra"], float), np.asarray(table["dec"], float)
    background = estimate_background(data)
    sources = detect_sources(data - background.level, rms=background.rms)
    # A header 30" and 0.3 deg off; the plate's own WCS is the reference (good to ~1").
    header = original.deepcopy()
    header.wcs.crval = [original.wcs.crval[0] + 0.006, original.wcs.crval[1] - 0.005]
    t = np.deg2rad(0.3)
    header.wcs.cd = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ (
        original.wcs.cd if original.wcs.has_cd() else original.pixel_scale_matrix
    )
    header.wcs.set()
    sol = refine_wcs(sources.x, sources.y, sources.flux, ra, dec, wcs=header,
                     shape=data.shape, mag=np.asarray(table["VT"], float))
    x0, y0 = world_to_pixel(original, ra, dec)
    x1, y1 = world_to_pixel(sol.wcs, ra, dec)
    ny, nx = data.shape
    inside = (x0 >= 0) & (x0 <= nx - 1) & (y0 >= 0) & (y0 <= ny - 1)
    assert sol.n_matched >= 0.75 * inside.sum()
    assert sol.rms_arcsec < 1.5
    assert sol.wcs.sip is None  # ~17 stars support no distortion terms
    scale = pixel_scale_arcsec(original)
    assert np.max(np.hypot(x1 - x0, y1 - y0)[inside]) * scale < 2.0
