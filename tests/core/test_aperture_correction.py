"""Aperture correction (PSF-fit to total flux) and the annulus wing term: analytic truth."""

from __future__ import annotations

import numpy as np
import pytest

from skyphot.core.aperture_correction import ApertureCorrection, aperture_correction
from skyphot.core.photometry import forced_psf_photometry, ring_level
from skyphot.core.psf import MoffatPSF
from skyphot.errors import InputError

SHAPE = (1000, 1500)


def _positions(rng: np.random.Generator, n: int) -> dict[str, object]:
    return {"x": rng.uniform(0, SHAPE[1] - 1, n), "y": rng.uniform(0, SHAPE[0] - 1, n),
            "shape": SHAPE}


def _stars(rng: np.random.Generator, n: int, scale: float) -> tuple[np.ndarray, ...]:
    """PSF fluxes, errors, and aperture fluxes whose ratio to EE * psf is ``scale``."""
    psf = rng.uniform(2e4, 2e5, n)
    psf_err = 0.002 * psf
    ee = np.full(n, 0.99)
    extra = rng.uniform(0.003, 0.02, n)  # aperture noise beyond the PSF fit's, relative
    ap_err = np.hypot(ee * psf_err, extra * ee * psf)
    ap = ee * psf * (scale + extra * rng.normal(size=n))
    return psf, psf_err, ap, ap_err, ee


def test_recovers_the_scale_with_an_honest_error() -> None:
    rng = np.random.default_rng(1)
    pulls = []
    for _ in range(300):
        corr = aperture_correction(*_stars(rng, 40, 1.004), radius=10.0, **_positions(rng, 40))
        pulls.append((corr.factor - 1.004) / (corr.error * corr.factor))
    assert abs(np.mean(pulls)) < 0.2
    assert 0.85 < np.std(pulls) < 1.15
    assert corr.mag == pytest.approx(-2.5 * np.log10(corr.factor))
    assert corr.mag_err == pytest.approx(1.0857 * corr.error, rel=1e-3)


def test_contaminated_stars_are_clipped() -> None:
    rng = np.random.default_rng(2)
    psf, psf_err, ap, ap_err, ee = _stars(rng, 60, 0.997)
    ap[:12] *= 1.2  # a bright neighbour in the aperture of one star in five
    corr = aperture_correction(psf, psf_err, ap, ap_err, ee, radius=10.0, **_positions(rng, 60))
    assert corr.n_used <= 48
    assert abs(corr.factor - 0.997) < 4 * corr.error * corr.factor


def test_a_scale_varying_across_the_frame_is_followed() -> None:
    """A PSF model right in the centre and 1 % off at one side: the fit follows it and its
    error at any point is honest."""
    rng = np.random.default_rng(4)
    pulls = []
    for _ in range(100):
        psf, psf_err, ap, ap_err, ee = _stars(rng, 120, 1.0)
        pos = _positions(rng, 120)
        x = np.asarray(pos["x"])
        truth = 1.0 + 0.01 * x / (SHAPE[1] - 1)
        corr = aperture_correction(psf, psf_err, ap * truth, ap_err * truth, ee, radius=8.0,
                                   **pos)
        for px in (0.0, 700.0, 1499.0):
            want = 1.0 + 0.01 * px / (SHAPE[1] - 1)
            got = corr.factor_at(np.array([px]), np.array([500.0]))[0]
            pulls.append((got - want) / (corr.error_at(np.array([px]), np.array([500.0]))[0] * got))
    assert corr.order == 2
    assert abs(np.mean(pulls)) < 0.2
    assert 0.8 < np.std(pulls) < 1.2


def test_no_correction_is_the_identity() -> None:
    corr = ApertureCorrection.none(9.0, (100, 200))
    assert corr.factor == 1.0 and corr.mag == 0.0 and corr.mag_err == 0.0 and corr.n_used == 0
    assert corr.factor_at(np.array([3.0, 150.0]), np.array([7.0, 90.0])).tolist() == [1.0, 1.0]


def test_bad_inputs_say_what_is_wrong() -> None:
    where = {"x": np.ones(3), "y": np.ones(3), "shape": (10, 10)}
    with pytest.raises(InputError, match="need one value per star; got lengths"):
        aperture_correction(np.ones(3), np.ones(3), np.ones(2), np.ones(3), np.ones(3),
                            radius=5.0, **where)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="only 2 stars have positive, finite PSF and aperture"):
        aperture_correction(
            np.array([1.0, 2.0, -1.0]), np.ones(3), np.ones(3), np.ones(3), np.ones(3),
            radius=5.0, **where,  # type: ignore[arg-type]
        )


def test_analytic_ring_level_matches_the_rendered_psf() -> None:
    psf = MoffatPSF.constant(3.7, beta=3.0, e1=0.03, e2=0.02, shape=(100, 100))

    class Rendered:  # the generic path: only fwhm_at and render
        def fwhm_at(self, x: float, y: float) -> float:
            return psf.fwhm_at(x, y)

        def render(self, x: float, y: float, size: int) -> tuple[np.ndarray, int, int]:
            return psf.render(x, y, size)

    x, y = np.array([50.3, 40.0]), np.array([49.8, 61.2])
    analytic = ring_level(psf, x, y, (11.1, 29.6))
    rendered = ring_level(Rendered(), x, y, (11.1, 29.6))
    np.testing.assert_allclose(analytic, rendered, rtol=0.02)
    assert np.all(analytic > 0)


def test_psf_flux_is_total_flux_despite_wings_in_the_annulus() -> None:
    """The annulus holds ~1 % of a Moffat's light; the fitted flux must still be the total."""
    fwhm, flux, sigma = 3.7, 1e6, 30.0
    psf = MoffatPSF.constant(fwhm, beta=2.5, shape=(600, 600))
    rng = np.random.default_rng(3)
    xs = 40.0 + 65.0 * (np.arange(64) % 8) + rng.uniform(-0.5, 0.5, 64)
    ys = 40.0 + 65.0 * (np.arange(64) // 8) + rng.uniform(-0.5, 0.5, 64)
    image = rng.normal(0.0, sigma, (600, 600))
    size = 81
    for x, y in zip(xs, ys, strict=True):
        stamp, x0, y0 = psf.render(float(x), float(y), size)
        image[y0:y0 + size, x0:x0 + size] += flux * stamp
    phot = forced_psf_photometry(
        image, xs, ys, psf=psf, rms=np.full(image.shape, sigma), gain=1e9,
        radius=1.5 * fwhm, annulus=(3.0 * fwhm, 8.0 * fwhm),
    )
    ratio = phot.flux / flux
    stderr = float(np.mean(phot.fluxerr) / flux / np.sqrt(xs.size))
    # Without the wing term the flux comes out low by sum(P)/sum(P^2) * ring ~ 1e-3.
    assert abs(float(np.mean(ratio)) - 1.0) < 4 * stderr + 1e-4
    assert stderr < 2e-4


def test_extra_scatter_and_a_common_aperture_level_keep_the_error_honest() -> None:
    """As on simulated frames: the brightest stars' ratios scatter ~0.3 % beyond their
    noise (centring, PSF misfit), and every aperture holds a level b the annulus missed
    (-0.3 ADU/px: the neighbour cuts leave the aperture cleaner than the annulus), a bias
    ~1/flux. The correction must come out unbiased with unit-width pulls; without the extra
    scatter its pulls were ~1.7 wide, without the level term it was biased low."""
    rng = np.random.default_rng(8)
    truth, level, extra = 1.003, -0.3, 0.003
    pulls, scatters, no_level = [], [], []
    for _ in range(200):
        n = 90
        flux = 10 ** rng.uniform(3.5, 5.3, n)  # 20.5-16 mag at ZP 28.5: few bright ones
        psf_err = np.sqrt(400.0**2 / 10.0 + flux / 1.5)
        area = np.full(n, 346.0)
        ap_err = np.sqrt(400.0**2 + flux / 1.5)
        ee = np.full(n, 0.99)
        noise = np.sqrt(ap_err**2 - (ee * psf_err) ** 2)
        ap = ee * flux * (truth + extra * rng.normal(size=n)) + level * area \
            + noise * rng.normal(size=n)
        corr = aperture_correction(flux, psf_err, ap, ap_err, ee, radius=10.5, area=area,
                                   **_positions(rng, n))
        pulls.append((corr.factor - truth) / (corr.error * corr.factor))
        scatters.append(corr.scatter)
        plain = aperture_correction(flux, psf_err, ap, ap_err, ee, radius=10.5,
                                    **_positions(rng, n))
        no_level.append((plain.factor - truth) / (plain.error * plain.factor))
    assert abs(np.mean(pulls)) < 0.2
    # Up to ~15 % wide: the extra scatter is estimated from few informative stars.
    assert 0.85 < np.std(pulls) < 1.25
    assert float(np.mean(scatters)) == pytest.approx(extra, rel=0.3)
    # The level left in the apertures drags a fit without its term low.
    assert np.mean(no_level) < -0.5
