"""The NumPy stand-ins for scipy (neighbour searches, root finding, Poisson tail, running
median) give scipy's answers; scipy is the reference here, so the tests may import it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.optimize import brentq
from scipy.spatial import cKDTree
from scipy.special import pdtrc

from skyphot.core.masking import _running_median
from skyphot.core.neighbours import nearest_within, pairs_within, pairs_within_one
from skyphot.core.stats import bracketed_root, poisson_sf
from skyphot.errors import InputError


def _clustered(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Points with clumps and exact duplicates, where cell-edge and tie mistakes show."""
    pts = rng.uniform(0.0, 50.0, size=(n, dim))
    pts[: n // 5] = pts[n // 5 : 2 * (n // 5)] + rng.normal(0.0, 0.3, size=(n // 5, dim))
    pts[-3:] = pts[:3]
    return pts


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("radius", [0.05, 1.0, 7.0])
def test_pairs_within_finds_exactly_the_kdtree_pairs(dim: int, radius: float) -> None:
    rng = np.random.default_rng(dim * 100 + int(radius * 10))
    a, b = _clustered(rng, 400, dim), _clustered(rng, 300, dim)
    a[5] = np.nan  # a non-finite row has no neighbours
    i, j, d = pairs_within(a, b, radius)
    got = set(zip(i.tolist(), j.tolist(), strict=True))
    finite = np.flatnonzero(np.all(np.isfinite(a), axis=1))
    near = cKDTree(b).query_ball_point(a[finite], radius)
    want = {(int(finite[k]), int(m)) for k, found in enumerate(near) for m in found}
    assert got == want and len(got) == i.size  # no pair missed or repeated
    assert np.allclose(d, np.linalg.norm(a[i] - b[j], axis=1))


def test_pairs_within_one_matches_query_pairs() -> None:
    rng = np.random.default_rng(3)
    pts = _clustered(rng, 500, 2)
    want = cKDTree(pts).query_pairs(2.0, output_type="ndarray")
    want = want[np.lexsort((want[:, 1], want[:, 0]))]
    assert np.array_equal(pairs_within_one(pts, 2.0), want)


def test_tiny_radius_over_a_wide_spread_keeps_exact_pairs() -> None:
    # unit vectors with a 1 mas chord: the grid must coarsen rather than overflow its keys
    rng = np.random.default_rng(4)
    v = rng.normal(size=(300, 3))
    v /= np.linalg.norm(v, axis=1)[:, None]
    w = v + rng.normal(0.0, 2e-9, size=v.shape)
    radius = 1e-3 / 206265.0
    i, j, _ = pairs_within(v, w, radius)
    near = cKDTree(w).query_ball_point(v, radius)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == {
        (k, m) for k, found in enumerate(near) for m in found
    }


def test_nearest_within_keeps_the_k_closest_per_point() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0, 20, size=(200, 2)), rng.uniform(0, 20, size=(400, 2))
    i, j, d = nearest_within(a, b, 1.5, k=3)
    dist, idx = cKDTree(b).query(a, k=3, distance_upper_bound=1.5)
    ok = np.isfinite(dist)
    rows = np.broadcast_to(np.arange(200)[:, None], ok.shape)[ok]
    assert np.array_equal(i, rows) and np.array_equal(j, idx[ok])
    assert np.allclose(d, dist[ok])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InputError):
        pairs_within(np.zeros((3, 2)), np.zeros((3, 3)), 1.0)
    with pytest.raises(InputError):
        pairs_within(np.zeros((3, 2)), np.zeros((3, 2)), 0.0)
    with pytest.raises(InputError):
        bracketed_root(lambda s: s + 1.0, 0.0, 1.0)  # no sign change


def test_bracketed_root_agrees_with_brentq() -> None:
    def f(s: float) -> float:
        return float(np.median(np.array([4.0, 9.0, 1.0]) / (1.0 + s * s)) - 0.4549)

    assert bracketed_root(f, 0.0, 10.0) == pytest.approx(brentq(f, 0.0, 10.0), abs=1e-11)
    assert bracketed_root(np.cos, 0.0, 3.0, xtol=1e-7) == pytest.approx(np.pi / 2, abs=1e-7)


def test_poisson_tail_agrees_with_pdtrc() -> None:
    for mu in (0.02, 1.0, 6.5, 40.0, 400.0):
        for k in range(0, int(3 * mu) + 40):
            want = float(pdtrc(k, mu))
            assert poisson_sf(k, mu) == pytest.approx(want, rel=1e-9, abs=1e-300)
    assert poisson_sf(-1, 3.0) == 1.0 and poisson_sf(2, 0.0) == 0.0


@pytest.mark.parametrize("window", [9, 31])
def test_running_median_is_scipys_median_filter(window: int) -> None:
    rng = np.random.default_rng(window)
    values = rng.normal(size=(120, 4)).astype(np.float32)
    values[rng.random(values.shape) < 0.05] = np.inf
    want = ndimage.median_filter(values, size=(window, 1), mode="nearest")
    assert np.array_equal(_running_median(values, window), want)
    short = values[:7]  # shorter than the window: edge replication on both ends
    assert np.array_equal(
        _running_median(short, window), ndimage.median_filter(short, size=(window, 1),
                                                              mode="nearest")
    )
