"""The flux-ratio fit against known ratios: right value, honest error, extra scatter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skyphot.core.flux_ratio import fit_flux_ratio, mean_flux_ratio
from skyphot.errors import TooFewStarsError


def _stars(seed: int, n: int, scatter: float) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 1000, n), rng.uniform(0, 1000, n)
    # a ratio of 8 with a gentle gradient across the frame
    true = -2.5 * math.log10(8.0) + 0.004 * (x / 1000 - 0.5) - 0.003 * (y / 1000 - 0.5)
    err = rng.uniform(0.002, 0.03, n)
    d = true + rng.normal(0, 1, n) * np.hypot(err, scatter)
    return d, err, x, y


def _truth_at(x: float, y: float) -> float:
    return 8.0 * 10 ** (-0.4 * (0.004 * (x / 1000 - 0.5) - 0.003 * (y / 1000 - 0.5)))


@pytest.mark.parametrize("scatter", [0.0, 0.01])
def test_ratio_and_its_error_are_honest(scatter: float) -> None:
    pulls, found = [], []
    for seed in range(40):
        d, err, x, y = _stars(seed, 150, scatter)
        fit = fit_flux_ratio(d, err, x, y, at=(300.0, 700.0), shape=(1000, 1000), max_order=1)
        pulls.append((fit.ratio / _truth_at(300.0, 700.0) - 1.0) / fit.ln_err)
        found.append(fit.intrinsic_scatter)
    assert abs(np.mean(pulls)) < 0.5
    assert 0.7 < np.std(pulls) < 1.3
    # the extra per-star scatter is found (from 150 stars each estimate is rough)
    assert float(np.median(found)) == pytest.approx(scatter, abs=0.003)


def test_outliers_are_clipped() -> None:
    d, err, x, y = _stars(1, 150, 0.0)
    d = d.copy()
    d[:8] += 0.5  # blended or variable stars
    fit = fit_flux_ratio(d, err, x, y, at=(500.0, 500.0), shape=(1000, 1000), max_order=1)
    assert fit.n_used <= 142
    assert abs(fit.ratio / _truth_at(500.0, 500.0) - 1.0) < 4 * fit.ln_err


def test_order_is_lowered_for_few_stars_and_too_few_fail() -> None:
    d, err, x, y = _stars(2, 12, 0.0)
    fit = fit_flux_ratio(d, err, x, y, at=(500.0, 500.0), shape=(1000, 1000), max_order=2)
    assert fit.order == 0
    with pytest.raises(TooFewStarsError, match="only 3 stars"):
        fit_flux_ratio(d[:3], err[:3], x[:3], y[:3], at=(0.0, 0.0), shape=(1000, 1000))


def test_mean_ratio_of_a_few_stars_is_honest_and_clips_a_variable_one() -> None:
    """Twelve stars on both frames, one of them 0.3 mag off (variable or blended): the
    ratio is right within its error over many draws, the odd star never counts."""
    pulls = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        err = rng.uniform(0.005, 0.03, 12)
        d = -2.5 * math.log10(8.0) + rng.normal(0.0, 1.0, 12) * err
        d[0] += 0.3
        est = mean_flux_ratio(d, 1.0 / err**2, min_stars=5)
        assert est.n_stars <= 11  # the clip is on the spread of d: noisier stars go too
        pulls.append(math.log(est.ratio / 8.0) / est.ln_err)
    assert abs(float(np.mean(pulls))) < 0.2
    # the error never goes below the predicted one (chi2 < 1 is not used to shrink it)
    assert 0.75 < float(np.std(pulls)) < 1.05


def test_mean_ratio_refuses_too_few_agreeing_stars() -> None:
    d = np.array([-2.25, -2.26, -2.24, -2.25, -4.0])  # the last one is far off
    with pytest.raises(TooFewStarsError, match="only 4 stars agree on the flux ratio; it needs 5"):
        mean_flux_ratio(d, np.full(d.size, 1e4), min_stars=5)
    with pytest.raises(TooFewStarsError, match="only 0 stars"):
        mean_flux_ratio(d[:4], np.full(4, 1e4), min_stars=5)
