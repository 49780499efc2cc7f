"""One-to-one cross-matching of two position lists, in pixels or on the sky."""

from __future__ import annotations

import numpy as np

from skyphot.core.neighbours import nearest_within
from skyphot.errors import InputError

_DEG = np.pi / 180.0


def _unique_pairs(
    i1: np.ndarray, i2: np.ndarray, dist: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy one-to-one assignment: shortest candidate pairs first.

    Each round accepts the pairs that are the closest candidate of both their members
    (the greedy algorithm would accept them too) and drops every candidate sharing a member
    with an accepted pair; the globally shortest pair is always accepted, so it terminates.
    """
    keep1: list[np.ndarray] = []
    keep2: list[np.ndarray] = []
    keepd: list[np.ndarray] = []
    order = np.argsort(dist, kind="stable")
    i1, i2, dist = i1[order], i2[order], dist[order]
    while i1.size:
        first1 = np.zeros(i1.size, bool)
        first1[np.unique(i1, return_index=True)[1]] = True
        first2 = np.zeros(i1.size, bool)
        first2[np.unique(i2, return_index=True)[1]] = True
        accept = first1 & first2
        keep1.append(i1[accept])
        keep2.append(i2[accept])
        keepd.append(dist[accept])
        taken = np.isin(i1, i1[accept]) | np.isin(i2, i2[accept])
        i1, i2, dist = i1[~taken], i2[~taken], dist[~taken]
    if not keep1:
        return np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0, float)
    out1, out2, outd = np.concatenate(keep1), np.concatenate(keep2), np.concatenate(keepd)
    order = np.argsort(out1, kind="stable")
    return out1[order].astype(np.intp), out2[order].astype(np.intp), outd[order]


def _check(name: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, float).ravel()
    b = np.asarray(b, float).ravel()
    if a.shape != b.shape:
        raise InputError(
            f"{name}: coordinate arrays differ in length ({a.size} and {b.size}); "
            "pass one value per source"
        )
    return a, b


def _match_points(
    p1: np.ndarray, p2: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ok1 = np.all(np.isfinite(p1), axis=1)
    ok2 = np.all(np.isfinite(p2), axis=1)
    idx1 = np.flatnonzero(ok1)
    idx2 = np.flatnonzero(ok2)
    if not radius > 0:
        raise InputError(f"match radius must be positive, got {radius}")
    if idx1.size == 0 or idx2.size == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0, float)
    # A handful of neighbours is enough: a point with more candidates than that within
    # the radius cannot be matched reliably anyway.
    rows, cols, dist = nearest_within(p1[idx1], p2[idx2], radius, k=4)
    a, b, d = _unique_pairs(rows, cols, dist)
    return idx1[a], idx2[b], d


def match_nearest(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, *, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique nearest pairs between two planar position lists.

    Returns ``(i1, i2, distance)``: indices into list 1 and list 2 and the separation (same
    unit as the inputs, e.g. pixels), for pairs closer than ``radius``. Every index occurs at
    most once; closer pairs win conflicts. Non-finite positions never match. Sorted by i1.
    """
    x1, y1 = _check("match_nearest", x1, y1)
    x2, y2 = _check("match_nearest", x2, y2)
    return _match_points(np.column_stack([x1, y1]), np.column_stack([x2, y2]), float(radius))


def _unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    a, d = ra * _DEG, dec * _DEG
    cd = np.cos(d)
    return np.column_stack([cd * np.cos(a), cd * np.sin(a), np.sin(d)])


def match_sky(
    ra1: np.ndarray,
    dec1: np.ndarray,
    ra2: np.ndarray,
    dec2: np.ndarray,
    *,
    radius_arcsec: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique nearest pairs between two sky position lists (degrees).

    Returns ``(i1, i2, separation_arcsec)`` for pairs closer than ``radius_arcsec``; exact
    great-circle separations, valid at the poles and across RA = 0.
    """
    ra1, dec1 = _check("match_sky", ra1, dec1)
    ra2, dec2 = _check("match_sky", ra2, dec2)
    angle = min(float(radius_arcsec) / 3600.0 * _DEG, np.pi)
    chord = 2.0 * np.sin(angle / 2.0)
    i1, i2, chord_d = _match_points(_unit_vectors(ra1, dec1), _unit_vectors(ra2, dec2), chord)
    sep = 2.0 * np.arcsin(np.clip(chord_d / 2.0, 0.0, 1.0)) / _DEG * 3600.0
    return i1, i2, sep
