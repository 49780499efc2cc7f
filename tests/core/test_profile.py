"""core.profile: a source's PSF-fit chi-square against the stars' at its S/N."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skyphot.core.profile import MIN_REFERENCE_STARS, check_profile

# Stars whose model mismatch is exactly chi2 - 1 = 1e-4 * snr**2 (no spread in q), so the
# spread at any S/N is the chi-square's own noise: sqrt(2 / dof) = 0.1 for dof 200.
_SNR = np.geomspace(20.0, 400.0, 30)
_CHI2 = 1.0 + 1e-4 * _SNR**2


@pytest.mark.parametrize(("chi2", "mismatched"), [(2.45, False), (2.55, True)])
def test_the_threshold_is_five_spreads_above_the_stars_at_the_targets_snr(
    chi2: float, mismatched: bool
) -> None:
    # at S/N 100 the stars give 1 + 1e-4 * 100**2 = 2.0, spread 0.1: 2.45 is 4.5 sigma
    check = check_profile(chi2, 100.0, dof=200.0, star_chi2=_CHI2, star_snr=_SNR)
    assert check.tested
    assert check.expected == pytest.approx(2.0)
    assert check.spread == pytest.approx(0.1)
    assert check.excess_sigma == pytest.approx((chi2 - 2.0) / 0.1)
    assert check.mismatched is mismatched


def test_the_stars_spread_in_mismatch_widens_the_threshold_at_high_snr() -> None:
    # q alternates 0.5e-4 / 1.5e-4: median 1e-4, MAD 0.5e-4 -> sigma 1.4826 * 0.5e-4; at
    # S/N 300 that is a chi-square spread of 0.667, far above the noise (0.1)
    q = np.where(np.arange(_SNR.size) % 2 == 0, 0.5e-4, 1.5e-4)
    stars = 1.0 + q * _SNR**2
    check = check_profile(12.0, 300.0, dof=200.0, star_chi2=stars, star_snr=_SNR)
    assert check.expected == pytest.approx(1.0 + 1e-4 * 300.0**2)
    assert check.spread == pytest.approx(math.hypot(1.4826 * 0.5e-4 * 9e4, 0.1), rel=1e-3)
    # 12 is 2 above 10 = 3 spreads: a bright star's PSF mismatch, not a companion
    assert not check.mismatched


def test_a_clean_faint_source_is_judged_by_the_chi_square_noise_alone() -> None:
    check = check_profile(1.3, 8.0, dof=200.0, star_chi2=_CHI2, star_snr=_SNR)
    assert check.expected == pytest.approx(1.0064)
    assert not check.mismatched
    assert check_profile(1.6, 8.0, dof=200.0, star_chi2=_CHI2, star_snr=_SNR).mismatched


def test_too_few_bright_stars_leave_the_profile_untested() -> None:
    snr = np.concatenate([np.full(MIN_REFERENCE_STARS - 1, 50.0), np.full(40, 10.0)])
    chi2 = np.full(snr.size, 1.0)
    check = check_profile(50.0, 30.0, dof=200.0, star_chi2=chi2, star_snr=snr)
    assert check.n_reference == MIN_REFERENCE_STARS - 1
    assert not check.tested and not check.mismatched
    assert math.isnan(check.excess_sigma)


def test_an_unmeasured_source_or_nan_stars_are_not_tested() -> None:
    assert not check_profile(float("nan"), 30.0, dof=200.0, star_chi2=_CHI2,
                             star_snr=_SNR).tested
    nan_stars = np.full(_SNR.size, np.nan)
    check = check_profile(50.0, 30.0, dof=200.0, star_chi2=nan_stars, star_snr=_SNR)
    assert check.n_reference == 0 and not check.mismatched
