"""Cross-matching: known permutations with jitter, uniqueness, sky geometry."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from skyphot.core.matching import match_nearest, match_sky
from skyphot.errors import InputError


def _greedy_reference(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, radius: float
) -> set[tuple[int, int]]:
    """Brute-force greedy assignment: all pairs by increasing distance."""
    d = np.hypot(x1[:, None] - x2[None, :], y1[:, None] - y2[None, :])
    i, j = np.nonzero(d <= radius)
    order = np.argsort(d[i, j], kind="stable")
    taken1: set[int] = set()
    taken2: set[int] = set()
    pairs = set()
    for a, b in zip(i[order], j[order], strict=True):
        if a not in taken1 and b not in taken2:
            pairs.add((int(a), int(b)))
            taken1.add(int(a))
            taken2.add(int(b))
    return pairs


def test_recovers_known_permutation_with_jitter() -> None:
    rng = np.random.default_rng(1)
    n = 500
    x1, y1 = rng.uniform(0, 1000, n), rng.uniform(0, 1000, n)
    perm = rng.permutation(n)
    x2 = x1[perm] + rng.normal(0, 0.1, n)
    y2 = y1[perm] + rng.normal(0, 0.1, n)
    i1, i2, dist = match_nearest(x1, y1, x2, y2, radius=1.0)
    # A few stars closer than ~1 px to a neighbour may swap; almost all must be right.
    assert i1.size >= n - 5
    assert np.mean(perm[i2] == i1) > 0.99
    assert np.all(np.diff(i1) > 0)  # sorted by i1, each once
    assert np.unique(i2).size == i2.size
    np.testing.assert_allclose(dist, np.hypot(x1[i1] - x2[i2], y1[i1] - y2[i2]))


def test_closer_pair_wins_conflict_and_radius_is_respected() -> None:
    x1, y1 = np.array([0.0, 0.6, 10.0]), np.array([0.0, 0.0, 0.0])
    x2, y2 = np.array([0.5, 13.0]), np.array([0.0, 0.0])
    i1, i2, dist = match_nearest(x1, y1, x2, y2, radius=2.0)
    assert i1.tolist() == [1] and i2.tolist() == [0]
    assert dist[0] == pytest.approx(0.1)


def test_equals_brute_force_greedy_assignment() -> None:
    rng = np.random.default_rng(7)
    # Dense lists: many conflicts within the radius.
    x1, y1 = rng.uniform(0, 30, 200), rng.uniform(0, 30, 200)
    x2, y2 = rng.uniform(0, 30, 180), rng.uniform(0, 30, 180)
    i1, i2, _ = match_nearest(x1, y1, x2, y2, radius=0.8)
    expected = _greedy_reference(x1, y1, x2, y2, 0.8)
    got = set(zip(i1.tolist(), i2.tolist(), strict=True))
    assert len(expected) > 30  # with many conflicts: 1.5 candidates per matched point
    assert got == expected


def test_non_finite_positions_never_match_and_empty_inputs() -> None:
    x1 = np.array([0.0, np.nan, 5.0])
    y1 = np.array([0.0, 1.0, 5.0])
    i1, i2, _ = match_nearest(x1, y1, np.array([0.0, 0.0]), np.array([1.0, 0.2]), radius=3)
    assert i1.tolist() == [0] and i2.tolist() == [1]
    e1, e2, ed = match_nearest(np.zeros(0), np.zeros(0), x1, y1, radius=1.0)
    assert e1.size == e2.size == ed.size == 0


def test_bad_arguments_raise_input_error() -> None:
    with pytest.raises(InputError, match="differ in length"):
        match_nearest(np.zeros(3), np.zeros(2), np.zeros(1), np.zeros(1), radius=1.0)
    with pytest.raises(InputError, match="radius must be positive"):
        match_nearest(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), radius=0.0)


@pytest.mark.parametrize(("ra0", "dec0"), [(0.0, 10.0), (120.0, 89.99), (359.999, -45.0)])
def test_match_sky_separations_are_exact_across_ra_zero_and_poles(
    ra0: float, dec0: float
) -> None:
    rng = np.random.default_rng(3)
    n = 300
    c1 = SkyCoord(ra0, dec0, unit="deg").directional_offset_by(
        rng.uniform(0, 360, n) * u.deg, rng.uniform(0, 0.05, n) * u.deg
    )
    ra1, dec1 = c1.ra.deg, c1.dec.deg
    c2 = c1.directional_offset_by(
        rng.uniform(0, 360, n) * u.deg, rng.uniform(0, 0.8, n) * u.arcsec
    )
    perm = rng.permutation(n)
    ra2, dec2 = c2.ra.deg[perm], c2.dec.deg[perm]
    i1, i2, sep = match_sky(ra1, dec1, ra2, dec2, radius_arcsec=1.0)
    assert i1.size >= n - 3
    assert np.mean(perm[i2] == i1) > 0.99
    truth = SkyCoord(ra1[i1], dec1[i1], unit="deg").separation(
        SkyCoord(ra2[i2], dec2[i2], unit="deg")
    ).arcsec
    np.testing.assert_allclose(sep, truth, atol=1e-6)
    assert sep.max() <= 1.0
