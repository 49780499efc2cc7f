"""Analytic checks of S/N, the detection decision and the limiting flux."""

from __future__ import annotations

import numpy as np
import pytest

from skyphot.core.limits import is_detected, limiting_flux, signal_to_noise
from skyphot.errors import ConfigError, PhotometryError


def test_signal_to_noise_scalar_and_array() -> None:
    assert signal_to_noise(50.0, 10.0) == pytest.approx(5.0)
    assert isinstance(signal_to_noise(50.0, 10.0), float)
    assert signal_to_noise(-20.0, 10.0) == pytest.approx(-2.0)
    snr = signal_to_noise(np.array([10.0, 1.0, np.nan, 3.0]), np.array([2.0, 0.0, 1.0, -1.0]))
    assert snr[0] == pytest.approx(5.0)
    assert np.all(np.isnan(snr[1:]))  # zero, NaN or negative errors give no S/N


def test_is_detected_threshold_is_inclusive() -> None:
    assert is_detected(50.0, 10.0, nsigma=5.0)
    assert not is_detected(49.9, 10.0, nsigma=5.0)
    assert not is_detected(-100.0, 10.0, nsigma=5.0)
    assert not is_detected(float("nan"), 10.0, nsigma=3.0)
    assert not is_detected(10.0, 0.0, nsigma=3.0)


def test_limiting_flux_is_nsigma_times_the_background_error() -> None:
    assert limiting_flux(12.5, nsigma=5.0) == pytest.approx(62.5)
    assert limiting_flux(12.5, nsigma=3.0) == pytest.approx(37.5)
    # A source exactly at the limit, measured with its background-only error, is detected.
    limit = limiting_flux(7.0, nsigma=5.0)
    assert is_detected(limit, 7.0, nsigma=5.0)


def test_limit_errors_are_actionable() -> None:
    with pytest.raises(PhotometryError, match="fully masked or off the frame"):
        limiting_flux(float("nan"), nsigma=5.0)
    with pytest.raises(PhotometryError, match="positive, finite error"):
        limiting_flux(0.0, nsigma=5.0)
    with pytest.raises(ConfigError, match="nsigma must be a positive number"):
        limiting_flux(1.0, nsigma=0.0)
    with pytest.raises(ConfigError, match="nsigma must be a positive number"):
        is_detected(1.0, 1.0, nsigma=float("nan"))
