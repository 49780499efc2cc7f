"""fit_zero_point's response term: a known non-linear response recovered within its errors."""

from __future__ import annotations

import numpy as np
import pytest

from skyphot.core.calibration import fit_zero_point
from skyphot.core.stats import f_sf, regularized_beta
from skyphot.errors import InputError

SHAPE = (1024, 1024)
ZP0, PIVOT = 25.0, -13.0
LINEAR, QUADRATIC = 0.05, 0.04  # mag per mag, mag per mag^2 about PIVOT


def true_zp(inst: np.ndarray | float, quadratic: float) -> np.ndarray:
    d = np.asarray(inst, float) - PIVOT
    return np.asarray(ZP0 + LINEAR * d + quadratic * d * d)


def stars(seed: int, quadratic: float, n: int = 60) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inst = rng.uniform(-16.0, -10.0, n)
    inst_err = np.full(n, 0.02)
    cat_err = np.full(n, 0.02)
    cat = inst + true_zp(inst, quadratic) + rng.normal(0.0, np.hypot(inst_err, cat_err))
    return {"inst_mag": inst, "inst_err": inst_err, "cat_mag": cat, "cat_err": cat_err,
            "x": rng.uniform(0, 1023, n), "y": rng.uniform(0, 1023, n)}


def test_quadratic_response_recovered_within_its_errors() -> None:
    pulls = []
    for seed in range(20):
        fit = fit_zero_point(**stars(seed, QUADRATIC), shape=SHAPE, spatial_order=0,
                             response_order=2)
        assert fit.response_order == 2 and fit.terms[-2:] == ("w^1", "w^2")
        for m in (-15.5, -13.0, -10.5):
            zp, err = fit.predict(500.0, 500.0, None, inst_mag=m)
            pulls.append((zp - float(true_zp(m, QUADRATIC))) / err)
    pulls_arr = np.array(pulls)
    assert np.all(np.abs(pulls_arr) < 4.0)
    # errors honest: the pulls' spread is that of a unit Gaussian within sampling
    assert 0.7 < pulls_arr.std() < 1.4


def test_order_zero_is_biased_on_a_quadratic_response() -> None:
    fit = fit_zero_point(**stars(0, QUADRATIC), shape=SHAPE, spatial_order=0)
    zp, err = fit.predict(500.0, 500.0, None, inst_mag=-10.5)
    assert fit.response_order == 0
    assert abs(zp - float(true_zp(-10.5, QUADRATIC))) > 3 * err


def test_auto_picks_zero_on_linear_data_and_two_on_quadratic() -> None:
    flat = {k: v for k, v in stars(1, 0.0).items()}
    # a frame with no response at all: the zero point does not depend on inst_mag
    flat["cat_mag"] = flat["cat_mag"] - LINEAR * (flat["inst_mag"] - PIVOT)
    assert fit_zero_point(**flat, shape=SHAPE, spatial_order=0,
                          response_order="auto").response_order == 0
    curved = fit_zero_point(**stars(1, QUADRATIC), shape=SHAPE, spatial_order=0,
                            response_order="auto")
    assert curved.response_order == 2
    assert any("chosen automatically" in n for n in curved.notes)


def test_order_zero_default_is_unchanged() -> None:
    data = stars(2, QUADRATIC)
    plain = fit_zero_point(**data, shape=SHAPE)
    explicit = fit_zero_point(**data, shape=SHAPE, response_order=0)
    np.testing.assert_array_equal(plain.coefficients, explicit.coefficients)
    assert plain.response_order == 0 and not plain.response_extrapolated(-30.0)
    assert plain.predict(10.0, 20.0) == plain.predict(10.0, 20.0, None, inst_mag=-30.0)


def test_extrapolation_outside_the_calibrators_range() -> None:
    fit = fit_zero_point(**stars(3, QUADRATIC), shape=SHAPE, spatial_order=0,
                         response_order=2)
    lo, hi = fit.response_range
    assert -16.0 <= lo < hi <= -10.0
    assert not fit.response_extrapolated(-13.0)
    assert fit.response_extrapolated(lo - 0.1) and fit.response_extrapolated(hi + 0.1)


def test_response_order_lowered_with_few_stars() -> None:
    fit = fit_zero_point(**stars(4, QUADRATIC, n=8), shape=SHAPE, spatial_order=0,
                         response_order=2, min_stars=5)
    assert fit.response_order == 1
    assert any(n.startswith("response order lowered from 2 to 1") for n in fit.notes)


def test_bad_response_order_refused() -> None:
    with pytest.raises(InputError, match="response_order"):
        fit_zero_point(**stars(5, 0.0), shape=SHAPE, response_order=3)


@pytest.mark.parametrize(
    ("f", "d1", "d2", "expected"),
    # scipy.stats.f.sf values
    [(0.5, 1, 10, 0.4956475043831199), (3.0, 2, 17, 0.07658244462677809),
     (20.0, 1, 15, 0.00044748741624906077), (7.5, 1, 100, 0.007305752615798503)],
)
def test_f_sf_matches_reference_values(f: float, d1: int, d2: int, expected: float) -> None:
    assert f_sf(f, d1, d2) == pytest.approx(expected, rel=1e-10)


def test_regularized_beta_symmetry() -> None:
    assert regularized_beta(0.5, 10.0, 10.0) == pytest.approx(0.5, abs=1e-12)
    assert regularized_beta(0.3, 2.0, 5.0) == pytest.approx(1 - regularized_beta(0.7, 5.0, 2.0))
