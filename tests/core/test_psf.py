"""Truth-based tests of the Moffat PSF model and its fit."""

from __future__ import annotations

import numpy as np
import pytest

from skyphot.core.detection import SourceList, detect_sources, estimate_background
from skyphot.core.psf import MoffatPSF, effective_area, fit_psf
from skyphot.errors import ConfigError, DetectionError, InputError

# --- an independent renderer: 6x6 Gauss-Legendre per pixel, own parametrisation ---------------


def _alpha(fwhm: float, beta: float) -> float:
    return fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _moffat_pixels(
    x: float, y: float, x0: int, y0: int, size: int, fwhm: float, beta: float,
    q: float = 1.0, theta: float = 0.0,
) -> np.ndarray:
    """Unit-flux elliptical Moffat (axis ratio q, major axis at angle theta from +x) integrated
    over the pixels of a size x size stamp with corner (x0, y0)."""
    nodes, weights = np.polynomial.legendre.leggauss(6)
    nodes, weights = nodes / 2.0, weights / 2.0
    a = _alpha(fwhm, beta) / np.sqrt(q)  # geometric mean of the axes = alpha
    b = _alpha(fwhm, beta) * np.sqrt(q)
    dx = (x0 + np.arange(size)[:, None] + nodes[None, :]) - x
    dy = (y0 + np.arange(size)[:, None] + nodes[None, :]) - y
    DX = dx[None, :, None, :]
    DY = dy[:, None, :, None]
    u = DX * np.cos(theta) + DY * np.sin(theta)
    v = -DX * np.sin(theta) + DY * np.cos(theta)
    prof = (beta - 1.0) / (np.pi * a * b) * (1.0 + u**2 / a**2 + v**2 / b**2) ** -beta
    return np.einsum("jikl,k,l->ji", prof, weights, weights)


def _field(
    rng: np.random.Generator, shape: tuple[int, int], n_side: int, fwhm_of, beta: float = 3.0,
    q: float = 1.0, theta: float = 0.0, flux_range: tuple[float, float] = (2e4, 3e5),
    sky_sigma: float = 10.0, gain: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Stars on a jittered grid; Gaussian sky noise plus the stars' photon noise."""
    ny, nx = shape
    gx = (np.arange(n_side) + 0.5) * nx / n_side
    gy = (np.arange(n_side) + 0.5) * ny / n_side
    x = (gx[None, :] + rng.uniform(-4, 4, (n_side, n_side))).ravel()
    y = (gy[:, None] + rng.uniform(-4, 4, (n_side, n_side))).ravel()
    flux = 10 ** rng.uniform(np.log10(flux_range[0]), np.log10(flux_range[1]), x.size)
    model = np.zeros(shape)
    half = 18
    for xs, ys, f in zip(x, y, flux, strict=True):
        x0, y0 = round(xs) - half, round(ys) - half
        stamp = _moffat_pixels(xs, ys, x0, y0, 2 * half + 1, fwhm_of(xs, ys), beta, q, theta)
        ya, xa = max(y0, 0), max(x0, 0)
        yb, xb = min(y0 + 2 * half + 1, ny), min(x0 + 2 * half + 1, nx)
        model[ya:yb, xa:xb] += f * stamp[ya - y0:yb - y0, xa - x0:xb - x0]
    noise = rng.normal(0.0, 1.0, shape) * np.sqrt(sky_sigma**2 + model / gain)
    return (model + noise).astype(np.float32), np.full(shape, sky_sigma, dtype=np.float32)


def _detect(image: np.ndarray, rms: np.ndarray) -> SourceList:
    return detect_sources(image, rms=rms, threshold_sigma=5.0)


# --- rendering -----------------------------------------------------------------------------


def test_render_is_normalised_over_the_plane_not_the_stamp() -> None:
    beta = 3.0
    psf = MoffatPSF.constant(3.0, beta=beta)
    big, x0, y0 = psf.render(50.3, 60.7, 81)
    assert (x0, y0) == (50 - 40, 61 - 40)
    # Flux outside the stamp is less than outside the inscribed circle of radius 40.
    tail = (1.0 + 40.0**2 / _alpha(3.0, beta) ** 2) ** (1.0 - beta)
    assert 0.0 < 1.0 - big.sum() < tail
    small, _, _ = psf.render(50.3, 60.7, 5)
    # A 5x5 stamp misses the wings: its sum equals the independent integration, well below 1.
    reference = _moffat_pixels(50.3, 60.7, 48, 59, 5, 3.0, beta)
    assert small.sum() == pytest.approx(reference.sum(), rel=1e-4)
    assert small.sum() < 0.85


def test_render_matches_independent_integration_for_an_elliptical_psf() -> None:
    q, theta = 0.8, np.radians(30.0)
    e = (1 - q**2) / (1 + q**2)
    psf = MoffatPSF.constant(2.2, beta=2.5, e1=e * np.cos(2 * theta), e2=e * np.sin(2 * theta))
    stamp, x0, y0 = psf.render(10.37, 20.81, 21)
    reference = _moffat_pixels(10.37, 20.81, x0, y0, 21, 2.2, 2.5, q, theta)
    assert np.max(np.abs(stamp - reference)) < 2e-4 * reference.max()


def test_render_is_centred_on_the_position() -> None:
    psf = MoffatPSF.constant(4.0, beta=4.0)
    stamp, x0, y0 = psf.render(30.26, 41.83, 61)
    yy, xx = np.mgrid[:61, :61]
    assert np.sum(stamp * (xx + x0)) / stamp.sum() == pytest.approx(30.26, abs=0.005)
    assert np.sum(stamp * (yy + y0)) / stamp.sum() == pytest.approx(41.83, abs=0.005)


def test_render_many_equals_render() -> None:
    psf = MoffatPSF(beta=3.0, fwhm_coeffs=(3.0, 0.4, -0.2), e1_coeffs=(0.02, 0.0, 0.01),
                    e2_coeffs=(0.0, -0.01, 0.0), order=1, shape=(200, 300))
    x, y = np.array([10.2, 150.0, 290.7]), np.array([5.5, 100.1, 190.0])
    stamps, x0, y0 = psf.render_many(x, y, 15)
    for i in range(3):
        one, ox, oy = psf.render(float(x[i]), float(y[i]), 15)
        assert (ox, oy) == (x0[i], y0[i])
        np.testing.assert_allclose(one, stamps[i], rtol=1e-12)


def test_fwhm_polynomial_and_extrapolation_bounds() -> None:
    psf = MoffatPSF(beta=3.0, fwhm_coeffs=(3.0, 0.5, 0.25), e1_coeffs=(0.0,) * 3,
                    e2_coeffs=(0.0,) * 3, order=1, shape=(101, 201), fwhm_range=(2.4, 3.6))
    assert psf.fwhm_at(100.0, 50.0) == pytest.approx(3.0)
    assert psf.fwhm_at(200.0, 0.0) == pytest.approx(3.0 + 0.5 - 0.25)
    assert psf.fwhm_at(200.0, 100.0) == pytest.approx(3.6)  # 3.75 clipped to the range
    assert psf.fwhm_at(1e5, 1e5) == pytest.approx(3.6)


def test_constant_psf_rejects_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="need fwhm > 0, beta > 1"):
        MoffatPSF.constant(3.0, beta=0.9)
    with pytest.raises(ConfigError, match="e1\\^2 \\+ e2\\^2 < 1"):
        MoffatPSF.constant(3.0, e1=0.8, e2=0.8)
    with pytest.raises(InputError, match="stamp size must be at least 1"):
        MoffatPSF.constant(3.0).render(0.0, 0.0, 0)


def test_effective_area_matches_the_analytic_moffat_value() -> None:
    # For a well-sampled PSF the pixel sum approaches the integral of P^2:
    # n_eff = pi alpha^2 (2 beta - 1) / (beta - 1)^2.
    beta, fwhm = 3.0, 8.0
    analytic = np.pi * _alpha(fwhm, beta) ** 2 * (2 * beta - 1) / (beta - 1) ** 2
    psf = MoffatPSF.constant(fwhm, beta=beta)
    assert effective_area(psf, 100.4, 100.6) == pytest.approx(analytic, rel=0.01)
    # Undersampled: n_eff from the pixel-integrated PSF is larger than the analytic value.
    sharp = MoffatPSF.constant(1.2, beta=beta)
    assert effective_area(sharp, 0.0, 0.0) > np.pi * _alpha(1.2, beta) ** 2 * 5 / 4


# --- fitting -----------------------------------------------------------------------------------


def _fwhm_linear(x: float, y: float) -> float:
    return 2.6 + 1.0 * x / 1023.0 + 0.4 * y / 1023.0


@pytest.fixture(scope="module")
def varying_field() -> tuple[np.ndarray, np.ndarray, SourceList]:
    rng = np.random.default_rng(21)
    image, _ = _field(rng, (1024, 1024), 12, _fwhm_linear)
    bkg = estimate_background(image)
    sub = image - bkg.level
    return sub, bkg.rms, _detect(sub, bkg.rms)


@pytest.mark.parametrize("order", [1, 2])
def test_fit_recovers_fwhm_varying_across_the_field(
    varying_field: tuple[np.ndarray, np.ndarray, SourceList], order: int
) -> None:
    sub, rms, sources = varying_field
    psf = fit_psf(sub, sources, rms=rms, spatial_order=order, gain=2.0)
    assert psf.order == order
    assert psf.n_stars >= 40
    for x, y in [(0, 0), (1023, 0), (0, 1023), (1023, 1023), (511.5, 511.5)]:
        assert psf.fwhm_at(x, y) == pytest.approx(_fwhm_linear(x, y), rel=0.02), (x, y)
    assert psf.beta == pytest.approx(3.0, rel=0.05)
    assert np.hypot(psf.e1_coeffs[0], psf.e2_coeffs[0]) < 0.01


def test_fit_recovers_ellipticity() -> None:
    rng = np.random.default_rng(22)
    q, theta = 0.85, np.radians(-25.0)
    image, rms = _field(rng, (512, 512), 7, lambda x, y: 3.2, beta=2.5, q=q, theta=theta)
    sources = _detect(image, rms)
    psf = fit_psf(image, sources, rms=rms, spatial_order=0)
    e = (1 - q**2) / (1 + q**2)
    assert psf.e1_coeffs[0] == pytest.approx(e * np.cos(2 * theta), abs=0.01)
    assert psf.e2_coeffs[0] == pytest.approx(e * np.sin(2 * theta), abs=0.01)
    assert psf.fwhm_at(256, 256) == pytest.approx(3.2, rel=0.02)
    assert psf.beta == pytest.approx(2.5, rel=0.05)


def test_fit_lowers_the_spatial_order_when_stars_are_few() -> None:
    rng = np.random.default_rng(23)
    image, rms = _field(rng, (300, 300), 3, lambda x, y: 3.0)
    psf = fit_psf(image, _detect(image, rms), rms=rms, spatial_order=2)
    assert psf.order == 1  # 9 stars: 3 per term for order 1, too few for order 2 (6 terms)
    assert psf.fwhm_at(150, 150) == pytest.approx(3.0, rel=0.02)


def test_fit_skips_masked_and_saturated_stars() -> None:
    rng = np.random.default_rng(24)
    image, rms = _field(rng, (400, 400), 5, lambda x, y: 3.0)
    sources = _detect(image, rms)
    # Masking every star leaves nothing to fit: a clear refusal, not a bad PSF.
    mask = np.zeros(image.shape, dtype=bool)
    for x, y in zip(sources.x, sources.y, strict=True):
        mask[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = True
    with pytest.raises(DetectionError, match="cannot fit the PSF"):
        fit_psf(image, sources, rms=rms, mask=mask)
    with pytest.raises(DetectionError, match="only 0 stars are suitable for the PSF fit"):
        fit_psf(image, sources, rms=rms, saturation=1.0)


def test_fit_with_too_few_stars_raises_clear_error() -> None:
    rng = np.random.default_rng(25)
    image, rms = _field(rng, (120, 240), 2, lambda x, y: 3.0)
    sources = _detect(image, rms)
    keep = np.argsort(-sources.flux)[:2]
    with pytest.raises(DetectionError, match="at least 3 are needed"):
        fit_psf(image, sources.select(keep), rms=rms)


def test_fit_input_errors() -> None:
    image = np.zeros((50, 50), dtype=np.float32)
    empty = SourceList(*(np.zeros(0) for _ in range(10)))
    with pytest.raises(InputError, match="same shape"):
        fit_psf(image, empty, rms=np.ones((10, 10)))
    with pytest.raises(ConfigError, match="spatial_order=-1"):
        fit_psf(image, empty, rms=np.ones_like(image), spatial_order=-1)
    with pytest.raises(DetectionError, match="no detected sources"):
        fit_psf(image, empty, rms=np.ones_like(image))


def test_fit_on_the_project_simulator() -> None:
    testing = pytest.importorskip("skyphot.testing")
    sim = testing.simulate_frame(
        testing.SimulationParams(shape=(600, 800), n_stars=600, n_cosmic_rays=0,
                                 bad_column=False, fwhm_gradient=0.1),
        seed=3,
    )
    data = np.asarray(sim.data, dtype=np.float32)
    mask = np.asarray(sim.defects.saturated_mask).copy()
    bkg = estimate_background(data, mask=mask)
    sub = data - bkg.level
    sources = detect_sources(sub, rms=bkg.rms, mask=mask)
    psf = fit_psf(sub, sources, rms=bkg.rms, mask=mask, saturation=sim.params.saturation)
    for x, y in [(400, 300), (100, 100), (700, 500)]:
        assert psf.fwhm_at(x, y) == pytest.approx(sim.psf.fwhm_at(x, y), rel=0.03)
        # n_eff sets the limit: within 5 % (0.03 mag in the limiting magnitude).
        assert effective_area(psf, x, y) == pytest.approx(
            effective_area(sim.psf, x, y), rel=0.05
        )


def test_fit_mask_shape_and_failed_fits_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from skyphot.core import psf as psf_module

    rng = np.random.default_rng(26)
    image, rms = _field(rng, (300, 300), 4, lambda x, y: 3.0)
    sources = _detect(image, rms)
    with pytest.raises(InputError, match="mask shape"):
        fit_psf(image, sources, rms=rms, mask=np.zeros((3, 3), dtype=bool))
    # Every star fit rejected (as for a trailed frame): a clear refusal.
    monkeypatch.setattr(psf_module, "_good_fits", lambda p, chi2: np.zeros(len(p), bool))
    with pytest.raises(DetectionError, match="the PSF fit failed on all but 0"):
        fit_psf(image, sources, rms=rms)
    # Beta fits fine, then the shared-beta fits all fail.
    calls = iter([True, False])

    def first_pass_only(p: np.ndarray, chi2: np.ndarray) -> np.ndarray:
        return np.full(len(p), next(calls))

    monkeypatch.setattr(psf_module, "_good_fits", first_pass_only)
    with pytest.raises(DetectionError, match="only 0 stars gave a usable PSF fit"):
        fit_psf(image, sources, rms=rms)


class _BlankPSF:
    def fwhm_at(self, x: float, y: float) -> float:
        return 3.0

    def render(self, x: float, y: float, size: int) -> tuple[np.ndarray, int, int]:
        return np.zeros((size, size)), 0, 0


def test_effective_area_of_a_blank_psf_raises() -> None:
    with pytest.raises(DetectionError, match="renders as zero"):
        effective_area(_BlankPSF(), 10.0, 10.0)
