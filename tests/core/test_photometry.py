"""Truth-based tests of forced PSF photometry, aperture photometry and encircled energy.

Stars are injected with a known PSF (the PSF model itself, so only the photometry is under
test) on Gaussian noise whose variance is exactly the documented noise model: background
``sigma**2`` plus ``model / gain``. Biases are checked against 4 standard errors of the mean
over many stars; pull widths against [0.9, 1.1].
"""

from __future__ import annotations

import numpy as np
import pytest

from skyphot.core.photometry import (
    aperture_photometry,
    encircled_energies,
    encircled_energy,
    forced_psf_photometry,
)
from skyphot.core.psf import MoffatPSF, effective_area
from skyphot.errors import ConfigError, InputError

SIGMA = 10.0  # background noise per pixel, ADU
GAIN = 2.0
FWHM = 3.0
PSF = MoffatPSF.constant(FWHM, beta=3.0)
RADIUS = 1.5 * FWHM
ANNULUS = (3.0 * FWHM, 5.0 * FWHM)
SPACING = 48  # px between injected stars: wings of neighbours are negligible


def _grid(n_side: int, offset: float = 30.0) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    rng = np.random.default_rng(n_side)
    g = offset + SPACING * np.arange(n_side)
    x = (g[None, :] + rng.uniform(-0.5, 0.5, (n_side, n_side))).ravel()
    y = (g[:, None] + rng.uniform(-0.5, 0.5, (n_side, n_side))).ravel()
    size = int(offset * 2 + SPACING * (n_side - 1))
    return x, y, (size, size)


def _inject(
    shape: tuple[int, int], x: np.ndarray, y: np.ndarray, flux: float, seed: int,
    psf: object = PSF, stamp: int = 41,
) -> np.ndarray:
    """Stars of one flux rendered with ``psf`` plus noise of the documented model."""
    model = np.zeros(shape)
    ny, nx = shape
    for xs, ys in zip(x, y, strict=True):
        st, x0, y0 = psf.render(float(xs), float(ys), stamp)  # type: ignore[attr-defined]
        ya, xa = max(y0, 0), max(x0, 0)
        yb, xb = min(y0 + stamp, ny), min(x0 + stamp, nx)
        if ya < yb and xa < xb:
            model[ya:yb, xa:xb] += flux * st[ya - y0:yb - y0, xa - x0:xb - x0]
    rng = np.random.default_rng(seed)
    return model + rng.normal(0.0, 1.0, shape) * np.sqrt(SIGMA**2 + model / GAIN)


def _rms(shape: tuple[int, int]) -> np.ndarray:
    return np.full(shape, SIGMA, dtype=np.float32)


# --- forced PSF photometry -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flux", "annulus"),
    [(0.0, None), (300.0, None), (3000.0, None), (30000.0, None),
     (0.0, ANNULUS), (3000.0, ANNULUS)],
)
def test_psf_flux_is_unbiased_with_honest_errors(
    flux: float, annulus: tuple[float, float] | None
) -> None:
    x, y, shape = _grid(25)  # 625 stars
    image = _inject(shape, x, y, flux, seed=int(flux) + (7 if annulus else 0))
    phot = forced_psf_photometry(image, x, y, psf=PSF, rms=_rms(shape), gain=GAIN,
                                 radius=RADIUS, annulus=annulus)
    assert np.all(np.isfinite(phot.flux)) and not phot.near_edge.any()
    assert np.all(phot.n_masked == 0)
    pull = (phot.flux - flux) / phot.fluxerr
    n = x.size
    assert abs(np.mean(phot.flux - flux)) < 4.0 * np.std(phot.flux) / np.sqrt(n)
    assert 0.9 < np.std(pull) < 1.1
    assert abs(np.mean(pull)) < 4.0 / np.sqrt(n)
    # Photon noise only adds: the total error is never below the background-only error.
    assert np.all(phot.fluxerr >= phot.fluxerr_background)
    if annulus is None:
        np.testing.assert_array_equal(phot.local_background, 0.0)
    else:
        assert abs(np.mean(phot.local_background)) < 4 * np.std(phot.local_background) / 25


def test_reduced_chi2_is_about_one_for_the_true_psf() -> None:
    x, y, shape = _grid(12)
    image = _inject(shape, x, y, 3e4, seed=3)
    phot = forced_psf_photometry(image, x, y, psf=PSF, rms=_rms(shape), gain=GAIN,
                                 radius=RADIUS, annulus=ANNULUS)
    assert np.median(phot.chi2) == pytest.approx(1.0, abs=0.1)
    # The wrong PSF leaves structured residuals.
    wide = forced_psf_photometry(image, x, y, psf=MoffatPSF.constant(4.5), rms=_rms(shape),
                                 gain=GAIN, radius=RADIUS, annulus=ANNULUS)
    assert np.median(wide.chi2) > 3.0


def test_background_error_is_the_ideal_psf_fit_limit() -> None:
    x, y, shape = _grid(3)
    image = np.zeros(shape)  # the error does not depend on the data
    n_eff = effective_area(PSF, 100.0, 100.0)
    ideal = np.sqrt(SIGMA**2 * n_eff)
    big = forced_psf_photometry(image, x, y, psf=PSF, rms=_rms(shape), gain=GAIN,
                                radius=4.0 * FWHM, annulus=None)
    np.testing.assert_allclose(big.fluxerr_background, ideal, rtol=0.01)
    # Default geometry: truncated fit circle plus the local-background term, computed from
    # the PSF sums and the error of a median over the annulus area.
    phot = forced_psf_photometry(image, x, y, psf=PSF, rms=_rms(shape), gain=GAIN,
                                 radius=RADIUS, annulus=ANNULUS)
    for i in range(x.size):
        stamp, x0, y0 = PSF.render(float(x[i]), float(y[i]), 41)
        yy, xx = np.mgrid[y0:y0 + 41, x0:x0 + 41]
        inside = (xx - x[i]) ** 2 + (yy - y[i]) ** 2 <= RADIUS**2
        spp, sp = np.sum(stamp[inside] ** 2), np.sum(stamp[inside])
        n_annulus = np.pi * (ANNULUS[1] ** 2 - ANNULUS[0] ** 2)
        sigma_local = np.sqrt(np.pi / 2) * SIGMA / np.sqrt(n_annulus)
        expected = np.sqrt(SIGMA**2 / spp + (sigma_local * sp / spp) ** 2)
        assert phot.fluxerr_background[i] == pytest.approx(expected, rel=0.03)
    # The limit stays within 0.15 mag of the ideal PSF-fit limit.
    assert np.all(2.5 * np.log10(phot.fluxerr_background / ideal) < 0.15)


def test_masked_pixels_leave_the_flux_unbiased() -> None:
    x, y, shape = _grid(25)
    flux = 5000.0
    clean_image = _inject(shape, x, y, flux, seed=11)
    rng = np.random.default_rng(12)
    mask = rng.random(shape) < 0.25  # a quarter of all pixels, cores included
    image = np.where(mask, 1e6, clean_image)  # garbage under the mask must not leak in
    phot = forced_psf_photometry(image, x, y, psf=PSF, rms=_rms(shape), gain=GAIN,
                                 mask=mask, radius=RADIUS, annulus=ANNULUS)
    assert np.all(phot.n_masked > 0)
    pull = (phot.flux - flux) / phot.fluxerr
    assert abs(np.mean(pull)) < 4.0 / np.sqrt(x.size)
    assert 0.9 < np.std(pull) < 1.1
    # Fewer pixels: larger (honest) errors than on the unmasked frame.
    clean = forced_psf_photometry(clean_image, x, y, psf=PSF, rms=_rms(shape), gain=GAIN,
                                  radius=RADIUS, annulus=ANNULUS)
    assert np.median(phot.fluxerr_background) > 1.05 * np.median(clean.fluxerr_background)


def test_positions_at_the_edge_are_fitted_on_what_is_on_the_frame() -> None:
    n = 400
    rng = np.random.default_rng(13)
    y = 30.0 + SPACING * np.arange(n) + rng.uniform(-0.5, 0.5, n)
    x = rng.uniform(-1.5, 1.5, n)  # half the PSF (or more) falls off the left edge
    shape = (int(y[-1] + 30), 40)
    flux = 5000.0
    image = _inject(shape, x, y, flux, seed=14)
    phot = forced_psf_photometry(image, x, y, psf=PSF, rms=_rms(shape), gain=GAIN,
                                 radius=RADIUS, annulus=ANNULUS)
    assert phot.near_edge.all()
    pull = (phot.flux - flux) / phot.fluxerr
    assert abs(np.mean(pull)) < 4.0 / np.sqrt(n)
    assert 0.9 < np.std(pull) < 1.1


def test_unmeasurable_positions_give_nan_without_raising() -> None:
    x, y, shape = _grid(3)
    image = _inject(shape, x, y, 2000.0, seed=15)
    mask = np.zeros(shape, dtype=bool)
    mask[int(y[4]) - 8:int(y[4]) + 9, int(x[4]) - 8:int(x[4]) + 9] = True  # star 4 fully
    xs = np.concatenate([x, [-50.0, np.nan, shape[1] + 40.0]])
    ys = np.concatenate([y, [20.0, 20.0, 20.0]])
    phot = forced_psf_photometry(image, xs, ys, psf=PSF, rms=_rms(shape), gain=GAIN,
                                 mask=mask, radius=RADIUS, annulus=ANNULUS)
    bad = np.zeros(xs.size, dtype=bool)
    bad[[4, 9, 10, 11]] = True
    assert np.all(np.isnan(phot.flux[bad])) and np.all(np.isnan(phot.fluxerr[bad]))
    assert np.all(np.isnan(phot.fluxerr_background[bad]))
    assert np.all(np.isfinite(phot.flux[~bad]))
    assert phot.n_masked[4] > 0 and phot.near_edge[9:].all()
    assert len(phot) == xs.size


def test_local_background_removes_a_residual_sky_offset() -> None:
    x, y, shape = _grid(15)
    flux = 3000.0
    image = _inject(shape, x, y, flux, seed=16) + 4.0  # the smooth map missed 4 ADU
    phot = forced_psf_photometry(image, x, y, psf=PSF, rms=_rms(shape), gain=GAIN,
                                 radius=RADIUS, annulus=ANNULUS)
    err_local = np.sqrt(np.pi / 2) * SIGMA / np.sqrt(np.pi * (ANNULUS[1] ** 2 - ANNULUS[0] ** 2))
    assert abs(np.mean(phot.local_background) - 4.0) < 4 * err_local / np.sqrt(x.size)
    assert abs(np.mean(phot.flux - flux)) < 4 * np.std(phot.flux) / np.sqrt(x.size)
    # Without the annulus the offset biases every flux up by 4 * sum(P) / sum(P^2).
    raw = forced_psf_photometry(image, x, y, psf=PSF, rms=_rms(shape), gain=GAIN,
                                radius=RADIUS, annulus=None)
    assert np.mean(raw.flux - flux) > 10 * np.std(raw.flux) / np.sqrt(x.size)


class _GaussianPSF:
    """A PSFModel with only the protocol methods (no batch rendering)."""

    def __init__(self, fwhm: float) -> None:
        self.sigma = fwhm / 2.3548

    def fwhm_at(self, x: float, y: float) -> float:
        return self.sigma * 2.3548

    def render(self, x: float, y: float, size: int) -> tuple[np.ndarray, int, int]:
        from scipy.special import erf

        x0, y0 = round(x) - size // 2, round(y) - size // 2
        s = self.sigma * np.sqrt(2.0)
        ex = np.diff(erf((x0 - 0.5 + np.arange(size + 1) - x) / s)) / 2.0
        ey = np.diff(erf((y0 - 0.5 + np.arange(size + 1) - y) / s)) / 2.0
        return np.outer(ey, ex), x0, y0


def test_any_psf_model_satisfying_the_protocol_works() -> None:
    psf = _GaussianPSF(2.5)
    x, y, shape = _grid(15)
    flux = 4000.0
    image = _inject(shape, x, y, flux, seed=17, psf=psf)
    phot = forced_psf_photometry(image, x, y, psf=psf, rms=_rms(shape), gain=GAIN,
                                 radius=4.0, annulus=(8.0, 13.0))
    pull = (phot.flux - flux) / phot.fluxerr
    assert abs(np.mean(pull)) < 4.0 / np.sqrt(x.size)
    assert 0.9 < np.std(pull) < 1.1


def test_photometry_input_errors() -> None:
    image = np.zeros((40, 40))
    rms = np.ones((40, 40))
    one = np.array([20.0])
    kwargs = dict(psf=PSF, rms=rms, gain=GAIN, radius=RADIUS)
    with pytest.raises(ConfigError, match="0 < inner < outer"):
        forced_psf_photometry(image, one, one, annulus=(10.0, 5.0), **kwargs)
    with pytest.raises(ConfigError, match="gain must be a positive number"):
        forced_psf_photometry(image, one, one, psf=PSF, rms=rms, gain=0.0, radius=3.0,
                              annulus=None)
    with pytest.raises(ConfigError, match="radius must be positive"):
        forced_psf_photometry(image, one, one, psf=PSF, rms=rms, gain=GAIN, radius=0.0,
                              annulus=None)
    with pytest.raises(InputError, match="x and y have different lengths"):
        forced_psf_photometry(image, one, np.array([1.0, 2.0]), annulus=None, **kwargs)
    with pytest.raises(InputError, match="rms map shape"):
        forced_psf_photometry(image, one, one, psf=PSF, rms=np.ones((4, 4)), gain=GAIN,
                              radius=3.0, annulus=None)
    with pytest.raises(InputError, match="mask shape"):
        aperture_photometry(image, one, one, radius=3.0, rms=rms, gain=GAIN,
                            mask=np.zeros((4, 4), bool), annulus=None)
    with pytest.raises(InputError, match="the image must be 2-d"):
        aperture_photometry(np.zeros(5), one, one, radius=3.0, rms=np.zeros(5), gain=GAIN,
                            annulus=None)
    empty = forced_psf_photometry(image, np.zeros(0), np.zeros(0), annulus=None, **kwargs)
    assert len(empty) == 0


# --- aperture photometry -----------------------------------------------------------------------


def test_aperture_on_a_flat_image_sums_to_its_area() -> None:
    level, r = 2.5, 3.7
    image = np.full((60, 60), level)
    x, y = np.array([30.0, 20.3, 41.77]), np.array([30.0, 25.6, 33.1])
    ap = aperture_photometry(image, x, y, radius=r, rms=np.full((60, 60), 3.0), gain=GAIN,
                             annulus=None)
    area = np.pi * r**2
    np.testing.assert_allclose(ap.area, area, rtol=1e-12)
    np.testing.assert_allclose(ap.flux, level * area, rtol=1e-9)
    np.testing.assert_allclose(ap.fluxerr, np.sqrt(area * 9.0 + level * area / GAIN), rtol=1e-9)
    # With an annulus the flat level is the local background and nothing is left.
    ap2 = aperture_photometry(image, x, y, radius=r, rms=np.full((60, 60), 3.0), gain=GAIN,
                              annulus=(8.0, 12.0))
    np.testing.assert_allclose(ap2.local_background, level, rtol=1e-6)
    np.testing.assert_allclose(ap2.flux, 0.0, atol=1e-6 * level * area)


def test_aperture_truncated_by_the_edge() -> None:
    image = np.full((50, 50), 1.0)
    ap = aperture_photometry(image, np.array([-0.5, 10.0, -100.0]), np.array([25.0, 25.0, 5.0]),
                             radius=4.0, rms=np.ones((50, 50)), gain=GAIN, annulus=None)
    assert ap.area[0] == pytest.approx(np.pi * 16.0 / 2.0, rel=1e-9)  # centre on the edge line
    assert ap.flux[0] == pytest.approx(ap.area[0], rel=1e-9)
    assert ap.near_edge[0] and not ap.near_edge[1]
    assert np.isnan(ap.flux[2]) and ap.area[2] == 0.0


def test_aperture_counts_masked_pixels() -> None:
    image = np.full((50, 50), 1.0)
    mask = np.zeros((50, 50), dtype=bool)
    mask[25, 25] = mask[25, 26] = mask[40, 40] = True
    ap = aperture_photometry(image, np.array([25.0]), np.array([25.0]), radius=3.0,
                             rms=np.ones((50, 50)), gain=GAIN, mask=mask, annulus=None)
    assert ap.n_masked[0] == 2
    assert ap.flux[0] == pytest.approx(np.pi * 9.0, rel=1e-9)  # SEP fills them with the mean


def test_aperture_flux_over_encircled_energy_is_the_total_flux() -> None:
    x, y, shape = _grid(20)
    flux = 20000.0
    image = _inject(shape, x, y, flux, seed=18)
    r = 1.0 * FWHM
    ap = aperture_photometry(image, x, y, radius=r, rms=_rms(shape), gain=GAIN,
                             annulus=ANNULUS)
    ee = np.array([encircled_energy(PSF, float(a), float(b), r) for a, b in zip(x, y, strict=True)])
    total = ap.flux / ee
    assert abs(np.mean(total - flux)) < 4 * np.std(total) / np.sqrt(x.size)
    pull = (ap.flux - flux * ee) / ap.fluxerr
    assert 0.9 < np.std(pull) < 1.1


def test_encircled_energy_of_a_gaussian_like_moffat() -> None:
    beta, fwhm = 10.0, 10.0
    psf = MoffatPSF.constant(fwhm, beta=beta)
    alpha = _alpha_of(fwhm, beta)
    for r in (3.0, 6.0, 12.0):
        analytic = 1.0 - (1.0 + r**2 / alpha**2) ** (1.0 - beta)
        # Pixel integration and the exact pixel/circle overlap each smooth the profile by a
        # 1-px box (variance 1/12 px^2 per axis); for this well-sampled PSF that moves the
        # EE by < 5e-3.
        assert encircled_energy(psf, 50.3, 50.6, r) == pytest.approx(analytic, abs=5e-3)
    with pytest.raises(ConfigError, match="aperture radius must be positive"):
        encircled_energy(psf, 0.0, 0.0, -1.0)


def test_encircled_energies_follow_a_psf_varying_across_the_frame() -> None:
    """The batch (stamps stacked into one image) gives each position its own PSF's EE:
    FWHM 8 px in the centre to 12 px in the corners, against the analytic Moffat EE."""
    beta, shape, r = 10.0, (300, 500), 9.0
    quad = 4.0 / 2.0  # 8 + 2 (u^2 + v^2): 12 px in the corners
    psf = MoffatPSF(beta=beta, fwhm_coeffs=(8.0, 0.0, 0.0, quad, 0.0, quad),
                    e1_coeffs=(0.0,) * 6, e2_coeffs=(0.0,) * 6, order=2, shape=shape)
    x = np.array([20.2, 249.5, 480.7, 130.4, 400.0, 20.0])
    y = np.array([15.6, 149.5, 290.1, 80.3, 40.9, 280.0])
    got = encircled_energies(psf, x, y, r)
    alpha = np.array([_alpha_of(psf.fwhm_at(a, b), beta) for a, b in zip(x, y, strict=True)])
    analytic = 1.0 - (1.0 + r**2 / alpha**2) ** (1.0 - beta)
    np.testing.assert_allclose(got, analytic, atol=5e-3)
    assert np.ptp(analytic) > 0.1  # the positions really differ
    assert encircled_energies(psf, np.zeros(0), np.zeros(0), r).shape == (0,)
    with pytest.raises(InputError, match="finite x and y of one length; got 2 and 1"):
        encircled_energies(psf, np.array([1.0, 2.0]), np.array([1.0]), r)
    with pytest.raises(InputError, match="finite x and y"):
        encircled_energies(psf, np.array([np.nan]), np.array([1.0]), r)
    with pytest.raises(ConfigError, match="aperture radius must be positive"):
        encircled_energies(psf, x, y, 0.0)


def test_encircled_energy_matches_a_numeric_pixel_sum() -> None:
    e1, e2, fwhm, beta = 0.15, -0.1, 3.0, 3.0
    psf = MoffatPSF.constant(fwhm, beta=beta, e1=e1, e2=e2)
    xc, yc, r = 20.3, 19.8, 4.0
    alpha = _alpha_of(fwhm, beta)
    d = np.sqrt(1 - e1**2 - e2**2)
    # Independent reference: every pixel's integrated PSF (40x40 sub-samples) times the
    # fraction of the pixel inside the circle (also 40x40 sub-samples).
    sub = (np.arange(40) + 0.5) / 40 - 0.5
    total = 0.0
    for j in range(int(yc - r) - 1, int(yc + r) + 2):
        for i in range(int(xc - r) - 1, int(xc + r) + 2):
            xx = i + sub[None, :] - xc
            yy = j + sub[:, None] - yc
            q = ((1 - e1) * xx**2 - 2 * e2 * xx * yy + (1 + e1) * yy**2) / d / alpha**2
            value = np.mean((beta - 1) / (np.pi * alpha**2) * (1 + q) ** -beta)
            total += value * np.mean(xx**2 + yy**2 <= r**2)
    assert encircled_energy(psf, xc, yc, r) == pytest.approx(total, abs=1.5e-3)


def _alpha_of(fwhm: float, beta: float) -> float:
    return fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


# --- covariance of the PSF-fit and aperture fluxes -------------------------------------------


@pytest.mark.parametrize("flux", [3000.0, 60000.0])
def test_psf_and_aperture_flux_covariance_matches_monte_carlo(flux: float) -> None:
    """Both fluxes of one star share its photons and the annulus level: the analytic
    Cov(F_psf, F_ap), and with it Var(F_ap - EE F_psf) that the aperture correction's ratio
    errors use, against their spread over 1250 noise draws (2 images of 625 stars)."""
    x, y, shape = _grid(25)
    psf_f, ap_f, cov, ap_err, psf_err = [], [], [], [], []
    for seed in (21, 22):
        image = _inject(shape, x, y, flux, seed=seed + int(flux))
        phot = forced_psf_photometry(image, x, y, psf=PSF, rms=_rms(shape), gain=GAIN,
                                     radius=RADIUS, annulus=ANNULUS,
                                     covariance_radius=ANNULUS[0])
        ap = aperture_photometry(image, x, y, radius=ANNULUS[0], rms=_rms(shape), gain=GAIN,
                                 annulus=ANNULUS)
        psf_f.append(phot.flux)
        ap_f.append(ap.flux)
        cov.append(phot.aperture_covariance(ap.area))
        ap_err.append(ap.fluxerr)
        psf_err.append(phot.fluxerr)
    fp, fa, c = np.concatenate(psf_f), np.concatenate(ap_f), np.concatenate(cov)
    ea, ep = np.concatenate(ap_err), np.concatenate(psf_err)
    n = fp.size
    empirical = float(np.cov(fp, fa)[0, 1])
    rho = empirical / float(np.std(fp) * np.std(fa))
    # standard error of a sample covariance: sqrt((1 + rho^2) / n) sigma_p sigma_a
    tolerance = 4.0 * np.sqrt((1.0 + rho**2) / n) * float(np.std(fp) * np.std(fa))
    assert np.mean(c) == pytest.approx(empirical, abs=tolerance)
    ee = float(np.mean(encircled_energies(PSF, x, y, ANNULUS[0])))
    diff = fa - ee * fp
    analytic = float(np.mean(ea**2 + (ee * ep) ** 2 - 2.0 * ee * c))
    # a sample variance's relative standard error is sqrt(2 / n) (4 % here)
    assert np.var(diff) == pytest.approx(analytic, rel=4.0 * np.sqrt(2.0 / n))
    # Without the covariance (independent fluxes) the ratio errors are far too large
    # (measured: 1.5x at 3e3 ADU, 2.3x at 6e4).
    assert np.mean(ea**2 + (ee * ep) ** 2) > 1.3 * np.var(diff)


def test_covariance_fields_only_on_request() -> None:
    x, y, shape = _grid(2)
    phot = forced_psf_photometry(np.zeros(shape), x, y, psf=PSF, rms=_rms(shape), gain=GAIN,
                                 radius=RADIUS, annulus=ANNULUS)
    assert phot.pixel_cov is None
    with pytest.raises(InputError):
        phot.aperture_covariance(np.ones(x.size))
