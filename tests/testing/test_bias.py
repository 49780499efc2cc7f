"""scene_bias against draws with a known bias and known errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skyphot.testing.bias import scene_bias


def test_a_known_bias_is_recovered_within_its_standard_error() -> None:
    rng = np.random.default_rng(3)
    true, sigma, offset = 100.0, 5.0, 3.0
    errs = offset + rng.normal(0.0, sigma, 400)
    b = scene_bias(errs, np.full(400, sigma), true_flux=true)
    assert b.bias_flux == pytest.approx(offset, abs=3 * b.bias_flux_stderr)
    assert b.bias_flux_stderr == pytest.approx(sigma / 20.0, rel=0.1)
    assert b.bias_mag == pytest.approx(-2.5 * math.log10(1.03), abs=3 * b.bias_mag_stderr)
    # 5 % flux error is 0.0543 mag; the draws' scatter matches the reported errors
    assert b.sigma_mag == pytest.approx(0.0543, abs=1e-4)
    assert b.pull_std == pytest.approx(1.0, abs=0.1)
    assert b.within_sigma  # 0.032 mag of bias against 0.054 mag of error


def test_a_bias_beyond_one_sigma_is_reported_as_such() -> None:
    errs = np.array([-20.0, -21.0, -19.0])  # 20 % too faint, errors of 5 %
    b = scene_bias(errs, [5.0, 5.0, 5.0], true_flux=100.0)
    assert b.bias_mag == pytest.approx(0.2423, abs=1e-4)
    assert not b.within_sigma
    assert b.pull_std == pytest.approx(0.2)


def test_too_few_draws_or_no_flux_are_refused() -> None:
    with pytest.raises(ValueError, match="at least two draws"):
        scene_bias([1.0], [1.0], true_flux=10.0)
    with pytest.raises(ValueError, match="true_flux must be positive"):
        scene_bias([1.0, 2.0], [1.0, 1.0], true_flux=0.0)
