"""Re-calibrate a source's points with colours from its light curve (no pixels re-measured).

Each skyphot point keeps, in its ``calibration``, the magnitude and limit without the
colour-term contribution (``mag_nocolor``, ``limit_nocolor``), the colour term and its
colour bands, and the colour it was first calibrated with (``fallback_color``). After a
point is added or deleted, or the source's ``light_curve_colors`` switch changes, the colours
are solved again over the whole light curve (``skyphot.core.lightcurve_colors``) and every
point whose values changed is updated; a point already pushed to SkyPortal is queued again
(its SkyPortal copy is then updated, not duplicated).
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from skyphot.core.lightcurve_colors import ColorPoint, ColorSolution, solve_colors
from skyphot.db.crud import list_photometry
from skyphot.db.models import Photometry, Source
from skyphot.jobs import push

COLOR_ASSUMED = "COLOR_ASSUMED"
COLOR_ASSUMED_BIT = 16  # QualityFlag.COLOR_ASSUMED


def _color_point(point: Photometry) -> ColorPoint | None:
    cal = point.calibration or {}
    if "limit_nocolor" not in cal or cal.get("band") is None:
        return None  # not a skyphot measurement that can be re-calibrated
    bands = cal.get("color_bands")
    fallback = cal.get("fallback_color", cal.get("target_color"))
    return ColorPoint(
        key=point.id, mjd=point.mjd, band=str(cal["band"]),
        color_bands=(str(bands[0]), str(bands[1])) if bands else None,
        color_term=cal.get("color_term"), mag_nocolor=cal.get("mag_nocolor"),
        magerr_nocolor=cal.get("magerr_nocolor"), limit_nocolor=cal.get("limit_nocolor"),
        fallback_color=fallback,
        fallback_source=str(cal.get("fallback_color_source", cal.get("color_source") or "")),
    )


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, abs_tol=1e-6)


def _update(point: Photometry, solution: ColorSolution) -> bool:
    """Write the solution into the point; True when something changed."""
    cal: dict[str, Any] = dict(point.calibration or {})
    cal.setdefault("fallback_color", cal.get("target_color"))
    cal.setdefault("fallback_color_source", cal.get("color_source"))
    names = [n for n in cal.get("flag_names") or [] if n != COLOR_ASSUMED]
    flags = int(cal.get("flags") or 0) & ~COLOR_ASSUMED_BIT
    if solution.color_source == "calibrators_median":
        names.append(COLOR_ASSUMED)
        flags |= COLOR_ASSUMED_BIT
    changed = not (_close(point.mag, solution.mag) and _close(point.magerr, solution.magerr)
                   and _close(point.limiting_mag, solution.limiting_mag)
                   and cal.get("color_source") == solution.color_source)
    if point.mag is not None and solution.mag is not None and point.flux is not None:
        # Flux follows the magnitude: same factor for flux and error, whatever the system.
        factor = 10 ** (-0.4 * (solution.mag - point.mag))
        point.flux = point.flux * factor
        point.fluxerr = None if point.fluxerr is None else point.fluxerr * factor
    point.mag, point.magerr = solution.mag, solution.magerr
    point.limiting_mag = solution.limiting_mag
    cal.update({
        "target_color": solution.color, "color_err": solution.color_err,
        "color_source": solution.color_source, "color_points": list(solution.color_points),
        "flag_names": names, "flags": flags,
    })
    point.calibration = cal
    return changed


def recalibrate_source(session: Session, source: Source, *, window_d: float = 1.0,
                       tolerance: float = 0.005) -> list[int]:
    """Solve the source's colours again and update its points; returns the changed ids.

    With ``source.light_curve_colors`` off every point goes back to its fallback colour.
    The caller commits.
    """
    # Two jobs of one source ending together: the second waits and sees the first's point
    # (PostgreSQL row lock; SQLite serialises writers anyway).
    session.execute(select(Source.id).where(Source.id == source.id).with_for_update())
    points = list_photometry(session, source.id)
    usable = [(p, cp) for p in points if (cp := _color_point(p)) is not None]
    if not usable:
        return []
    color_points = [cp for _, cp in usable]
    if source.light_curve_colors:
        solutions = solve_colors(color_points, window_d=window_d, tolerance=tolerance).solutions
    else:
        solutions = {}
        for cp in color_points:
            mag = (None if cp.mag_nocolor is None
                   else cp.mag_nocolor + (cp.color_term or 0.0) * (cp.fallback_color or 0.0))
            limit = (None if cp.limit_nocolor is None
                     else cp.limit_nocolor + (cp.color_term or 0.0) * (cp.fallback_color or 0.0))
            solutions[cp.key] = ColorSolution(
                key=cp.key, color=cp.fallback_color, color_err=None,
                color_source=cp.fallback_source, color_points=(), mag=mag,
                magerr=cp.magerr_nocolor if mag is not None else None, limiting_mag=limit)
    changed = []
    for point, _ in usable:
        if _update(point, solutions[point.id]):
            changed.append(point.id)
            if point.skyportal_state in (push.PUSHED, push.FAILED) \
                    and point.skyportal_id is not None:
                push.mark_pending(point)  # SkyPortal's copy is updated with the new values
    session.flush()
    return changed
