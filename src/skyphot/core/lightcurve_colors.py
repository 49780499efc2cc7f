"""Colours of a transient from its own multi-band light curve, for the colour term.

A point calibrated with colour term ``C`` on colour ``c1 - c2`` has
``mag = mag_nocolor + C * colour``, where ``mag_nocolor`` (instrumental magnitude plus the
zero point at the target) does not depend on the colour. When the light curve holds
detections in ``c1`` and ``c2`` within ``window_d`` days of a point's epoch, each band's
magnitude is interpolated at that epoch (linearly between the nearest detections before and
after it, or the nearest one when the epoch is not bracketed) and their difference is the
point's colour. Those magnitudes depend on the colours in turn, so the solution is iterated
until no colour changes by more than ``tolerance`` (a contraction for the |C| < 1 of real
filters). Points without both bands nearby keep their fallback colour, and a colour the
observer gave (``fallback_source == "given"``) is never replaced.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ColorPoint:
    """One point as the colour solution needs it (magnitudes in the point's system)."""

    key: int
    mjd: float
    band: str  # catalog band the point is calibrated to
    color_bands: tuple[str, str] | None  # (c1, c2) of the colour term
    color_term: float | None  # C; None: no colour term
    mag_nocolor: float | None  # None: an upper limit
    magerr_nocolor: float | None
    limit_nocolor: float | None
    fallback_color: float | None  # the colour used without the light curve
    fallback_source: str  # e.g. "calibrators_median" or "given"


@dataclass(frozen=True)
class ColorSolution:
    """A point re-calibrated with its colour."""

    key: int
    color: float | None
    color_err: float | None
    color_source: str  # "light_curve" or the fallback's source
    color_points: tuple[int, ...]  # keys of the points the colour came from
    mag: float | None
    magerr: float | None
    limiting_mag: float | None


@dataclass(frozen=True)
class ColorIteration:
    """The converged solution and how it got there."""

    solutions: dict[int, ColorSolution]
    iterations: int
    max_change: float  # largest colour change of the last iteration, mag
    converged: bool


def _apply(point: ColorPoint, color: float | None) -> tuple[float | None, float | None]:
    shift = (point.color_term or 0.0) * (color or 0.0)
    mag = None if point.mag_nocolor is None else point.mag_nocolor + shift
    limit = None if point.limit_nocolor is None else point.limit_nocolor + shift
    return mag, limit


def _band_at(
    band: str, mjd: float, mags: dict[int, float], errs: dict[int, float],
    by_band: dict[str, tuple[list[float], list[ColorPoint]]], window_d: float,
) -> tuple[float, float, tuple[int, ...]] | None:
    """Magnitude of ``band`` at ``mjd`` from detections within the window, its error and the
    points used; None when there are none. ``by_band``: each band's points sorted by time."""
    if band not in by_band:
        return None
    times, ordered = by_band[band]
    lo = bisect.bisect_left(times, mjd - window_d)
    hi = bisect.bisect_right(times, mjd + window_d)
    near = [p for p in ordered[lo:hi] if p.key in mags]
    if not near:
        return None
    before = [p for p in near if p.mjd <= mjd]
    after = [p for p in near if p.mjd >= mjd]
    if before and after:
        a = max(before, key=lambda p: p.mjd)
        b = min(after, key=lambda p: p.mjd)
        if a.key == b.key or b.mjd == a.mjd:
            return mags[a.key], errs[a.key], (a.key,)
        w = (mjd - a.mjd) / (b.mjd - a.mjd)
        value = (1 - w) * mags[a.key] + w * mags[b.key]
        err = math.hypot((1 - w) * errs[a.key], w * errs[b.key])
        return value, err, (a.key, b.key)
    nearest = min(near, key=lambda p: abs(p.mjd - mjd))
    return mags[nearest.key], errs[nearest.key], (nearest.key,)


def solve_colors(
    points: Sequence[ColorPoint],
    *,
    window_d: float = 1.0,
    tolerance: float = 0.005,
    max_iterations: int = 50,
) -> ColorIteration:
    """Colours from the light curve, iterated to convergence (see the module docstring)."""
    by_band: dict[str, tuple[list[float], list[ColorPoint]]] = {}
    for p in sorted(points, key=lambda q: q.mjd):
        times, ordered = by_band.setdefault(p.band, ([], []))
        times.append(p.mjd)
        ordered.append(p)
    colors: dict[int, float | None] = {p.key: p.fallback_color for p in points}
    sources: dict[int, tuple[str, tuple[int, ...], float | None]] = {
        p.key: (p.fallback_source, (), None) for p in points}
    change = math.inf
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        mags: dict[int, float] = {}
        errs: dict[int, float] = {}
        for p in points:
            mag, _ = _apply(p, colors[p.key])
            if mag is not None:
                mags[p.key] = mag
                errs[p.key] = p.magerr_nocolor if p.magerr_nocolor is not None else 0.0
        change = 0.0
        new_colors = dict(colors)
        for p in points:
            if p.color_bands is None or p.color_term is None or p.fallback_source == "given":
                continue  # a colour the observer gave is kept
            first = _band_at(p.color_bands[0], p.mjd, mags, errs, by_band, window_d)
            second = _band_at(p.color_bands[1], p.mjd, mags, errs, by_band, window_d)
            if first is None or second is None:
                continue
            color = first[0] - second[0]
            # The point's own error is already in its magerr; leave it out of the colour's.
            err = math.hypot(*(e for e, used in ((first[1], first[2]), (second[1], second[2]))
                               if used != (p.key,)))
            sources[p.key] = ("light_curve", tuple(dict.fromkeys(first[2] + second[2])), err)
            previous = colors[p.key]
            change = max(change, abs(color - previous) if previous is not None else math.inf)
            new_colors[p.key] = color
        colors = new_colors
        if change < tolerance:
            break
    solutions = {}
    for p in points:
        mag, limit = _apply(p, colors[p.key])
        source, used, color_err = sources[p.key]
        magerr = p.magerr_nocolor
        if magerr is not None and color_err is not None and p.color_term is not None:
            magerr = math.hypot(magerr, p.color_term * color_err)
        solutions[p.key] = ColorSolution(
            key=p.key, color=colors[p.key], color_err=color_err, color_source=source,
            color_points=used, mag=mag, magerr=magerr if mag is not None else None,
            limiting_mag=limit)
    return ColorIteration(solutions=solutions, iterations=iterations, max_change=change,
                          converged=change < tolerance)
