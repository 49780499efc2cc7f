"""Colours from the light curve on a simulated reddening transient with known truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from skyphot.core.lightcurve_colors import ColorPoint, solve_colors

SIGMA = 0.02  # photometric error of every simulated point, mag
# Colour terms (exaggerated a little, so that a wrong colour shows above the noise).
TERMS = {"g": (0.12, ("g", "r")), "r": (0.06, ("g", "r")), "i": (0.09, ("r", "i"))}
ASSUMED = {("g", "r"): 0.60, ("r", "i"): 0.25}  # the calibrators' median colours


def true_mag(band: str, t: float) -> float:
    """A transient that fades and reddens: g-r from 0.10 to 0.74 over 8 days."""
    return {"g": 17.80 + 0.15 * t, "r": 17.70 + 0.07 * t, "i": 17.75 + 0.03 * t}[band]


def true_color(bands: tuple[str, str], t: float) -> float:
    return true_mag(bands[0], t) - true_mag(bands[1], t)


@dataclass
class Simulated:
    points: list[ColorPoint]
    truth: dict[int, float]  # true magnitude of each point
    true_colors: dict[int, float]


def simulate(seed: int, *, days: float = 8.0, limit_at: float | None = None) -> Simulated:
    rng = np.random.default_rng(seed)
    points, truth, colors = [], {}, {}
    key = 0
    for band, offset in (("g", 0.0), ("r", 0.2), ("i", 0.35)):
        for t in np.arange(offset, days, 0.5):
            key += 1
            term, bands = TERMS[band]
            color = true_color(bands, float(t))
            nocolor = true_mag(band, float(t)) - term * color + rng.normal(0, SIGMA)
            is_limit = limit_at is not None and band == "g" and abs(t - limit_at) < 1e-9
            points.append(ColorPoint(
                key=key, mjd=60000.0 + float(t), band=band, color_bands=bands,
                color_term=term, mag_nocolor=None if is_limit else nocolor,
                magerr_nocolor=None if is_limit else SIGMA,
                limit_nocolor=nocolor + 2.5 if is_limit else 21.0 - term * color,
                fallback_color=ASSUMED[bands], fallback_source="calibrators_median"))
            truth[key] = true_mag(band, float(t))
            colors[key] = color
    return Simulated(points, truth, colors)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_light_curve_colours_recover_the_truth(seed: int) -> None:
    sim = simulate(seed)
    result = solve_colors(sim.points, window_d=1.0, tolerance=0.005)
    assert result.converged and result.iterations <= 10 and result.max_change < 0.005
    pulls, color_errors = [], []
    for p in sim.points:
        s = result.solutions[p.key]
        assert s.color_source == "light_curve" and s.color_points
        assert s.mag is not None and s.magerr is not None and s.magerr >= SIGMA
        pulls.append((s.mag - sim.truth[p.key]) / s.magerr)
        assert s.color is not None
        color_errors.append(s.color - sim.true_colors[p.key])
    pulls_a = np.array(pulls)
    # Every final magnitude within its error of the truth, and unbiased as a whole.
    assert np.all(np.abs(pulls_a) < 4), pulls_a
    assert abs(pulls_a.mean()) < 3 / np.sqrt(len(pulls_a))
    assert 0.3 < pulls_a.std() < 1.5
    # the colours themselves: within a few times the noise of a difference of two points
    assert np.abs(np.array(color_errors)).max() < 4 * np.hypot(SIGMA, SIGMA)


def test_assumed_colour_points_are_biased_as_expected() -> None:
    sim = simulate(4)
    residual, expected = [], []
    for p in sim.points:
        assert p.mag_nocolor is not None and p.color_term is not None
        assert p.fallback_color is not None
        assumed_mag = p.mag_nocolor + p.color_term * p.fallback_color
        residual.append(assumed_mag - sim.truth[p.key])
        expected.append(p.color_term * (p.fallback_color - sim.true_colors[p.key]))
    residual_a, expected_a = np.array(residual), np.array(expected)
    # The bias is C * (assumed - true colour): up to 0.06 mag for g, well above the noise...
    assert np.abs(expected_a).max() > 2.5 * SIGMA
    # ...and it is exactly what the residuals show, within the noise.
    diff = residual_a - expected_a
    assert abs(diff.mean()) < 3 * SIGMA / np.sqrt(len(diff))
    assert diff.std() < 1.5 * SIGMA
    # Judged by their quoted errors, the assumed-colour points fail (chi2/N ~ 1 + bias^2 /
    # sigma^2, about 2 here; p < 1e-3 for 48 points); the light-curve colours pass.
    chi2_assumed = float(np.mean((residual_a / SIGMA) ** 2))
    assert chi2_assumed == pytest.approx(1 + np.mean(expected_a ** 2) / SIGMA ** 2, rel=0.35)
    assert chi2_assumed > 1.6
    solved = solve_colors(sim.points).solutions
    chi2_lc = float(np.mean([((solved[p.key].mag or 0.0) - sim.truth[p.key]) ** 2
                             / (solved[p.key].magerr or 1.0) ** 2 for p in sim.points]))
    assert chi2_lc < 1.4 and chi2_lc < chi2_assumed / 1.5


def test_a_limit_gets_its_colour_and_points_without_neighbours_keep_the_fallback() -> None:
    sim = simulate(5, limit_at=3.0)
    result = solve_colors(sim.points, window_d=1.0)
    [limit] = [p for p in sim.points if p.mag_nocolor is None]
    s = result.solutions[limit.key]
    assert s.mag is None and s.magerr is None and s.color_source == "light_curve"
    assert s.color is not None and abs(s.color - sim.true_colors[limit.key]) < 0.1
    assert limit.limit_nocolor is not None and limit.color_term is not None
    assert s.limiting_mag == pytest.approx(limit.limit_nocolor + limit.color_term * s.color)
    lonely = ColorPoint(key=999, mjd=60100.0, band="r", color_bands=("g", "r"),
                        color_term=0.06, mag_nocolor=18.0, magerr_nocolor=0.02,
                        limit_nocolor=21.0, fallback_color=0.6,
                        fallback_source="calibrators_median")
    alone = solve_colors([*sim.points, lonely], window_d=1.0).solutions[999]
    assert alone.color_source == "calibrators_median" and alone.color == 0.6
    assert alone.mag == pytest.approx(18.0 + 0.06 * 0.6) and alone.color_points == ()
    given = ColorPoint(key=998, mjd=60003.2, band="r", color_bands=("g", "r"), color_term=0.06,
                       mag_nocolor=18.0, magerr_nocolor=0.02, limit_nocolor=21.0,
                       fallback_color=0.33, fallback_source="given")
    kept = solve_colors([*sim.points, given], window_d=1.0).solutions[998]
    assert kept.color_source == "given" and kept.color == 0.33


def test_a_new_point_in_one_band_changes_the_others() -> None:
    r_point = ColorPoint(key=1, mjd=60000.0, band="r", color_bands=("g", "r"), color_term=0.06,
                         mag_nocolor=18.0, magerr_nocolor=0.02, limit_nocolor=21.0,
                         fallback_color=0.6, fallback_source="calibrators_median")
    before = solve_colors([r_point]).solutions[1]
    assert before.color_source == "calibrators_median"
    g_point = ColorPoint(key=2, mjd=60000.3, band="g", color_bands=("g", "r"), color_term=0.12,
                         mag_nocolor=18.1, magerr_nocolor=0.02, limit_nocolor=21.0,
                         fallback_color=0.6, fallback_source="calibrators_median")
    after = solve_colors([r_point, g_point]).solutions
    assert after[1].color_source == "light_curve" and after[1].color_points == (2, 1)
    # Fixed point of g = g0 + Cg (g - r), r = r0 + Cr (g - r): c = (g0 - r0) / (1 - Cg + Cr)
    color = (18.1 - 18.0) / (1 - 0.12 + 0.06)
    assert after[1].color == pytest.approx(color, abs=0.005)
    assert after[1].mag == pytest.approx(18.0 + 0.06 * color, abs=0.001)
    assert after[2].mag == pytest.approx(18.1 + 0.12 * color, abs=0.001)
