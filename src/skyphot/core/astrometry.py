"""Astrometric refinement: match detections to a reference catalog and fit TAN + SIP.

The header WCS is only a starting guess. ``refine_wcs`` (1) finds the header's shift,
rotation and scale error by voting on offsets between the brightest detections and the
brightest catalog stars, (2) matches all stars within a shrinking radius and (3) fits the
tangent-plane coordinates of the catalog stars as a polynomial of pixel position by linear
least squares with sigma clipping. The linear terms are the CD matrix, the higher ones SIP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.coordinates import ICRS
from astropy.wcs import WCS

from skyphot.core.matching import match_nearest
from skyphot.core.stats import poisson_sf, solve_least_squares
from skyphot.core.wcs_utils import (
    build_tan_sip_wcs,
    celestial_frame,
    celestial_wcs,
    express_in_frame,
    footprint_radius_deg,
    gnomonic,
    inverse_gnomonic,
    pixel_scale_arcsec,
    pixel_to_world,
    poly_design,
    poly_exponents,
    world_to_pixel,
)
from skyphot.errors import AstrometryError, InputError

__all__ = [
    "AstrometricSolution",
    "footprint_radius_deg",
    "pixel_scale_arcsec",
    "pixel_to_world",
    "refine_wcs",
    "world_to_pixel",
]


@dataclass(frozen=True)
class AstrometricSolution:
    """A fitted WCS and how well it fits.

    ``matched_source`` / ``matched_catalog`` are integer indices into the detection list and
    the catalog for the pairs used in the final fit.
    """

    wcs: WCS
    n_matched: int
    rms_arcsec: float
    matched_fraction: float
    matched_source: np.ndarray
    matched_catalog: np.ndarray
    residual_x_arcsec: np.ndarray  # per used pair, (catalog - fit) along RA*cos(dec)
    residual_y_arcsec: np.ndarray  # per used pair, along Dec
    method: str  # "refine", "header", "scamp", "astrometry.net", ...

    @classmethod
    def unrefined(cls, wcs: WCS) -> AstrometricSolution:
        """The header WCS taken as is (method "header"): no matches, no residuals."""
        empty = np.zeros(0, dtype=np.intp)
        return cls(
            wcs=wcs,
            n_matched=0,
            rms_arcsec=float("nan"),
            matched_fraction=float("nan"),
            matched_source=empty,
            matched_catalog=empty,
            residual_x_arcsec=np.zeros(0),
            residual_y_arcsec=np.zeros(0),
            method="header",
        )


# Search ranges of the coarse step: a little beyond the stated header errors (1 deg, 2 %).
_MAX_ROTATION_RAD = np.deg2rad(1.5)
_MAX_SCALE_ERROR = 0.03
# Largest smear (px) of a true offset peak caused by the rotation/scale grid step.
_GRID_SMEAR_PX = 8.0
# Extra slack (px) for distortion the header does not describe and centroid errors.
_SLACK_PX = 3.0
_N_BRIGHT = 150
_MAX_BINS = 200
_N_CAT_NO_MAG = 1500
# False-alarm probability of the coarse offset peak over the whole search.
_FALSE_ALARM = 1e-3
# Stars per fitted parameter (per axis) before a polynomial order is allowed.
_STARS_PER_TERM = 3
# 2-D clip radius, in per-axis sigmas, rejecting as few good stars (0.27 %) as 3 sigma in 1-D.
_CLIP_SIGMA = 3.44
# No catalog or centroid is better than a milliarcsecond: never clip tighter than that.
_FLOOR_DEG = 1e-3 / 3600.0


@dataclass(frozen=True)
class _Coarse:
    rotation: float  # rad, applied to header pixel positions about the centre
    scale: float
    dx: float  # px
    dy: float
    peak: int
    tolerance_px: float


def _poisson_isf(q: float, mu: float) -> int:
    """Smallest k with P(X > k) <= q for X ~ Poisson(mu) (scipy.stats' isf without the
    import of scipy)."""
    k = int(mu)
    while poisson_sf(k, mu) > q:
        k += 1
    while k > 0 and poisson_sf(k - 1, mu) <= q:
        k -= 1
    return k


def _box3_sum(counts: np.ndarray) -> np.ndarray:
    """Sum over each cell's 3x3 neighbourhood, zero outside (exact for integer counts)."""
    padded = np.pad(counts, 1)
    across = padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]
    return np.asarray(across[:-2] + across[1:-1] + across[2:])


def _hint(max_offset_arcsec: float) -> str:
    return (
        f"is the header WCS more than {max_offset_arcsec:g} arcsec off? use astrometry.net "
        "blind solving or a larger max_offset"
    )


def _coarse_offset(
    x: np.ndarray,
    y: np.ndarray,
    xc: np.ndarray,
    yc: np.ndarray,
    *,
    centre: tuple[float, float],
    half_diag: float,
    max_offset_px: float,
    n_catalog: int,
    max_offset_arcsec: float,
) -> _Coarse:
    """Best (rotation, scale, shift) taking header catalog positions onto detections.

    ``x, y``: bright detections; ``xc, yc``: bright catalog stars through the header WCS.
    Every detection-catalog pair votes for its offset in a 2-D histogram, one histogram per
    trial rotation/scale; the true solution is a peak far above the Poisson level of chance
    pairs.
    """
    step = min(np.deg2rad(0.5), _GRID_SMEAR_PX / half_diag)
    n_rot = int(np.ceil(_MAX_ROTATION_RAD / step))
    n_scl = int(np.ceil(_MAX_SCALE_ERROR / step))
    grid_rot, grid_scl = np.meshgrid(np.arange(-n_rot, n_rot + 1), np.arange(-n_scl, n_scl + 1))
    k_rot, k_scl = grid_rot.ravel(), grid_scl.ravel()
    rotation, scale = k_rot * step, 1.0 + k_scl * step
    smear = half_diag * step * 0.75  # half a step in rotation and in scale, added in quadrature
    bin_px = max(1.0, 2.0 * (smear + _SLACK_PX) / 3.0)
    # A large search range (in pixels) is covered with coarser bins, never more than
    # _MAX_BINS per axis: memory and time stay bounded; the matching loop refines.
    bin_px = max(bin_px, 2.0 * (max_offset_px + bin_px) / _MAX_BINS)
    half = max_offset_px + bin_px
    n_bin = int(np.ceil(2 * half / bin_px))

    dxc, dyc = xc - centre[0], yc - centre[1]
    # Offsets in bin units; one trial at a time keeps the arrays in cache.
    xb, yb = (x + half) / bin_px, (y + half) / bin_px
    cos_t, sin_t = np.cos(rotation) * scale / bin_px, np.sin(rotation) * scale / bin_px
    # Prefer the smallest correction among equal peaks (small frames cannot tell them apart).
    penalty = 1e-3 * (np.abs(k_rot) + np.abs(k_scl))
    best = (-np.inf, 0, 0, 0)
    total = 0.0
    for t in range(rotation.size):
        ox = xb[:, None] - (centre[0] / bin_px + cos_t[t] * dxc - sin_t[t] * dyc)[None, :]
        oy = yb[:, None] - (centre[1] / bin_px + sin_t[t] * dxc + cos_t[t] * dyc)[None, :]
        ok = (ox >= 0) & (ox < n_bin) & (oy >= 0) & (oy < n_bin)
        flat = oy[ok].astype(np.int64) * n_bin + ox[ok].astype(np.int64)
        counts = np.bincount(flat, minlength=n_bin * n_bin).reshape(n_bin, n_bin)
        boxed = _box3_sum(counts).astype(float)
        total += float(boxed.sum())
        k = int(np.argmax(boxed))
        if boxed.flat[k] - penalty[t] > best[0]:
            best = (float(boxed.flat[k]) - penalty[t], t, k // n_bin, k % n_bin)
    _, best_t, best_iy, best_ix = best
    peak = round(best[0] + penalty[best_t])
    n_boxes = rotation.size * n_bin * n_bin
    chance = total / n_boxes
    threshold = max(_poisson_isf(_FALSE_ALARM / n_boxes, max(chance, 1e-3)) + 1, 4)
    if peak < threshold:
        raise AstrometryError(
            f"matched {peak} of {n_catalog} bright catalog stars at the best trial offset, "
            f"no more than chance (need {threshold}); {_hint(max_offset_arcsec)}"
        )
    # Refine the shift with the pairs voting for the peak box.
    c, s = np.cos(rotation[best_t]) * scale[best_t], np.sin(rotation[best_t]) * scale[best_t]
    px = centre[0] + c * dxc - s * dyc
    py = centre[1] + s * dxc + c * dyc
    ox = (x[:, None] - px[None, :]).ravel()
    oy = (y[:, None] - py[None, :]).ravel()
    cx = (best_ix + 0.5) * bin_px - half
    cy = (best_iy + 0.5) * bin_px - half
    inbox = (np.abs(ox - cx) <= 1.5 * bin_px) & (np.abs(oy - cy) <= 1.5 * bin_px)
    return _Coarse(
        rotation=float(rotation[best_t]),
        scale=float(scale[best_t]),
        dx=float(np.median(ox[inbox])),
        dy=float(np.median(oy[inbox])),
        peak=peak,
        tolerance_px=1.5 * bin_px + _SLACK_PX,
    )


def _supported_order(n_pairs: int, requested: int) -> int:
    order = max(1, requested)
    while order > 1 and n_pairs < _STARS_PER_TERM * (order + 1) * (order + 2) // 2:
        order -= 1
    return order


def _robust_poly_fit(
    design: np.ndarray, target: np.ndarray, start: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares of target (n, 2) on design (n, p) with 2-D sigma clipping.

    ``start`` is the initial set of pairs to trust. Returns coefficients (p, 2), the used
    mask and the residuals (n, 2) of every pair.
    """
    used = start.copy()
    coeffs = np.zeros((design.shape[1], 2))
    resid = target.copy()
    if used.sum() < design.shape[1]:
        used = np.ones(design.shape[0], bool)
    for _ in range(8):
        if used.sum() < design.shape[1]:
            break
        coeffs = solve_least_squares(design[used], target[used])
        resid = target - design @ coeffs
        dist = np.hypot(resid[:, 0], resid[:, 1])
        # Median of a 2-D Gaussian radius is 1.1774 sigma (per axis).
        sigma = float(np.median(dist[used])) / 1.1774
        new = dist <= max(_CLIP_SIGMA * sigma, _FLOOR_DEG)
        if np.array_equal(new, used):
            break
        used = new
    return coeffs, used, resid


def refine_wcs(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
    *,
    wcs: WCS,
    shape: tuple[int, int],
    mag: np.ndarray | None = None,
    sip_order: int = 2,
    max_offset_arcsec: float = 60.0,
    match_radius_arcsec: float = 2.0,
    min_matches: int = 6,
    max_rms_arcsec: float = 1.5,
) -> AstrometricSolution:
    """Refine an approximate header WCS against a reference catalog.

    Inputs: detections at 0-based pixel ``x, y`` with ``flux`` (any unit, used to pick the
    brightest), catalog ``ra, dec`` (degrees) with optional ``mag``, the header WCS guess
    and the image ``shape`` (ny, nx). The returned WCS is TAN, or TAN-SIP up to
    ``sip_order`` when enough stars support it (``3 x`` the terms per axis). ``rms_arcsec``
    is the 2-D rms of the catalog-minus-fit residuals of the pairs used. The input WCS is
    not modified.

    Raises ``AstrometryError`` when too few stars match or the fit is worse than
    ``max_rms_arcsec``; ``WCSError`` when ``wcs`` has no sky axes.

    Steps: (1) the catalog near the frame through the header; (2) a coarse shift, rotation
    and scale from the brightest stars; (3) matching within a shrinking radius and a
    tangent-plane polynomial fit; (4) the final fit, its checks and the TAN-SIP WCS.
    """
    xd, yd, fd = (np.asarray(a, float).ravel() for a in (x, y, flux))
    rc, dc = (np.asarray(a, float).ravel() for a in (ra, dec))
    mc = None if mag is None else np.asarray(mag, float).ravel()
    if not xd.size == yd.size == fd.size:
        raise InputError(f"x, y, flux differ in length ({xd.size}, {yd.size}, {fd.size})")
    if rc.size != dc.size or (mc is not None and mc.size != rc.size):
        raise InputError("catalog ra, dec (and mag) must have the same length")
    ny, nx = (int(v) for v in shape)
    if nx < 1 or ny < 1:
        raise InputError(f"image shape must be positive (ny, nx), got {shape}")
    header = celestial_wcs(wcs)
    geo = _Geometry(
        nx=nx, ny=ny, scale_px=pixel_scale_arcsec(header),
        centre=((nx - 1) / 2.0, (ny - 1) / 2.0),
        half_diag=max(float(np.hypot(nx, ny)) / 2.0, 10.0), hint=_hint(max_offset_arcsec),
    )
    det_idx = np.flatnonzero(np.isfinite(xd) & np.isfinite(yd) & np.isfinite(fd))
    if det_idx.size < min_matches:
        raise AstrometryError(
            f"only {det_idx.size} detections to match; need {min_matches} — lower the "
            "detection threshold or use the header WCS as is (astrometry method 'header')"
        )
    xc_h, yc_h = world_to_pixel(header, rc, dc)
    cat_idx, on_frame = _catalog_near_frame(xc_h, yc_h, geo, max_offset_arcsec, min_matches)
    ra0, dec0, xi_d, eta_d, tolerance_px = _coarse_tangent_plane(
        header, xd, yd, fd, det_idx, xc_h, yc_h, mc, cat_idx, on_frame, geo, max_offset_arcsec
    )
    norm = max(nx, ny) / 2.0
    u = (xd[det_idx] - geo.centre[0]) / norm
    v = (yd[det_idx] - geo.centre[1]) / norm
    final_radius = match_radius_arcsec / 3600.0
    radius = max(final_radius, tolerance_px * geo.scale_px / 3600.0)
    ra0, dec0, order, used_det, used_cat = _match_and_fit(
        rc, dc, cat_idx, det_idx, u, v, xi_d, eta_d, ra0, dec0,
        radius=radius, final_radius=final_radius, sip_order=sip_order,
        min_matches=min_matches, n_on_frame=on_frame.size, hint=geo.hint,
    )

    # (4) Final fit about the converged tangent point, without a constant term.
    xi_c, eta_c = gnomonic(rc[used_cat], dc[used_cat], ra0, dec0)
    k_used = np.searchsorted(det_idx, used_det)
    exps = poly_exponents(order, min_degree=1)
    design = poly_design(u[k_used], v[k_used], exps)
    target = np.column_stack([xi_c, eta_c])
    coeffs, keep, resid = _robust_poly_fit(design, target, np.ones(used_det.size, bool))
    used_det, used_cat, resid = used_det[keep], used_cat[keep], resid[keep] * 3600.0
    n_used = int(used_det.size)
    rms = float(np.sqrt(np.mean(np.sum(resid**2, axis=1)))) if n_used else math.nan
    _check_final_fit(
        n_used, rms, n_detections=det_idx.size, n_on_frame=on_frame.size, geo=geo,
        min_matches=min_matches, match_radius_arcsec=match_radius_arcsec,
        max_rms_arcsec=max_rms_arcsec,
    )
    new_wcs = _tan_sip_from_poly(coeffs, exps, norm, ra0, dec0, geo)
    # The fit is made in ICRS (the catalog's system); the solution keeps the frame's own
    # celestial system (galactic, FK4 B1950, ...), which is the same mapping rotated.
    frame = celestial_frame(header)
    if not isinstance(frame, ICRS):
        new_wcs = express_in_frame(new_wcs, frame)
    fraction = _matched_fraction(
        new_wcs,
        rc[cat_idx],
        dc[cat_idx],
        None if mc is None else mc[cat_idx],
        None if mc is None else mc[used_cat],
        n_used=n_used,
        n_detections=det_idx.size,
        shape=(ny, nx),
    )
    return AstrometricSolution(
        wcs=new_wcs,
        n_matched=n_used,
        rms_arcsec=rms,
        matched_fraction=fraction,
        matched_source=used_det,
        matched_catalog=used_cat,
        residual_x_arcsec=resid[:, 0].copy(),
        residual_y_arcsec=resid[:, 1].copy(),
        method="refine",
    )


@dataclass(frozen=True)
class _Geometry:
    """The frame as the refinement sees it."""

    nx: int
    ny: int
    scale_px: float  # header pixel scale, arcsec/px
    centre: tuple[float, float]  # reference pixel (frame centre), 0-based
    half_diag: float  # px
    hint: str  # what to tell the user when matching fails


def _catalog_near_frame(
    xc_h: np.ndarray, yc_h: np.ndarray, geo: _Geometry, max_offset_arcsec: float,
    min_matches: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Catalog rows that can fall on the frame given the header's possible error, and those
    that fall on it through the header as is."""
    nx, ny = geo.nx, geo.ny
    margin = max_offset_arcsec / geo.scale_px + 0.06 * geo.half_diag + 5.0
    near = (
        np.isfinite(xc_h)
        & np.isfinite(yc_h)
        & (xc_h > -margin)
        & (xc_h < nx - 1 + margin)
        & (yc_h > -margin)
        & (yc_h < ny - 1 + margin)
    )
    cat_idx = np.flatnonzero(near)
    on_frame = np.flatnonzero(
        near & (xc_h >= 0) & (xc_h <= nx - 1) & (yc_h >= 0) & (yc_h <= ny - 1)
    )
    if cat_idx.size < min_matches:
        raise AstrometryError(
            f"matched 0 of {cat_idx.size} catalog stars near the frame; need {min_matches} — "
            f"the catalog does not cover this frame, or {geo.hint}"
        )
    return cat_idx, on_frame


def _coarse_tangent_plane(
    header: WCS,
    xd: np.ndarray,
    yd: np.ndarray,
    fd: np.ndarray,
    det_idx: np.ndarray,
    xc_h: np.ndarray,
    yc_h: np.ndarray,
    mc: np.ndarray | None,
    cat_idx: np.ndarray,
    on_frame: np.ndarray,
    geo: _Geometry,
    max_offset_arcsec: float,
) -> tuple[float, float, np.ndarray, np.ndarray, float]:
    """(2) Coarse shift/rotation/scale from the brightest stars; returns the tangent point
    (the header's sky position of the frame centre), the detections' standard coordinates
    through the corrected header, and the coarse solution's tolerance (px)."""
    centre = geo.centre
    ra_c, dec_c = pixel_to_world(header, np.array([centre[0]]), np.array([centre[1]]))
    ra0, dec0 = float(ra_c[0]), float(dec_c[0])
    bright_det = det_idx[np.argsort(-fd[det_idx], kind="stable")[:_N_BRIGHT]]
    if mc is not None:
        key = np.where(np.isfinite(mc[on_frame]), mc[on_frame], np.inf)
        bright_cat = on_frame[np.argsort(key, kind="stable")[:_N_BRIGHT]]
    else:
        stride = max(1, int(np.ceil(on_frame.size / _N_CAT_NO_MAG)))
        bright_cat = on_frame[::stride]
    if bright_cat.size < 3:
        bright_cat = cat_idx[:_N_BRIGHT]
    coarse = _coarse_offset(
        xd[bright_det],
        yd[bright_det],
        xc_h[bright_cat],
        yc_h[bright_cat],
        centre=centre,
        half_diag=geo.half_diag,
        max_offset_px=max_offset_arcsec / geo.scale_px,
        n_catalog=bright_cat.size,
        max_offset_arcsec=max_offset_arcsec,
    )
    # Detections through the corrected header: undo the coarse similarity, then the header.
    c = np.cos(-coarse.rotation) / coarse.scale
    s = np.sin(-coarse.rotation) / coarse.scale
    ux = xd[det_idx] - coarse.dx - centre[0]
    uy = yd[det_idx] - coarse.dy - centre[1]
    ra_d, dec_d = pixel_to_world(header, centre[0] + c * ux - s * uy, centre[1] + s * ux + c * uy)
    xi_d, eta_d = gnomonic(ra_d, dec_d, ra0, dec0)
    return ra0, dec0, xi_d, eta_d, coarse.tolerance_px


def _match_and_fit(
    rc: np.ndarray,
    dc: np.ndarray,
    cat_idx: np.ndarray,
    det_idx: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    xi_d: np.ndarray,
    eta_d: np.ndarray,
    ra0: float,
    dec0: float,
    *,
    radius: float,
    final_radius: float,
    sip_order: int,
    min_matches: int,
    n_on_frame: int,
    hint: str,
) -> tuple[float, float, int, np.ndarray, np.ndarray]:
    """(3) Match within a shrinking radius and fit the tangent-plane polynomial until the
    pairs stop changing. Returns the converged tangent point, the polynomial order and the
    (detection, catalog) indices of the pairs used."""
    order = 1
    coeffs = np.zeros((0, 2))
    exps: list[tuple[int, int]] = []
    pair_det = pair_cat = np.empty(0, np.intp)
    used = np.zeros(0, bool)
    previous: tuple[bytes, bytes] | None = None
    for iteration in range(8):
        xi_c, eta_c = gnomonic(rc[cat_idx], dc[cat_idx], ra0, dec0)
        if iteration > 0:
            model = poly_design(u, v, exps) @ coeffs
            xi_d, eta_d = model[:, 0], model[:, 1]
        i_d, i_c, dist = match_nearest(xi_d, eta_d, xi_c, eta_c, radius=radius)
        if i_d.size < min_matches:
            raise AstrometryError(
                f"matched {i_d.size} of {n_on_frame} catalog stars; need {min_matches} — {hint}"
            )
        if iteration > 0:
            order = _supported_order(i_d.size, sip_order)
        exps = poly_exponents(order)
        design = poly_design(u[i_d], v[i_d], exps)
        target = np.column_stack([xi_c[i_c], eta_c[i_c]])
        start = dist <= max(3.0 * float(np.median(dist)) / 1.1774, final_radius / 4)
        coeffs, used, resid = _robust_poly_fit(design, target, start)
        pair_det, pair_cat = det_idx[i_d], cat_idx[i_c]
        # Move the tangent point onto the fitted sky position of the reference pixel, so
        # the constant term vanishes (a TAN-SIP WCS has none).
        ra0, dec0 = (float(a[0]) for a in inverse_gnomonic(coeffs[:1, 0], coeffs[:1, 1], ra0, dec0))
        coeffs = coeffs.copy()
        coeffs[0] = 0.0
        sigma = float(np.median(np.hypot(resid[used, 0], resid[used, 1]))) / 1.1774
        state = (pair_det[used].tobytes(), pair_cat[used].tobytes())
        if radius <= final_radius and state == previous:
            break
        previous = state
        # Shrink towards the scatter, and always end at the configured match radius.
        radius = final_radius if iteration >= 2 else max(final_radius, min(radius, 5.0 * sigma))
    return ra0, dec0, order, pair_det[used], pair_cat[used]


def _check_final_fit(
    n_used: int,
    rms: float,
    *,
    n_detections: int,
    n_on_frame: int,
    geo: _Geometry,
    min_matches: int,
    match_radius_arcsec: float,
    max_rms_arcsec: float,
) -> None:
    """Refuse a solution with too few pairs, no more pairs than chance, or a large rms."""
    if n_used < min_matches:
        raise AstrometryError(
            f"matched {n_used} of {n_on_frame} catalog stars; need {min_matches} — {geo.hint}"
        )
    n_chance = (
        n_detections * n_on_frame * np.pi * (match_radius_arcsec / geo.scale_px) ** 2
        / (geo.nx * geo.ny)
    )
    if n_used < n_chance + 5.0 * np.sqrt(n_chance):
        raise AstrometryError(
            f"matched {n_used} of {n_on_frame} catalog stars, no more than the "
            f"~{n_chance:.0f} chance coincidences expected; {geo.hint}"
        )
    if rms > max_rms_arcsec:
        raise AstrometryError(
            f"astrometric fit rms {rms:.2f} arcsec over {n_used} stars exceeds "
            f"max_rms {max_rms_arcsec:g} arcsec: the match is probably wrong or the optics "
            "need a higher sip_order — check the header WCS or raise max_rms_arcsec"
        )


def _tan_sip_from_poly(
    coeffs: np.ndarray, exps: list[tuple[int, int]], norm: float, ra0: float, dec0: float,
    geo: _Geometry,
) -> WCS:
    """The TAN-SIP WCS of a tangent-plane polynomial in normalised pixel offsets."""
    scale_terms = {pq: norm ** (pq[0] + pq[1]) for pq in exps}
    cd = np.array(
        [
            [coeffs[0, 0] / norm, coeffs[1, 0] / norm],
            [coeffs[0, 1] / norm, coeffs[1, 1] / norm],
        ]
    )
    higher = {
        pq: (float(coeffs[k, 0] / scale_terms[pq]), float(coeffs[k, 1] / scale_terms[pq]))
        for k, pq in enumerate(exps)
        if pq[0] + pq[1] >= 2
    }
    return build_tan_sip_wcs(
        crval=(ra0, dec0), crpix0=geo.centre, cd=cd, higher=higher, shape=(geo.ny, geo.nx)
    )


def _matched_fraction(
    wcs: WCS,
    ra: np.ndarray,
    dec: np.ndarray,
    mag: np.ndarray | None,
    used_mag: np.ndarray | None,
    *,
    n_used: int,
    n_detections: int,
    shape: tuple[int, int],
) -> float:
    """Matched / catalog stars on the frame bright enough to have been detected.

    "Bright enough" is the 90th percentile of the matched stars' catalog magnitudes: the
    depth down to which the detections are nearly complete. Without magnitudes the
    denominator is the smaller of the on-frame catalog and the detection list.
    """
    ny, nx = shape
    xp, yp = world_to_pixel(wcs, ra, dec)
    inside = (xp >= 0) & (xp <= nx - 1) & (yp >= 0) & (yp <= ny - 1)
    if mag is not None and used_mag is not None and np.isfinite(used_mag).sum() >= 3:
        limit = float(np.nanpercentile(used_mag, 90.0))
        expected = int(np.sum(inside & (mag <= limit)))
        matched = int(np.sum(used_mag <= limit))
        return min(1.0, matched / expected) if expected else 0.0
    expected = min(int(inside.sum()), n_detections)
    return min(1.0, n_used / expected) if expected else 0.0
