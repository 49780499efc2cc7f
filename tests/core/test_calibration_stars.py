"""Choosing and weighting calibration stars (core/calibration_stars.py)."""

from __future__ import annotations

import numpy as np
import pytest

from skyphot.core.calibration_stars import (
    inside_frame,
    isolated,
    no_detected_neighbour,
    predicted_errors,
)
from skyphot.core.photometry import PSFPhotometry
from skyphot.errors import CalibrationError


def _phot(flux: np.ndarray, err_bg: np.ndarray, photon_per_adu: float) -> PSFPhotometry:
    err = np.sqrt(err_bg**2 + photon_per_adu * np.maximum(flux, 0.0))
    n = flux.size
    return PSFPhotometry(
        flux=flux, fluxerr=err, fluxerr_background=err_bg, local_background=np.zeros(n),
        n_masked=np.zeros(n, dtype=np.int64), near_edge=np.zeros(n, dtype=bool),
        chi2=np.ones(n),
    )


def test_inside_frame_keeps_a_margin() -> None:
    x = np.array([5.0, 50.0, 95.0, np.nan])
    y = np.array([50.0, 50.0, 50.0, 50.0])
    assert inside_frame(x, y, (100, 100), 10.0).tolist() == [False, True, False, False]


def test_isolation_ignores_only_much_fainter_neighbours() -> None:
    x = np.array([10.0, 13.0, 50.0, 52.0, 90.0])
    y = np.zeros(5)
    mag = np.array([15.0, 15.5, 14.0, 18.5, 16.0])
    # 10/13: similar brightness, both spoiled; 50/52: the 4.5 mag fainter one cannot bias the
    # bright one, but the bright one spoils it; 90: alone.
    assert isolated(x, y, mag, radius=5.0).tolist() == [False, False, True, False, True]


def test_detected_neighbour_above_half_a_percent_disqualifies() -> None:
    x, y, flux = np.array([10.0, 60.0]), np.array([10.0, 10.0]), np.array([1e5, 1e5])
    det_x = np.array([10.0, 14.0, 60.0, 64.0])
    det_y = np.array([10.0, 10.0, 10.0, 10.0])
    det_flux = np.array([1e5, 1e4, 1e5, 100.0])  # 10 % and 0.1 % neighbours
    assert no_detected_neighbour(
        x, y, flux, det_x, det_y, det_flux, fwhm=3.0
    ).tolist() == [False, True]


def test_predicted_errors_follow_the_catalog_not_the_noise() -> None:
    zp, gain_factor = 25.0, 0.7
    mag = np.array([14.0, 15.0, 16.0, 17.0, 18.0])
    true_flux = 10 ** (-0.4 * (mag - zp))
    err_bg = np.full(5, 50.0)
    noisy = true_flux * np.array([1.01, 0.99, 1.02, 0.97, 1.3])
    pred = predicted_errors(mag, _phot(noisy, err_bg, gain_factor), np.ones(5, bool), gain=1.0)
    np.testing.assert_allclose(pred.flux, true_flux, rtol=0.03)
    expected = 1.0857 * np.sqrt(err_bg**2 + gain_factor * pred.flux) / pred.flux
    np.testing.assert_allclose(pred.inst_err, expected, rtol=0.02)


def test_no_usable_star_says_so() -> None:
    mag = np.array([14.0, 15.0])
    phot = _phot(np.array([-5.0, np.nan]), np.full(2, 50.0), 1.0)
    with pytest.raises(CalibrationError, match="no usable calibration star on the frame"):
        predicted_errors(mag, phot, np.array([True, False]), gain=1.0)
