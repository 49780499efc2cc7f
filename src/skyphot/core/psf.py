"""Point-spread-function models.

``PSFModel`` is the protocol every PSF source satisfies (the built-in Moffat fit, and
later a PSFEx adapter): it renders the pixel-integrated, unit-sum PSF at any position.

``MoffatPSF`` is an elliptical Moffat profile whose FWHM and ellipticity are low-order
polynomials across the frame; ``fit_psf`` fits it to bright isolated stars.

Ellipticity convention: the profile is ``(1 + Q / alpha^2) ** -beta`` with
``Q = [(1 - e1) dx^2 - 2 e2 dx dy + (1 + e1) dy^2] / sqrt(1 - e1^2 - e2^2)``; ``e1 > 0`` is
elongated along x, ``e2 > 0`` along the x = y diagonal, and the axis ratio is
``b/a = sqrt((1 - |e|) / (1 + |e|))``. ``alpha`` (and the FWHM) are geometric means over the
two axes, so the analytic normalisation ``(beta - 1) / (pi alpha^2)`` holds for any ``e``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Protocol

import numpy as np

from skyphot.core.detection import (
    SourceList,
    cutouts,
    estimate_fwhm,
    half_max_fwhm,
    half_sample_mode,
    isolated,
    stamp_is_clean,
)
from skyphot.core.masking import bad_pixels
from skyphot.core.stats import MAD_TO_SIGMA, mad_sigma
from skyphot.core.wcs_utils import poly_exponents
from skyphot.errors import ConfigError, DetectionError, InputError


class PSFModel(Protocol):
    """A PSF that may vary across the frame."""

    def fwhm_at(self, x: float, y: float) -> float:
        """FWHM in pixels at pixel position (x, y)."""
        ...

    def render(self, x: float, y: float, size: int) -> tuple[np.ndarray, int, int]:
        """Pixel-integrated PSF centred at (x, y), normalised to unit total flux.

        Returns ``(stamp, x0, y0)``: a ``size``x``size`` array and the frame pixel of its
        [0, 0] element, so ``stamp[j, i]`` is the PSF at frame pixel ``(x0 + i, y0 + j)``.
        """
        ...


# Limits that keep the Moffat profile physical during fits and extrapolation.
_BETA_MIN, _BETA_MAX = 1.3, 25.0
_E_MAX = 0.8
_FWHM_MIN = 0.3


def _gauss_nodes(fwhm: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes/weights over a pixel [-0.5, 0.5] for pixel integration.

    Chosen so the integrated Moffat core is accurate to ~1e-4 (verified against a fine grid):
    sharper PSFs need more nodes.
    """
    if fwhm >= 5.0:
        k = 2
    elif fwhm >= 1.5:
        k = 3
    elif fwhm >= 1.0:
        k = 4
    else:
        k = 6
    return _leggauss_pixel(k)


@cache
def _leggauss_pixel(k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` Gauss-Legendre nodes and weights over [-0.5, 0.5] (cached: every render asks)."""
    nodes, weights = np.polynomial.legendre.leggauss(k)
    nodes, weights = nodes / 2.0, weights / 2.0
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def moffat_alpha(fwhm: float | np.ndarray, beta: float) -> np.ndarray:
    """Moffat core width alpha (px) of a circular profile with this FWHM (px)."""
    return np.asarray(fwhm, dtype=float) / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


@dataclass(frozen=True)
class MoffatPSF:
    """Elliptical Moffat PSF whose FWHM and ellipticity vary as polynomials over the frame.

    ``fwhm_coeffs``, ``e1_coeffs``, ``e2_coeffs`` multiply ``u^i v^j`` (terms in
    ``poly_exponents(order)`` order, lowest degree first) with ``u = (x - cx) / hx``,
    ``v = (y - cy) / hy`` normalised to [-1, 1] over a frame of ``shape = (ny, nx)``.
    FWHM in pixels (geometric mean of the axes). ``n_stars`` and ``fwhm_scatter`` (px,
    robust rms of the stars about the model) describe the fit; ``fwhm_range`` (px), when
    set, bounds the polynomial so it cannot run away where it extrapolates.
    """

    beta: float
    fwhm_coeffs: tuple[float, ...]
    e1_coeffs: tuple[float, ...]
    e2_coeffs: tuple[float, ...]
    order: int
    shape: tuple[int, int]
    n_stars: int = 0
    fwhm_scatter: float = 0.0
    fwhm_range: tuple[float, float] | None = None

    @classmethod
    def constant(
        cls,
        fwhm: float,
        *,
        beta: float = 3.0,
        e1: float = 0.0,
        e2: float = 0.0,
        shape: tuple[int, int] = (1, 1),
    ) -> MoffatPSF:
        """The same Moffat (FWHM in px) everywhere."""
        if not (fwhm > 0 and beta > 1 and e1**2 + e2**2 < 1):
            raise ConfigError(
                f"invalid Moffat parameters fwhm={fwhm}, beta={beta}, e=({e1}, {e2}); need "
                "fwhm > 0, beta > 1 and e1^2 + e2^2 < 1"
            )
        return cls(beta=float(beta), fwhm_coeffs=(float(fwhm),), e1_coeffs=(float(e1),),
                   e2_coeffs=(float(e2),), order=0, shape=shape)

    def _uv(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ny, nx = self.shape
        hx = max((nx - 1) / 2.0, 1.0)
        hy = max((ny - 1) / 2.0, 1.0)
        # Clip so positions off the frame do not extrapolate the polynomial wildly.
        u = np.clip((x - (nx - 1) / 2.0) / hx, -1.5, 1.5)
        v = np.clip((y - (ny - 1) / 2.0) / hy, -1.5, 1.5)
        return u, v

    def parameters_at(
        self, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """FWHM (px), e1, e2 at pixel positions (arrays)."""
        u, v = self._uv(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        terms = poly_exponents(self.order)
        basis = np.stack([u**i * v**j for i, j in terms], axis=-1)
        fwhm = basis @ np.asarray(self.fwhm_coeffs)
        if self.fwhm_range is not None:
            fwhm = np.clip(fwhm, *self.fwhm_range)
        fwhm = np.maximum(fwhm, _FWHM_MIN)
        e1 = basis @ np.asarray(self.e1_coeffs)
        e2 = basis @ np.asarray(self.e2_coeffs)
        # Keep |e| physical after extrapolation.
        emag = np.hypot(e1, e2)
        shrink = np.where(emag > _E_MAX, _E_MAX / np.maximum(emag, 1e-12), 1.0)
        return fwhm, e1 * shrink, e2 * shrink

    def fwhm_at(self, x: float, y: float) -> float:
        """FWHM (px, geometric mean of the axes) at pixel (x, y)."""
        fwhm, _, _ = self.parameters_at(np.array([x]), np.array([y]))
        return float(fwhm[0])

    def render_many(
        self, x: np.ndarray, y: np.ndarray, size: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stamps (n, size, size) of the pixel-integrated PSF at each position, unit total
        flux over the plane, and the frame pixel (x0, y0) of each stamp's [0, 0] element."""
        if size < 1:
            raise InputError(f"PSF stamp size must be at least 1 px, got {size}")
        xs = np.atleast_1d(np.asarray(x, dtype=float))
        ys = np.atleast_1d(np.asarray(y, dtype=float))
        fwhm, e1, e2 = self.parameters_at(xs, ys)
        nodes = _gauss_nodes(float(fwhm.min()) if fwhm.size else 3.0)
        x0 = np.rint(xs).astype(np.int64) - int(size) // 2
        y0 = np.rint(ys).astype(np.int64) - int(size) // 2
        p = np.zeros((xs.size, _NPAR))
        p[:, _F], p[:, _X], p[:, _Y] = 1.0, xs, ys
        p[:, _LNA] = np.log(moffat_alpha(fwhm, self.beta))
        p[:, _BETA], p[:, _E1], p[:, _E2] = self.beta, e1, e2
        stamps, _ = _model_and_jacobian(
            p, x0, y0, int(size), nodes, _NO_PARAMS, jacobian=False, single=True
        )
        return stamps, x0, y0

    def ring_mean(
        self, x: np.ndarray, y: np.ndarray, r_in: float, r_out: float
    ) -> np.ndarray:
        """Mean of the unit-flux PSF per px over the annulus ``r_in..r_out`` (px) at each
        position, from the analytic encircled energy ``1 - (1 + r^2/alpha^2)^(1 - beta)``.

        The circular form ignores the ellipticity, a second-order effect far out in the
        wings, and pixelisation, which the smooth wings do not feel.
        """
        fwhm, _, _ = self.parameters_at(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        a2 = moffat_alpha(fwhm, self.beta) ** 2
        outside_in = (1.0 + r_in**2 / a2) ** (1.0 - self.beta)
        outside_out = (1.0 + r_out**2 / a2) ** (1.0 - self.beta)
        return np.asarray((outside_in - outside_out) / (np.pi * (r_out**2 - r_in**2)))

    def render(self, x: float, y: float, size: int) -> tuple[np.ndarray, int, int]:
        """Pixel-integrated PSF centred at (x, y) on a ``size``x``size`` stamp, normalised
        to unit total flux over the whole plane (so a small stamp sums to less than 1)."""
        stamps, x0, y0 = self.render_many(np.array([x]), np.array([y]), size)
        return stamps[0], int(x0[0]), int(y0[0])


def effective_area(psf: PSFModel, x: float, y: float) -> float:
    """Noise-equivalent area n_eff = 1 / sum(P^2) (px) of the normalised pixel PSF at (x, y).

    A PSF-fit flux on a background of per-pixel variance B has variance B * n_eff.
    """
    fwhm = psf.fwhm_at(x, y)
    size = 2 * int(np.ceil(6.0 * max(fwhm, 1.0))) + 1
    stamp, _, _ = psf.render(x, y, size)
    total = float(np.sum(stamp.astype(float) ** 2))
    if not total > 0:
        raise DetectionError(f"the PSF at ({x:.1f}, {y:.1f}) renders as zero; it is unusable")
    return 1.0 / total


# --- fitting -----------------------------------------------------------------------------------

# Parameter layout of the per-star fit.
_F, _X, _Y, _LNA, _BETA, _E1, _E2, _B = range(8)
_NPAR = 8
_NO_PARAMS = np.zeros(_NPAR, dtype=bool)
_MIN_SNR = 30.0
_MAX_ITER = 30
_BETA_STARS = 20  # brightest stars that fit beta
_SHARP_FRACTION = 0.5  # candidates narrower than this times the typical FWHM: cosmic rays
_STARS_PER_TERM = 3  # the spatial order is lowered until there are this many stars per term
_WIDTH_BAND = 0.35  # |ln(FWHM / mode)| above this: not a star
_SHAPE_FLOOR = 0.003  # relative FWHM / absolute ellipticity error floor per star


@dataclass(frozen=True)
class _StarData:
    stamps: np.ndarray  # (n, s, s) data
    weight: np.ndarray  # (n, s, s) inverse variance, 0 outside the fit circle
    x0: np.ndarray  # (n,) frame pixel of stamp [0, 0]
    y0: np.ndarray


def _model_and_jacobian(
    p: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    s: int,
    nodes: tuple[np.ndarray, np.ndarray],
    free: np.ndarray,
    *,
    jacobian: bool,
    single: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixel-integrated Moffat stamps (n, s, s) with corners (x0, y0), and the Jacobian
    (n, s, s, n_free) when asked for. The one place the profile is computed: rendering and
    fitting cannot disagree.

    Arrays run over (star, row, column, node_y, node_x). Everything that depends on one
    axis only is computed on the small (star, pixel, node) arrays first and broadcast once,
    which keeps the number of full-size operations (the cost of the fit) low. ``single``
    (rendering only) evaluates the profile in float32: half the cost, 1e-7 relative.
    """
    n = p.shape[0]
    t, w = nodes
    k = t.size
    flux, xc, yc = p[:, _F], p[:, _X], p[:, _Y]
    sc = np.exp(-2.0 * p[:, _LNA])  # 1 / alpha^2
    beta, e1, e2 = p[:, _BETA], p[:, _E1], p[:, _E2]
    d = np.sqrt(1.0 - e1**2 - e2**2)
    grid = np.arange(s, dtype=float)
    ox = (x0 - xc)[:, None, None] + grid[None, :, None] + t[None, None, :]  # (n, s, k)
    oy = (y0 - yc)[:, None, None] + grid[None, :, None] + t[None, None, :]

    def col(a: np.ndarray) -> np.ndarray:  # (n, s, k) along x -> broadcastable 5-d
        return a[:, None, :, None, :]

    def row(a: np.ndarray) -> np.ndarray:  # (n, s, k) along y -> broadcastable 5-d
        return a[:, :, None, :, None]

    def per(a: np.ndarray) -> np.ndarray:
        return a[:, None, None]

    def per5(a: np.ndarray) -> np.ndarray:
        return a[:, None, None, None, None]

    cxx = sc * (1.0 - e1) / d
    cyy = sc * (1.0 + e1) / d
    cxy = -2.0 * sc * e2 / d
    xy = col(ox) * row(oy)
    q = col(per(cxx) * ox**2) + row(per(cyy) * oy**2) + per5(cxy) * xy
    if single and not jacobian:
        q = q.astype(np.float32)
    lu = np.log1p(q)
    f = np.exp(lu * -per5(beta).astype(q.dtype))  # (1 + q)^-beta
    wflat = (w[:, None] * w[None, :]).ravel()

    def integ(a: np.ndarray) -> np.ndarray:
        return (a.reshape(-1, k * k) @ wflat).reshape(n, s, s)

    norm = (beta - 1.0) / np.pi * sc
    pix_f = integ(f)
    amp = per(flux * norm)
    model = amp * pix_f + per(p[:, _B])
    if not jacobian:
        return model, None
    g = f / (1.0 + q)  # (1 + q)^-(beta + 1)
    # Chain rule: d model / d q = -beta * amp * g.
    damp = per(-beta) * amp
    cols: list[np.ndarray] = []
    for j in np.flatnonzero(free):
        if j == _F:
            cols.append(per(norm) * pix_f)
        elif j == _X:
            dq = col(per(-2.0 * cxx) * ox) + row(per(-cxy) * oy)
            cols.append(damp * integ(g * dq))
        elif j == _Y:
            dq = row(per(-2.0 * cyy) * oy) + col(per(-cxy) * ox)
            cols.append(damp * integ(g * dq))
        elif j == _LNA:
            # norm and q both scale as alpha^-2.
            cols.append(-2.0 * amp * pix_f + damp * integ(g * q) * -2.0)
        elif j == _BETA:
            cols.append(per(flux * sc / np.pi) * pix_f - amp * integ(lu * f))
        elif j == _E1:
            dq = row(per(sc / d) * oy**2) - col(per(sc / d) * ox**2)
            dq = dq + q * per5(e1 / d**2)
            cols.append(damp * integ(g * dq))
        elif j == _E2:
            dq = xy * per5(-2.0 * sc / d)
            dq = dq + q * per5(e2 / d**2)
            cols.append(damp * integ(g * dq))
        else:  # _B
            cols.append(np.ones_like(model))
    return model, np.stack(cols, axis=-1)


def _clamp(p: np.ndarray, stars: _StarData) -> np.ndarray:
    """Keep every parameter in its physical range."""
    q = p.copy()
    s = stars.stamps.shape[1]
    q[:, _BETA] = np.clip(q[:, _BETA], _BETA_MIN, _BETA_MAX)
    q[:, _LNA] = np.clip(q[:, _LNA], np.log(0.2), np.log(float(s)))
    emag = np.hypot(q[:, _E1], q[:, _E2])
    shrink = np.where(emag > _E_MAX, _E_MAX / np.maximum(emag, 1e-12), 1.0)
    q[:, _E1] *= shrink
    q[:, _E2] *= shrink
    # The centre may not leave the stamp's central region.
    half = s // 2
    q[:, _X] = np.clip(q[:, _X], stars.x0 + half - 2.0, stars.x0 + half + 2.0)
    q[:, _Y] = np.clip(q[:, _Y], stars.y0 + half - 2.0, stars.y0 + half + 2.0)
    return q


def _subset(stars: _StarData, idx: np.ndarray) -> _StarData:
    return _StarData(stars.stamps[idx], stars.weight[idx], stars.x0[idx], stars.y0[idx])


def _normal_equations(
    p: np.ndarray, stars: _StarData, nodes: tuple[np.ndarray, np.ndarray], free: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """J^T W J, J^T W r and chi^2 per star at parameters ``p``."""
    model, jac = _model_and_jacobian(p, stars.x0, stars.y0, stars.stamps.shape[1], nodes, free,
                                     jacobian=True)
    assert jac is not None  # guaranteed by jacobian=True
    n = p.shape[0]
    sqrt_w = np.sqrt(stars.weight)
    jw = (jac * sqrt_w[..., None]).reshape(n, -1, jac.shape[-1])
    rw = ((stars.stamps - model) * sqrt_w).reshape(n, -1, 1)
    a = np.matmul(jw.transpose(0, 2, 1), jw)
    b = np.matmul(jw.transpose(0, 2, 1), rw)[..., 0]
    return a, b, np.sum(rw[..., 0] ** 2, axis=1)


def _levenberg_marquardt(
    p0: np.ndarray, stars: _StarData, nodes: tuple[np.ndarray, np.ndarray], free: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched Levenberg-Marquardt, one independent problem per star.

    Returns (params, chi2, J^T W J at the solution), the last for the parameter errors.
    Only stars still converging are evaluated, and the Jacobian only after an accepted step.
    """
    p = p0.copy()
    n = p.shape[0]
    lam = np.full(n, 1e-3)
    a, b, chi2 = _normal_equations(p, stars, nodes, free)
    active = np.ones(n, dtype=bool)
    eye = np.eye(int(free.sum()))
    for _ in range(_MAX_ITER):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        diag = np.einsum("nkk->nk", a[idx])
        damped = a[idx] + lam[idx, None, None] * diag[:, :, None] * eye[None]
        # pinv: a parameter a star does not constrain (singular matrix) gets no step.
        step = np.einsum("nkl,nl->nk", np.linalg.pinv(damped), b[idx])
        sub = _subset(stars, idx)
        trial = p[idx].copy()
        trial[:, free] += np.where(np.isfinite(step), step, 0.0)
        trial = _clamp(trial, sub)
        t_model, _ = _model_and_jacobian(trial, sub.x0, sub.y0, sub.stamps.shape[1], nodes, free,
                                         jacobian=False)
        t_chi2 = np.sum(sub.weight * (sub.stamps - t_model) ** 2, axis=(1, 2))
        better = np.isfinite(t_chi2) & (t_chi2 <= chi2[idx])
        gain = np.where(better, chi2[idx] - t_chi2, 0.0)
        acc = idx[better]
        if acc.size:
            p[acc] = trial[better]
            a[acc], b[acc], chi2[acc] = _normal_equations(
                p[acc], _subset(stars, acc), nodes, free
            )
        lam[idx] = np.where(better, np.maximum(lam[idx] / 5.0, 1e-7),
                            np.minimum(lam[idx] * 10.0, 1e7))
        # Converged: a chi^2 gain far below 1 (parameters move by << 1 sigma), or damping
        # has blown up (no downhill step left).
        done = (better & (gain < 1e-3)) | (lam[idx] >= 1e6)
        active[idx[done]] = False
    return p, chi2, a


def _select_stars(
    data: np.ndarray,
    sources: SourceList,
    mask: np.ndarray | None,
    saturation: float | None,
    half: int,
    fwhm0: float,
    max_stars: int,
    grid: int,
) -> np.ndarray:
    """Indices of bright, isolated, clean stars spread over a grid x grid tiling of the frame."""
    ny, nx = data.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = sources.flux / sources.fluxerr
    ok = (
        (sources.flag == 0)
        & (snr > _MIN_SNR)
        & np.isfinite(sources.x) & np.isfinite(sources.y)
        & isolated(sources, radius=half + 2.0 * fwhm0, min_flux_ratio=0.01)
    )
    if saturation is not None:
        # data are background-subtracted: this keeps clear of saturation and non-linearity
        # as long as the sky is well below the saturation level; the mask catches the rest.
        ok &= sources.peak < 0.8 * saturation
    idx = np.flatnonzero(ok)
    if idx.size:
        idx = idx[stamp_is_clean(sources.x[idx], sources.y[idx], half, (ny, nx), mask)]
    if idx.size <= max_stars:
        return idx
    # Round-robin over cells, brightest first within a cell (sources are sorted by flux).
    cell = (np.minimum((sources.x[idx] / nx * grid).astype(int), grid - 1) * grid
            + np.minimum((sources.y[idx] / ny * grid).astype(int), grid - 1))
    rank = np.zeros(idx.size, dtype=int)
    for c in np.unique(cell):
        members = np.flatnonzero(cell == c)
        rank[members] = np.arange(members.size)
    order = np.lexsort((-sources.flux[idx], rank))
    return idx[order[:max_stars]]


def _robust_polyfit(
    u: np.ndarray, v: np.ndarray, values: np.ndarray, errors: np.ndarray, order: int,
    clip: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted, sigma-clipped least-squares polynomial; returns (coefficients, inliers)."""
    terms = poly_exponents(order)
    basis = np.stack([u**i * v**j for i, j in terms], axis=-1)
    w = 1.0 / errors
    keep = np.isfinite(values) & np.isfinite(w)
    coef = np.zeros(len(terms))
    for _ in range(5):
        coef = np.linalg.lstsq(basis[keep] * w[keep, None], values[keep] * w[keep],
                               rcond=None)[0]
        norm = (values - basis @ coef) * w
        scale = MAD_TO_SIGMA * np.median(np.abs(norm[keep] - np.median(norm[keep])))
        new_keep = np.isfinite(norm) & (np.abs(norm) < clip * max(scale, 1e-12))
        if new_keep.sum() < len(terms) + 1 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return coef, keep


def fit_psf(
    data_sub: np.ndarray,
    sources: SourceList,
    *,
    rms: np.ndarray,
    mask: np.ndarray | None = None,
    saturation: float | None = None,
    max_stars: int = 60,
    spatial_order: int = 2,
    gain: float | None = None,
) -> MoffatPSF:
    """Fit an elliptical Moffat PSF, FWHM and ellipticity polynomial in x, y, to bright stars.

    ``data_sub``: background-subtracted image (ADU); ``rms``: per-pixel sky noise (ADU);
    ``saturation`` (ADU): stars peaking above 80 % of it are skipped; ``gain`` (e-/ADU), when
    given, adds the stars' photon noise to the fit weights. Stars are chosen bright,
    isolated, unmasked and spread over the frame, at most ``max_stars``. The brightest 20
    are fitted alone (flux, centre, width, beta, ellipticity, residual sky) for beta; with
    beta fixed to their median all stars are refitted; stars far wider than the typical
    one (galaxies, blends) are dropped; FWHM, e1 and e2 are then fitted as polynomials of
    order ``spatial_order`` (2 captures a focus-like FWHM change ~ r^2; lowered until there
    are 3 stars per term). Raises ``DetectionError`` when fewer than 3 usable stars remain.
    """
    image, noise, bad = _check_psf_inputs(data_sub, rms, mask, spatial_order, max_stars)
    if len(sources) == 0:
        raise DetectionError("no detected sources to fit the PSF on; detection found nothing")
    start = _psf_stars(image, noise, bad, sources, saturation=saturation, max_stars=max_stars,
                       grid=spatial_order + 2, gain=gain)
    beta, p1, bsel = _fit_beta(start)
    p2, errors = _fit_shared_beta(start, beta, p1, bsel)
    return _shape_polynomials(p2, errors, beta, spatial_order, image.shape)


def _check_psf_inputs(
    data_sub: np.ndarray,
    rms: np.ndarray,
    mask: np.ndarray | None,
    spatial_order: int,
    max_stars: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(image, noise, bad-pixel mask or None), after checking shapes and settings."""
    image = np.asarray(data_sub)
    noise = np.asarray(rms)
    if image.ndim != 2 or noise.shape != image.shape:
        raise InputError(
            f"data_sub {image.shape} and rms {noise.shape} must be 2-d images of the same shape"
        )
    if spatial_order < 0 or max_stars < 3:
        raise ConfigError(
            f"spatial_order={spatial_order}, max_stars={max_stars} are invalid; use "
            "spatial_order >= 0 and max_stars >= 3"
        )
    bad = None if mask is None else bad_pixels(mask)
    if bad is not None and bad.shape != image.shape:
        raise InputError(f"mask shape {bad.shape} does not match the image {image.shape}")
    return image, noise, bad


@dataclass(frozen=True)
class _Start:
    """The PSF stars' stamps and weights, starting parameters and integration nodes."""

    stars: _StarData
    p0: np.ndarray  # (n, _NPAR)
    brightness: np.ndarray  # detection flux, to pick the brightest for beta
    nodes: tuple[np.ndarray, np.ndarray]


def _psf_stars(
    image: np.ndarray,
    noise: np.ndarray,
    bad: np.ndarray | None,
    sources: SourceList,
    *,
    saturation: float | None,
    max_stars: int,
    grid: int,
    gain: float | None,
) -> _Start:
    """Choose the PSF stars, cut their weighted stamps and set starting parameters: flux
    from the stamp sum, width from each star's half-maximum, beta 3."""
    try:
        fwhm0 = estimate_fwhm(image, sources, mask=bad)
    except DetectionError as exc:
        raise DetectionError(f"cannot fit the PSF: {exc}") from exc
    fwhm0 = float(np.clip(fwhm0, 1.0, 30.0))
    # The fit region reaches 2.5 FWHM: enough of the wings to constrain beta.
    half = int(np.clip(np.ceil(2.5 * fwhm0), 4, 40))
    idx = _select_stars(image, sources, bad, saturation, half, fwhm0, max_stars, grid)
    if idx.size < 3:
        raise DetectionError(
            f"only {idx.size} stars are suitable for the PSF fit (S/N > {_MIN_SNR:.0f}, "
            f"isolated, unsaturated, unmasked, at least {half} px from the edge) among "
            f"{len(sources)} detections; at least 3 are needed — use a deeper exposure, check "
            "the saturation level and mask, or lower the detection threshold"
        )
    # Cosmic-ray hits are bright and isolated too; far sharper than the frame's typical
    # star (estimate_fwhm), they are no PSF stars (on a sparse frame they outnumbered the
    # stars among the brightest and made a 0.4 px PSF).
    # (A one-pixel hit has no measurable half-maximum width at all.)
    stamps, dx, dy = cutouts(image, sources.x[idx], sources.y[idx], half)
    widths = half_max_fwhm(stamps, dx, dy)
    starlike = np.isfinite(widths) & (widths >= _SHARP_FRACTION * fwhm0)
    if int(starlike.sum()) >= 3:
        idx, stamps, dx, dy = idx[starlike], stamps[starlike], dx[starlike], dy[starlike]
    x, y = sources.x[idx], sources.y[idx]
    var = np.square(cutouts(noise, x, y, half)[0])
    if gain is not None and gain > 0:
        var = var + np.maximum(stamps, 0.0) / gain
    inside = (dx**2 + dy**2) <= (half + 0.5) ** 2
    weight = np.where(inside & (var > 0) & np.isfinite(stamps), 1.0 / np.where(var > 0, var, 1), 0)
    stamps = np.where(weight > 0, stamps, 0.0)
    xi, yi = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    stars = _StarData(stamps=stamps, weight=weight, x0=xi - half, y0=yi - half)
    fwhm_start = half_max_fwhm(stamps, dx, dy)
    fwhm_start = np.where(np.isfinite(fwhm_start), fwhm_start, fwhm0)
    p0 = np.zeros((idx.size, _NPAR))
    p0[:, _F] = np.maximum(np.sum(stamps * inside, axis=(1, 2)), 1e-3)
    p0[:, _X], p0[:, _Y] = x, y
    p0[:, _BETA] = 3.0
    p0[:, _LNA] = np.log(moffat_alpha(fwhm_start, 3.0))
    nodes = _gauss_nodes(float(np.min(fwhm_start)))
    return _Start(stars=stars, p0=p0, brightness=sources.flux[idx], nodes=nodes)


def _fit_beta(start: _Start) -> tuple[float, np.ndarray, np.ndarray]:
    """Pass 1: every parameter free on the brightest stars (they constrain beta; it saves
    time). Returns the median beta of the good fits, their parameters and which stars."""
    free = np.ones(_NPAR, dtype=bool)
    bsel = np.argsort(-start.brightness, kind="stable")[:_BETA_STARS]
    sub = _subset(start.stars, bsel)
    p1, chi2, _ = _levenberg_marquardt(start.p0[bsel], sub, start.nodes, free)
    dof = np.maximum(np.sum(sub.weight > 0, axis=(1, 2)) - _NPAR, 1)
    good = _good_fits(p1, chi2 / dof)
    if good.sum() < 3:
        raise DetectionError(
            f"the PSF fit failed on all but {int(good.sum())} of the {bsel.size} brightest "
            "PSF stars (bad shapes or blends); at least 3 are needed — the frame may be "
            "trailed or out of focus"
        )
    return float(np.median(p1[good, _BETA])), p1, bsel


def _fit_shared_beta(
    start: _Start, beta: float, p1: np.ndarray, bsel: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pass 2: all stars with beta shared, so their widths are directly comparable. Returns
    the good stars' parameters and their (ln alpha, e1, e2) errors, (n, 3)."""
    p2 = start.p0.copy()
    p2[bsel] = p1
    p2[:, _BETA] = beta
    free = np.ones(_NPAR, dtype=bool)
    free[_BETA] = False
    p2, chi2, normal = _levenberg_marquardt(p2, start.stars, start.nodes, free)
    dof = np.maximum(np.sum(start.stars.weight > 0, axis=(1, 2)) - (_NPAR - 1), 1)
    good = _good_fits(p2, chi2 / dof)
    # Parameter errors (scaled up by any misfit) weight the stars in the polynomial fits.
    cov = np.linalg.pinv(normal[good]) * np.maximum(chi2[good] / dof[good], 1.0)[:, None, None]
    err = np.sqrt(np.maximum(np.einsum("nkk->nk", cov), 0.0))
    col = {int(j): k for k, j in enumerate(np.flatnonzero(free))}
    errors = np.column_stack([err[:, col[_LNA]], err[:, col[_E1]], err[:, col[_E2]]])
    p2 = p2[good]
    if p2.shape[0] < 3:
        raise DetectionError(
            f"only {p2.shape[0]} stars gave a usable PSF fit; at least 3 are needed — the "
            "frame may be trailed, out of focus or too crowded"
        )
    return p2, errors


def _shape_polynomials(
    p2: np.ndarray, errors: np.ndarray, beta: float, spatial_order: int,
    image_shape: tuple[int, ...],
) -> MoffatPSF:
    """FWHM, e1 and e2 as robust polynomials over the frame from the stars' fits."""
    err_lna, err_e1, err_e2 = errors[:, 0], errors[:, 1], errors[:, 2]
    ny, nx = image_shape
    fwhm_i = 2.0 * np.exp(p2[:, _LNA]) * np.sqrt(2.0 ** (1.0 / beta) - 1.0)
    # Galaxies and blends are wider than the stars: drop widths far from the stars' mode
    # (the band is wide enough for any realistic variation of the PSF across the field).
    mode = float(np.exp(half_sample_mode(np.log(fwhm_i))))
    star_like = np.abs(np.log(fwhm_i / mode)) < _WIDTH_BAND
    if star_like.sum() >= 3:
        p2, fwhm_i = p2[star_like], fwhm_i[star_like]
        err_lna, err_e1, err_e2 = err_lna[star_like], err_e1[star_like], err_e2[star_like]
    # A floor keeps the brightest stars from dictating the fit alone (the PSF is never
    # exactly a polynomial).
    err_fwhm = fwhm_i * np.hypot(err_lna, _SHAPE_FLOOR)
    err_e1, err_e2 = np.hypot(err_e1, _SHAPE_FLOOR), np.hypot(err_e2, _SHAPE_FLOOR)
    order = spatial_order
    while order > 0 and p2.shape[0] < _STARS_PER_TERM * len(poly_exponents(order)):
        order -= 1
    shape = (int(ny), int(nx))
    proto = MoffatPSF.constant(1.0, shape=shape)
    u, v = proto._uv(p2[:, _X], p2[:, _Y])
    fwhm_coef, inl = _robust_polyfit(u, v, fwhm_i, err_fwhm, order)
    e1_coef, _ = _robust_polyfit(u[inl], v[inl], p2[inl, _E1], err_e1[inl], order)
    e2_coef, _ = _robust_polyfit(u[inl], v[inl], p2[inl, _E2], err_e2[inl], order)
    terms = poly_exponents(order)
    basis = np.stack([u**i * v**j for i, j in terms], axis=-1)
    resid = fwhm_i[inl] - basis[inl] @ fwhm_coef
    scatter = mad_sigma(resid)
    # Extrapolating into corners without stars must not run away.
    span = (float(fwhm_i[inl].min()) * 0.9, float(fwhm_i[inl].max()) * 1.1)
    return MoffatPSF(
        beta=beta,
        fwhm_coeffs=tuple(float(c) for c in fwhm_coef),
        e1_coeffs=tuple(float(c) for c in e1_coef),
        e2_coeffs=tuple(float(c) for c in e2_coef),
        order=order,
        shape=shape,
        n_stars=int(inl.sum()),
        fwhm_scatter=scatter,
        fwhm_range=span,
    )


def _good_fits(p: np.ndarray, redchi2: np.ndarray) -> np.ndarray:
    """Fits with finite, in-range parameters and no outlying chi2 (blends, cosmic rays)."""
    finite = np.all(np.isfinite(p), axis=1) & np.isfinite(redchi2) & (p[:, _F] > 0)
    # beta at its lower bound means wings no star has (a blend, a galaxy); at the upper
    # bound the profile is simply Gaussian-like, which is fine.
    inrange = p[:, _BETA] > _BETA_MIN * 1.001
    good = finite & inrange
    if good.sum() >= 3:
        med = np.median(redchi2[good])
        mad = MAD_TO_SIGMA * np.median(np.abs(redchi2[good] - med))
        good &= redchi2 < med + max(5.0 * mad, 0.5 * med)
    return good
