"""ZOGY against analytic truth: Gaussian PSFs, a galaxy under a point-source transient."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from skyphot.core.noise_correlation import resampled_noise_acf
from skyphot.core.photometry import forced_psf_photometry
from skyphot.core.zogy import StampPSF, zogy, zogy_tiled
from skyphot.errors import InputError


def _gauss(size: int, fwhm: float, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    s = fwhm / 2.3548
    h = size // 2
    y, x = np.mgrid[-h : h + 1, -h : h + 1]
    g = np.exp(-((x - dx) ** 2 + (y - dy) ** 2) / (2 * s * s))
    return g / g.sum()


def _pair(seed: int, flux: float, fr: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    new, ref = np.zeros((128, 128)), np.zeros((128, 128))
    host = slice(64 - 30, 64 + 31)
    new[host, host] += 5e4 * _gauss(61, math.hypot(12.0, 4.0))
    ref[host, host] += fr * 5e4 * _gauss(61, math.hypot(12.0, 2.5))
    star = slice(64 - 15, 64 + 16)
    new[star, star] += flux * _gauss(31, 4.0, 0.3, -0.4)
    return new + rng.normal(0, 10.0, new.shape), ref + rng.normal(0, 12.0, ref.shape)


def _measure(new: np.ndarray, ref: np.ndarray, fr: float = 3.0) -> tuple[float, float, float]:
    z = zogy(new, ref, _gauss(31, 4.0), _gauss(31, 2.5), sigma_new=10.0, sigma_ref=12.0,
             flux_ratio=fr, psf_size=31)
    phot = forced_psf_photometry(
        z.difference, np.array([64.3]), np.array([63.6]), psf=StampPSF.from_stamp(z.psf),
        rms=np.sqrt(z.variance), gain=1e12, radius=10.0, annulus=None,
    )
    chi = float(np.std(z.difference[5:40, 5:40] / np.sqrt(z.variance[5:40, 5:40])))
    return float(phot.flux[0]), float(phot.fluxerr[0]), chi


def test_transient_flux_on_galaxy_is_unbiased_and_errors_are_honest() -> None:
    flux = 800.0
    pulls, chis = [], []
    for seed in range(24):
        f, e, chi = _measure(*_pair(seed, flux))
        pulls.append((f - flux) / e)
        chis.append(chi)
    # mean of 24 unit-variance pulls has sigma 0.2: 3 sigma bound
    assert abs(float(np.mean(pulls))) < 0.65
    assert 0.7 < float(np.std(pulls)) < 1.35
    assert 0.9 < float(np.mean(chis)) < 1.1


def _host_pair(
    seed: int, fwhm_n: float, fwhm_r: float, fr: float = 3.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A host whose photon noise dominates (gain 1 on both), a 3000-count transient 8 px
    from its centre; the images and their variance maps."""
    rng = np.random.default_rng(seed)
    host_n, host_r, star = np.zeros((96, 96)), np.zeros((96, 96)), np.zeros((96, 96))
    box = slice(48 - 30, 48 + 31)
    host_n[box, box] = 5e5 * _gauss(61, math.hypot(6.0, fwhm_n))
    host_r[box, box] = fr * 5e5 * _gauss(61, math.hypot(6.0, fwhm_r))
    star[box, box] = 3000.0 * _gauss(61, fwhm_n, 8.0, 0.0)
    var_n, var_r = 10.0**2 + host_n, 6.0**2 + host_r
    new = host_n + star + rng.normal(0.0, np.sqrt(var_n + star))
    ref = host_r + rng.normal(0.0, np.sqrt(var_r))
    return new, ref, var_n, var_r


@pytest.mark.parametrize(("fwhm_n", "fwhm_r"), [(3.0, 4.5), (4.0, 2.5)])
def test_psf_flux_error_on_a_bright_host_matches_the_scatter(fwhm_n: float, fwhm_r: float) -> None:
    # The host's photon noise passes through one kernel alone and comes out correlated; with
    # a template broader than the frame the per-pixel variance made PSF-fit errors ~1.9x the
    # scatter over these realisations.
    n = 80
    fluxes, errors, scores = [], [], []
    for seed in range(n):
        new, ref, var_n, var_r = _host_pair(seed, fwhm_n, fwhm_r)
        z = zogy(new, ref, _gauss(31, fwhm_n), _gauss(31, fwhm_r), sigma_new=10.0,
                 sigma_ref=6.0, flux_ratio=3.0, var_new=var_n, var_ref=var_r, psf_size=31)
        phot = forced_psf_photometry(
            z.difference, np.array([56.0]), np.array([48.0]), psf=StampPSF.from_stamp(z.psf),
            rms=np.sqrt(z.psf_variance), gain=1.0, radius=10.0, annulus=None,
        )
        fluxes.append(float(phot.flux[0]))
        errors.append(float(phot.fluxerr[0]))
        scores.append(float(z.score[48, 40]))  # on the host, as far from its centre: no source
    # The sample std of n Gaussian values has a relative error 1/sqrt(2n): 3 sigma bounds.
    tol = 3.0 / math.sqrt(2 * n)
    assert abs(float(np.mean(errors)) / float(np.std(fluxes)) - 1.0) < tol
    assert abs(float(np.std(scores)) - 1.0) < tol
    # the flux itself is unbiased: mean within 3 standard errors
    assert abs(float(np.mean(fluxes)) - 3000.0) < 3.0 * float(np.std(fluxes)) / math.sqrt(n)


def test_negative_flux_of_a_faded_source_is_reported_not_clipped() -> None:
    new, ref = _pair(3, 0.0)
    # the source was in the template (at fr times its flux) and is gone now
    ref[64 - 15 : 64 + 16, 64 - 15 : 64 + 16] += 3.0 * 1500.0 * _gauss(31, 2.5, 0.3, -0.4)
    f, e, _ = _measure(new, ref)
    assert abs(f + 1500.0) < 4 * e


def test_difference_noise_matches_closed_form() -> None:
    z = zogy(np.zeros((64, 64)), np.zeros((64, 64)), _gauss(15, 3.0), _gauss(15, 2.0),
             sigma_new=2.0, sigma_ref=3.0, flux_ratio=1.5)
    assert z.background_sigma == pytest.approx(math.sqrt(2.0**2 + 3.0**2 / 1.5**2))
    assert np.allclose(z.variance, z.background_sigma**2, rtol=1e-6)
    # white noise: a PSF fit sees the per-pixel level, correlations play no part
    assert np.allclose(z.psf_variance, z.background_sigma**2, rtol=1e-5)
    assert z.psf.sum() == pytest.approx(1.0)


def test_bad_inputs_are_refused_with_a_message() -> None:
    a = np.zeros((32, 32))
    with pytest.raises(InputError, match="grids differ"):
        zogy(a, np.zeros((32, 31)), _gauss(7, 2), _gauss(7, 2), sigma_new=1, sigma_ref=1,
             flux_ratio=1)
    with pytest.raises(InputError, match="flux ratio must be positive"):
        zogy(a, a, _gauss(7, 2), _gauss(7, 2), sigma_new=1, sigma_ref=1, flux_ratio=0)
    bad = a.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        zogy(bad, a, _gauss(7, 2), _gauss(7, 2), sigma_new=1, sigma_ref=1, flux_ratio=1)
    with pytest.raises(InputError, match="odd sizes"):
        zogy(a, a, np.ones((6, 6)), _gauss(7, 2), sigma_new=1, sigma_ref=1, flux_ratio=1)


def test_stamp_psf_shift_keeps_flux_and_moves_centroid() -> None:
    psf = StampPSF.from_stamp(_gauss(31, 3.0))
    stamp, x0, y0 = psf.render(10.3, 20.8, 21)
    assert stamp.sum() == pytest.approx(1.0, abs=1e-4)
    yy, xx = np.mgrid[0:21, 0:21]
    assert float((stamp * (xx + x0)).sum() / stamp.sum()) == pytest.approx(10.3, abs=0.01)
    assert float((stamp * (yy + y0)).sum() / stamp.sum()) == pytest.approx(20.8, abs=0.01)
    assert psf.fwhm_at(0, 0) == pytest.approx(3.0, rel=0.15)


def _resampled_noise(seed: int, jac: np.ndarray, sigma_white: float, n: int) -> np.ndarray:
    """White noise on a template grid resampled (quintic, flux conserving) onto an n x n
    grid by the affine map ``jac``: correlated noise of white-equivalent ``sigma_white``."""
    rng = np.random.default_rng(seed)
    area = abs(float(np.linalg.det(jac)))
    src = rng.normal(0.0, sigma_white / math.sqrt(area), (3 * n, 3 * n))
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    c = 1.5 * n - jac @ np.array([n / 2, n / 2])
    sx = jac[0, 0] * xx + jac[0, 1] * yy + c[0]
    sy = jac[1, 0] * xx + jac[1, 1] * yy + c[1]
    return np.asarray(map_coordinates(src, [sy, sx], order=5) * area)


@pytest.mark.parametrize("scale", [1.6, 0.7])
def test_correlated_template_noise_is_whitened_and_predicted(scale: float) -> None:
    th = math.radians(33.0)
    jac = scale * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    n, fr = 192, 2.0
    rng = np.random.default_rng(11)
    new = rng.normal(0.0, 10.0, (n, n))
    ref = _resampled_noise(12, jac, 25.0, n)
    kw = {"sigma_new": 10.0, "sigma_ref": 25.0, "flux_ratio": fr, "psf_size": 31}
    # a template broader than the frame: its kernel passes the high spatial frequencies,
    # where resampling changed its noise power most
    pn, pr = _gauss(31, 2.5), _gauss(31, 4.0)

    def spread(acf: np.ndarray | None) -> tuple[float, float]:
        z = zogy(new, ref, pn, pr, ref_noise_acf=acf, **kw)  # type: ignore[arg-type]
        inner = (slice(16, -16), slice(16, -16))
        ratio = z.difference[inner] / np.sqrt(z.variance[inner])
        # the score's variance comes from the composite kernels (psf_variance)
        score = z.score[inner]
        return float(np.std(ratio)), float(np.std(score))

    chi, s_chi = spread(resampled_noise_acf(jac, order=5))
    # 160^2 nearly independent pixels: the std's sampling error is ~0.5%; the score is
    # smooth (fewer independent values), so it gets a wider bound
    assert abs(chi - 1.0) < 0.03
    assert abs(s_chi - 1.0) < 0.08
    # taken as white, the predicted noise is off by far more (the test can fail)
    chi_white, _ = spread(None)
    assert abs(chi_white - 1.0) > 0.08


def test_tiled_matched_filter_only_near_the_focus() -> None:
    rng = np.random.default_rng(5)
    n = 160
    new, ref = rng.normal(0.0, 10.0, (n, n)), rng.normal(0.0, 12.0, (n, n))
    var_n, var_r = np.full((n, n), 100.0), np.full((n, n), 144.0)

    def psfs_at(x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
        return _gauss(15, 3.0 + x / n), _gauss(15, 2.0 + y / n)

    kw = {"flux_ratio": 1.5, "tile": 64, "overlap": 15, "focus": (20, 30), "psf_size": 15}
    every = zogy_tiled(new, ref, var_n, var_r, psfs_at, **kw)  # type: ignore[arg-type]
    near = zogy_tiled(new, ref, var_n, var_r, psfs_at, matched_within=10.0,
                      **kw)  # type: ignore[arg-type]
    # the difference and its variance do not depend on the option
    assert np.array_equal(every.difference, near.difference)
    assert np.array_equal(every.variance, near.variance)
    # focus (20, 30) is in tile [0, 64)^2 and within 10 px of no other tile's core
    assert np.array_equal(near.score[:64, :64], every.score[:64, :64])
    assert np.array_equal(near.psf_variance[:64, :64], every.psf_variance[:64, :64])
    assert np.all(np.isnan(near.score[64:, :])) and np.all(np.isnan(near.score[:, 64:]))
    assert np.array_equal(near.psf_variance[64:], near.variance[64:])
    assert np.all(np.isfinite(every.score))
    # a focus near a tile corner brings its three neighbours in
    corner = zogy_tiled(new, ref, var_n, var_r, psfs_at, matched_within=10.0,
                        **{**kw, "focus": (60, 60)})  # type: ignore[arg-type]
    assert np.all(np.isfinite(corner.score[:128, :128]))
    assert np.all(np.isnan(corner.score[128:, :]))


def test_a_noise_acf_wider_than_the_image_is_cropped_to_it() -> None:
    rng = np.random.default_rng(2)
    new, ref = rng.normal(0.0, 1.0, (40, 40)), rng.normal(0.0, 1.0, (40, 40))
    wide = resampled_noise_acf(np.eye(2) * 0.2, order=5)  # a template 5x coarser
    assert wide.shape[0] > 40
    z = zogy(new, ref, _gauss(15, 3.0), _gauss(15, 2.0), sigma_new=1.0, sigma_ref=1.0,
             flux_ratio=1.0, ref_noise_acf=wide)
    assert np.all(np.isfinite(z.difference)) and np.all(z.variance > 0)
    with pytest.raises(InputError, match="odd sizes"):
        zogy(new, ref, _gauss(15, 3.0), _gauss(15, 2.0), sigma_new=1.0, sigma_ref=1.0,
             flux_ratio=1.0, ref_noise_acf=np.ones((2, 2)))
