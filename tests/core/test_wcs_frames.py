"""Frames whose WCS is in another celestial system than ICRS: the system is recognised, and
ICRS positions (targets, catalogs) land on the right pixel."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import FK4, FK5, ICRS, BarycentricMeanEcliptic, Galactic, SkyCoord
from astropy.io.fits import Header
from astropy.time import Time
from astropy.wcs import WCS

from skyphot.core.wcs_utils import (
    celestial_frame,
    express_in_frame,
    pixel_to_world,
    solution_in_system_of,
    world_to_pixel,
)
from skyphot.errors import WCSError
from skyphot.io.header import target_pixel

FRAMES = {
    "fk5": FK5(equinox=Time(2000.0, format="jyear")),
    "fk4": FK4(equinox=Time(1950.0, format="byear"), obstime=Time(40000.0, format="mjd")),
    "galactic": Galactic(),
    "ecliptic": BarycentricMeanEcliptic(equinox=Time(2000.0, format="jyear")),
}


def _icrs_wcs(ra: float = 150.1, dec: float = 2.2) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [200.5, 150.5]
    s = 0.6 / 3600.0
    wcs.wcs.cd = [[-s * 0.99, s * 0.1], [s * 0.1, s * 0.99]]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.set()
    return wcs


def _header(**cards: object) -> WCS:
    h = Header()
    base = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 1.0, "CRPIX2": 1.0,
            "CRVAL1": 10.0, "CRVAL2": 20.0, "CD1_1": -1e-4, "CD2_2": 1e-4, "CD1_2": 0.0,
            "CD2_1": 0.0}
    for key, value in {**base, **cards}.items():
        if value is not None:
            h[key] = value
    return WCS(h)


@pytest.mark.parametrize(
    ("cards", "kind", "equinox"),
    [
        ({}, ICRS, None),
        ({"RADESYS": "ICRS"}, ICRS, None),
        ({"RADESYS": "FK5", "EQUINOX": 2000.0}, FK5, 2000.0),
        ({"EQUINOX": 2000.0}, FK5, 2000.0),  # FITS default for EQUINOX >= 1984
        ({"EQUINOX": 1950.0}, FK4, 1950.0),  # ... and before
        ({"RADESYS": "FK4", "EQUINOX": 1950.0}, FK4, 1950.0),
        ({"CTYPE1": "GLON-TAN", "CTYPE2": "GLAT-TAN"}, Galactic, None),
        ({"CTYPE1": "ELON-TAN", "CTYPE2": "ELAT-TAN"}, BarycentricMeanEcliptic, 2000.0),
    ],
)
def test_celestial_system_is_read_from_the_header(
    cards: dict[str, object], kind: type, equinox: float | None
) -> None:
    frame = celestial_frame(_header(**cards))
    assert type(frame) is kind
    if kind is FK4:
        assert frame.equinox.byear == pytest.approx(equinox)
    elif equinox is not None:
        assert frame.equinox.jyear == pytest.approx(equinox)


def test_unsupported_sky_system_is_refused() -> None:
    with pytest.raises(WCSError, match=r"'SLON-TAN'/'SLAT-TAN' are not a sky system skyphot"):
        celestial_frame(_header(CTYPE1="SLON-TAN", CTYPE2="SLAT-TAN"))


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_icrs_positions_land_on_the_same_pixels_in_every_system(name: str) -> None:
    icrs = _icrs_wcs()
    native = express_in_frame(icrs, FRAMES[name])
    assert celestial_frame(native).name == FRAMES[name].name
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 400, 50), rng.uniform(0, 300, 50)
    ra, dec = pixel_to_world(icrs, x, y)
    xn, yn = world_to_pixel(native, ra, dec)
    # rotations are exact; FK4's E-terms change by milli-arcsec across the frame (< 0.01 px)
    tol = 1e-2 if name == "fk4" else 1e-6
    np.testing.assert_allclose(xn, x, atol=tol)
    np.testing.assert_allclose(yn, y, atol=tol)
    ra_n, dec_n = pixel_to_world(native, x, y)
    sep = SkyCoord(ra * u.deg, dec * u.deg).separation(SkyCoord(ra_n * u.deg, dec_n * u.deg))
    assert float(np.max(sep.arcsec)) < tol * 0.6


def test_target_on_a_galactic_mosaic_is_found() -> None:
    """The Spitzer case: RA/Dec must not be read as galactic longitude/latitude."""
    galactic = express_in_frame(_icrs_wcs(266.4, -28.9), FRAMES["galactic"])
    x, y = target_pixel(galactic, 266.4, -28.9, shape=(300, 400))
    assert (x, y) == pytest.approx((199.5, 149.5), abs=1e-6)


def test_refined_solution_keeps_the_frames_system() -> None:
    from skyphot.core.astrometry import refine_wcs

    rng = np.random.default_rng(3)
    truth = _icrs_wcs()
    x, y = rng.uniform(5, 395, 80), rng.uniform(5, 295, 80)
    ra, dec = pixel_to_world(truth, x, y)
    guess = express_in_frame(truth, FRAMES["galactic"])
    solution = refine_wcs(x, y, rng.uniform(1e3, 1e5, 80), ra, dec, wcs=guess, shape=(300, 400),
                          mag=rng.uniform(14, 19, 80))
    assert solution.wcs.wcs.ctype[0].startswith("GLON")
    xs, ys = world_to_pixel(solution.wcs, ra, dec)
    np.testing.assert_allclose(xs, x, atol=1e-3)
    np.testing.assert_allclose(ys, y, atol=1e-3)


def test_pc_cdelt_wcs_is_re_expressed_both_ways() -> None:
    h = Header()
    for key, value in {"CTYPE1": "GLON-TAN", "CTYPE2": "GLAT-TAN", "CRPIX1": 50.0,
                       "CRPIX2": 40.0, "CRVAL1": 30.0, "CRVAL2": 1.0, "CDELT1": -1e-4,
                       "CDELT2": 1e-4, "PC1_1": 0.98, "PC1_2": 0.2, "PC2_1": -0.2,
                       "PC2_2": 0.98}.items():
        h[key] = value
    galactic = WCS(h)
    icrs = express_in_frame(galactic, ICRS())
    assert icrs.wcs.ctype[0] == "RA---TAN"
    x, y = np.array([0.0, 99.0, 30.0]), np.array([0.0, 79.0, 60.0])
    ra, dec = pixel_to_world(galactic, x, y)
    ra2, dec2 = pixel_to_world(icrs, x, y)
    np.testing.assert_allclose(ra2, ra, atol=1e-9)
    np.testing.assert_allclose(dec2, dec, atol=1e-9)


def test_non_zenithal_projection_cannot_be_re_expressed() -> None:
    wcs = _header(CTYPE1="RA---CAR", CTYPE2="DEC--CAR")
    with pytest.raises(WCSError, match=r"projection 'RA---CAR' cannot be re-expressed"):
        express_in_frame(wcs, Galactic())


def _astrometry_net_like(ra: float = 150.1, dec: float = 2.2) -> WCS:
    """A TAN-SIP solution as astrometry.net writes it: EQUINOX 2000 and no RADESYS."""
    h = Header()
    s = 0.6 / 3600.0
    cards = {"CTYPE1": "RA---TAN-SIP", "CTYPE2": "DEC--TAN-SIP", "EQUINOX": 2000.0,
             "CRVAL1": ra, "CRVAL2": dec, "CRPIX1": 210.3, "CRPIX2": 140.8,
             "CD1_1": -s * 0.98, "CD1_2": s * 0.17, "CD2_1": s * 0.17, "CD2_2": s * 0.98,
             "A_ORDER": 2, "A_2_0": 4e-6, "A_0_2": -3e-6, "A_1_1": 2e-6,
             "B_ORDER": 2, "B_2_0": -2e-6, "B_0_2": 5e-6, "B_1_1": 1e-6}
    for key, value in cards.items():
        h[key] = value
    return WCS(h)


def test_a_blind_solution_without_a_header_wcs_is_icrs() -> None:
    solved = _astrometry_net_like()
    assert type(celestial_frame(solved)) is FK5  # what the FITS defaults make of it
    out = solution_in_system_of(solved, None)
    assert type(celestial_frame(out)) is ICRS and out.wcs.radesys == "ICRS"
    x, y = np.meshgrid(np.linspace(0, 400, 5), np.linspace(0, 300, 4))
    lon, lat = solved.all_pix2world(x.ravel(), y.ravel(), 0)
    ra, dec = pixel_to_world(out, x.ravel(), y.ravel())
    assert np.allclose(ra, lon, atol=1e-12) and np.allclose(dec, lat, atol=1e-12)


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_a_blind_solution_takes_the_frames_own_system(name: str) -> None:
    # the header WCS may be far off (that is why the frame was solved blind): only its
    # system counts
    header = express_in_frame(_icrs_wcs(151.0, 3.0), FRAMES[name])
    solved = _astrometry_net_like()
    out = solution_in_system_of(solved, header)
    assert [c[:4] for c in out.wcs.ctype] == [c[:4] for c in header.wcs.ctype]
    assert [c[4:] for c in out.wcs.ctype] == ["-TAN-SIP", "-TAN-SIP"]
    assert out.wcs.radesys == header.wcs.radesys
    assert np.isnan(out.wcs.equinox) == np.isnan(header.wcs.equinox)
    if not np.isnan(header.wcs.equinox):
        assert out.wcs.equinox == pytest.approx(header.wcs.equinox)
    assert type(celestial_frame(out)) is type(FRAMES[name])
    # the same pixel <-> ICRS mapping, distortion included, over the whole frame
    x, y = (g.ravel() for g in np.meshgrid(np.linspace(-50, 450, 6), np.linspace(-50, 350, 5)))
    ra0, dec0 = solved.all_pix2world(x, y, 0)
    ra, dec = pixel_to_world(out, x, y)
    sep = SkyCoord(ra0 * u.deg, dec0 * u.deg).separation(SkyCoord(ra * u.deg, dec * u.deg))
    # exact for rotations; FK4's E-terms vary by milli-arcsec across a frame
    assert sep.arcsec.max() < (0.005 if name == "fk4" else 1e-6)
    xb, yb = world_to_pixel(out, ra0, dec0)
    assert np.max(np.hypot(xb - x, yb - y)) < (0.01 if name == "fk4" else 1e-5)
