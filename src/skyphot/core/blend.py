"""Stars within 2 FWHM of the target, fitted together with it.

Beyond 2 FWHM a neighbour is fitted on its own and subtracted (``core.deblend``). Closer,
its fit circle holds much of the target's light and the target's holds much of its: fitted
one after the other each takes the other's light (a 20th-magnitude target 1.4-1.9 FWHM
from a star 3.5-17 times brighter came out 15-300 % too bright).
Here the target's flux at its fixed position and each close star's flux and position are
fitted together over all their fit circles, above the target's local background. Two kinds
of close star are found:

- detected point sources 0.75-2 FWHM from the target;
- an undetected or unresolved companion (below the detection threshold, or merged with the
  target into one detection): the strongest point-like residual 0.6-3 FWHM from the target
  after the first fit, at 5 sigma or more, starts a companion (not when a galaxy is
  detected that close: its light is no star's). It is kept when it stays
  significant (5 sigma) and at least 5 % of the target's flux in a fit that also lets the
  target's position move by up to 0.3 FWHM: an error in the target's position leaves a
  dipole residual that a companion would otherwise take for itself.

The stars' fitted PSFs are subtracted from a copy of the image, on which the target is then
measured as usual; the error the joint fit adds (its degeneracy, beyond the target's own
noise, and the PSF model's error on the light removed) goes into the target's flux error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from skyphot.core.deblend import (
    CLOSE_NEIGHBOUR_FWHM,
    ForcedFit,
    NeighbourLight,
    add_stamp,
    subtracted_light,
)
from skyphot.core.masking import MaskBits
from skyphot.core.photometry import ring_level
from skyphot.core.psf import PSFModel

# Detections nearer than this (FWHM) are the target's own: a faint target's detection
# centroid scatters by ~FWHM / SNR.
OWN_DETECTION_FWHM = 0.75
# A star's fitted position may move this far (FWHM) from where it started (a blend's
# centroids pull toward each other) but come no nearer the target than this.
_MAX_SHIFT_FWHM = 0.6
_MIN_SEPARATION_FWHM = 0.6
# Fraction of the close stars' light under the target's fit taken as the PSF model's error:
# 1.5 FWHM out a Moffat changes by ~1.2 % per 1 % of beta, which is known to 1-2 %.
CORE_MODEL_UNCERTAINTY = 0.03
# Undetected companions are looked for out to this distance (FWHM): a star undetected
# 2-3 FWHM away still puts light in the fit circle. None is looked for when a detection
# that is no point source (a galaxy: its light is no star's) lies this close.
_COMPANION_REACH_FWHM = 3.0
# A residual this significant (matched filter) starts a companion, which is kept when its
# flux has this S/N and is this fraction of the target's with the target's position free
# within this many FWHM.
_COMPANION_SNR = 5.0
_COMPANION_FRACTION = 0.05
# ... and when its light in the target's fit is at least this fraction of the target's noise
_COMPANION_MIN_LIGHT = 0.2
_TARGET_SHIFT_FWHM = 0.3
_ITERATIONS = 15


@dataclass(frozen=True)
class _Solution:
    """A joint fit: the stars' positions, all fluxes (target first) and their errors, the
    error the stars add to the target's flux, and the residual over the grid."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    extra_error: float
    residual: np.ndarray
    at_target: np.ndarray
    """Each star's light (ADU) as a PSF fit at the target sees it."""
    alone_error: float
    """The target's flux error from its own fit alone (ADU)."""


@dataclass(frozen=True)
class _Grid:
    """The pixels around the target on which the fit works: ``data`` (less the local
    background), its background variance, which pixels are ``valid`` (on the frame,
    finite, unmasked) and the grid's corner ``origin`` (frame px)."""

    psf: PSFModel
    gain: float
    x: float
    y: float
    origin: tuple[int, int]
    data: np.ndarray
    var_bg: np.ndarray
    valid: np.ndarray
    radius: float
    ring: float

    @classmethod
    def around(
        cls, data_sub: np.ndarray, x: float, y: float, *, fit: ForcedFit, local: float,
        ring: float,
    ) -> _Grid:
        fwhm = fit.psf.fwhm_at(x, y)
        reach = (_COMPANION_REACH_FWHM + _MAX_SHIFT_FWHM) * fwhm + fit.radius
        half = int(np.ceil(reach)) + 2
        size = 2 * half + 1
        gx0, gy0 = round(x) - half, round(y) - half
        ny, nx = data_sub.shape
        rows, cols = np.mgrid[gy0:gy0 + size, gx0:gx0 + size]
        on = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
        r, c = np.clip(rows, 0, ny - 1), np.clip(cols, 0, nx - 1)
        # index first: converting a whole frame would cost more than the fit
        cut = np.asarray(data_sub)[r, c].astype(float) - local
        var = np.asarray(fit.rms)[r, c].astype(float) ** 2
        valid = on & np.isfinite(cut) & np.isfinite(var) & (var > 0)
        if fit.mask is not None:
            valid &= np.asarray(fit.mask)[r, c] == 0
        return cls(psf=fit.psf, gain=fit.gain, x=x, y=y, origin=(gx0, gy0), data=cut,
                   var_bg=var, valid=valid, radius=fit.radius, ring=ring)

    @property
    def size(self) -> int:
        return int(self.data.shape[0])

    def unit_psf(self, sx: float, sy: float) -> np.ndarray:
        """Unit-flux PSF at frame (sx, sy) over the whole grid."""
        grid = np.zeros(self.data.shape)
        stamp, x0, y0 = self.psf.render(float(sx), float(sy), self.size + 2)
        add_stamp(grid, stamp, x0 - self.origin[0], y0 - self.origin[1])
        return grid

    def frame_xy(self) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = np.indices(self.data.shape)
        return np.asarray(cols + self.origin[0]), np.asarray(rows + self.origin[1])

    def fit(self, sx: np.ndarray, sy: np.ndarray, *, free_target: bool = False
            ) -> _Solution | None:
        """Fit the target and stars starting at (sx, sy) over their fit circles; the target
        stays at its position unless ``free_target`` (then within 0.3 FWHM of it)."""
        cols, rows = self.frame_xy()
        fwhm = self.psf.fwhm_at(self.x, self.y)
        start_x = np.concatenate([[self.x], np.asarray(sx, float)])
        start_y = np.concatenate([[self.y], np.asarray(sy, float)])
        use = np.zeros(self.data.shape, dtype=bool)
        for px, py in zip(start_x, start_y, strict=True):
            use |= (cols - px) ** 2 + (rows - py) ** 2 <= self.radius**2
        use &= self.valid
        free = np.ones(start_x.size, dtype=bool)
        free[0] = free_target
        limit = np.where(np.arange(start_x.size) == 0, _TARGET_SHIFT_FWHM, _MAX_SHIFT_FWHM) * fwhm
        if int(use.sum()) <= start_x.size + 2 * int(free.sum()):
            return None
        data, var_bg = self.data[use], self.var_bg[use]
        xs, ys = start_x.copy(), start_y.copy()
        w = 1.0 / var_bg
        for _ in range(_ITERATIONS):
            psfs = self._psfs(xs, ys)
            a = self._columns(psfs, use)
            flux = _weighted_solve(a, data, w)
            w = 1.0 / (var_bg + np.maximum(a @ flux, 0.0) / self.gain)
            if not free.any():
                break
            j = self._jacobian(a, flux, psfs, use, free)
            step = np.clip(_weighted_solve(j, data - a @ flux, w)[a.shape[1]:],
                           -0.25 * fwhm, 0.25 * fwhm)
            nx_, ny_ = xs.copy(), ys.copy()
            nx_[free] += step[0::2]
            ny_[free] += step[1::2]
            shift = np.hypot(nx_ - start_x, ny_ - start_y)
            keep = np.where(shift > limit, limit / np.maximum(shift, 1e-12), 1.0)
            xs = start_x + (nx_ - start_x) * keep
            ys = start_y + (ny_ - start_y) * keep
            if float(np.max(np.abs(step))) < 0.01:
                break
        psfs = self._psfs(xs, ys)
        a = self._columns(psfs, use)
        flux = _weighted_solve(a, data, w)
        j = self._jacobian(a, flux, psfs, use, free)
        resid = data - a @ flux
        dof = max(data.size - j.shape[1], 1)
        chi2 = float(np.sum(resid**2 * w)) / dof
        # a fit clearly worse than its noise: its covariance scaled up by the chi-square
        inflate = chi2 if chi2 > 1.0 + 3.0 * np.sqrt(2.0 / dof) else 1.0
        cov = np.linalg.pinv(j.T @ (j * w[:, None])) * inflate
        alone = 1.0 / float(np.sum(a[:, 0] ** 2 * w))
        model = flux[0] * (psfs[0] - self.ring)
        for f, q in zip(flux[1:], psfs[1:], strict=True):
            model = model + f * q
        p = psfs[0] if not free_target else self.unit_psf(self.x, self.y)
        disc = ((cols - self.x) ** 2 + (rows - self.y) ** 2 <= self.radius**2) & self.valid
        spp = float(np.sum(p[disc] ** 2))
        seen = np.array([
            float(np.sum(p[disc] * f * q[disc])) / spp if spp > 0 else 0.0
            for f, q in zip(flux[1:], psfs[1:], strict=True)
        ])
        return _Solution(
            x=xs[1:], y=ys[1:], flux=flux,
            flux_err=np.sqrt(np.maximum(np.diag(cov)[:flux.size], 0.0)),
            extra_error=float(np.sqrt(max(float(cov[0, 0]) - alone, 0.0))),
            residual=np.where(self.valid, self.data - model, 0.0),
            at_target=seen, alone_error=float(np.sqrt(alone)),
        )

    def _psfs(self, xs: np.ndarray, ys: np.ndarray) -> list[np.ndarray]:
        """Each star's unit PSF over the grid (the target's first)."""
        return [self.unit_psf(px, py) for px, py in zip(xs, ys, strict=True)]

    def _columns(self, psfs: list[np.ndarray], use: np.ndarray) -> np.ndarray:
        # the target's template less its own wing in the annulus, as the forced fit's
        cols = [(psfs[0] - self.ring)[use]] + [q[use] for q in psfs[1:]]
        return np.stack(cols, axis=1)

    @staticmethod
    def _jacobian(a: np.ndarray, flux: np.ndarray, psfs: list[np.ndarray], use: np.ndarray,
                  free: np.ndarray) -> np.ndarray:
        """Flux columns, then d(model)/d(x, y) of each free star: minus the pixel gradient
        of its PSF (central differences; Gauss-Newton needs only a fair slope, and one
        rendering per star per step instead of five keeps the fit fast)."""
        cols = [a]
        for k in np.flatnonzero(free):
            gy, gx = np.gradient(psfs[k])
            cols.append((-float(flux[k]) * gx[use])[:, None])
            cols.append((-float(flux[k]) * gy[use])[:, None])
        return np.concatenate(cols, axis=1)

    def companion_start(self, residual: np.ndarray, taken_x: np.ndarray, taken_y: np.ndarray
                        ) -> tuple[float, float, float]:
        """The strongest point-like residual 0.6-3 FWHM from the target and clear of the
        stars already fitted: its frame position and matched-filter S/N (the PSF at the
        target, over a square of the fit circle's size)."""
        fwhm = self.psf.fwhm_at(self.x, self.y)
        half = int(np.ceil(self.radius))
        p, _, _ = self.psf.render(float(round(self.x)), float(round(self.y)), 2 * half + 1)
        w = np.where(self.valid, 1.0 / self.var_bg, 0.0)
        num = _correlate(residual * w, p)
        den = _correlate(w, p * p)
        snr = np.where(den > 0, num / np.sqrt(np.maximum(den, 1e-300)), 0.0)
        cols, rows = self.frame_xy()
        d = np.hypot(cols - self.x, rows - self.y)
        where = (d >= _MIN_SEPARATION_FWHM * fwhm) & (d < _COMPANION_REACH_FWHM * fwhm) & self.valid
        for tx, ty in zip(taken_x, taken_y, strict=True):
            where &= np.hypot(cols - tx, rows - ty) > _MIN_SEPARATION_FWHM * fwhm
        if not where.any():
            return float("nan"), float("nan"), 0.0
        k = int(np.argmax(np.where(where, snr, -np.inf)))
        return float(cols.flat[k]), float(rows.flat[k]), float(snr.flat[k])


def fit_close_neighbours(
    data_sub: np.ndarray, x: float, y: float, *, fit: ForcedFit, stellar: np.ndarray
) -> NeighbourLight:
    """Fit the close stars (see the module's docstring) together with a PSF at (``x``,
    ``y``) and subtract them from a copy of ``data_sub``.

    ``fit``: how the target is measured (its fit circle, local-background annulus and the
    detections' discs); ``stellar``: one point-source flag per disc. ``error`` of
    the result is the fit's degeneracy (joint minus alone, in quadrature; scaled by the
    fit's reduced chi-square when that is significantly above 1) and 3 % of the subtracted
    light under the target. Stars that do not converge to a positive flux at least 0.6 FWHM
    from the target are left alone (the result's BLENDED flag still reports a detected
    one); ``data_sub`` itself comes back when nothing is subtracted."""
    psf, radius, annulus, discs, mask = fit.psf, fit.radius, fit.annulus, fit.discs, fit.mask
    fwhm = psf.fwhm_at(x, y)
    dist = np.hypot(discs.x - x, discs.y - y)
    near = np.flatnonzero(np.asarray(stellar, dtype=bool) & (dist >= OWN_DETECTION_FWHM * fwhm)
                          & (dist < CLOSE_NEIGHBOUR_FWHM * fwhm))
    if mask is not None and near.size:
        ny, nx = mask.shape
        col = np.clip(np.rint(discs.x[near]), 0, nx - 1).astype(np.intp)
        row = np.clip(np.rint(discs.y[near]), 0, ny - 1).astype(np.intp)
        # a saturated star's core is no PSF to fit
        near = near[(np.asarray(mask)[row, col] & int(MaskBits.SATURATED)) == 0]
    local = float(fit.photometry(data_sub, np.array([x]), np.array([y])).local_background[0])
    if not np.isfinite(local):
        return NeighbourLight.none(data_sub)
    ring = 0.0 if annulus is None else float(
        ring_level(psf, np.array([x]), np.array([y]), annulus)[0])
    grid = _Grid.around(data_sub, x, y, fit=fit, local=local, ring=ring)
    sx, sy = discs.x[near], discs.y[near]
    solution = grid.fit(sx, sy)
    galaxy_near = bool(np.any(~np.asarray(stellar, dtype=bool)
                              & (dist < _COMPANION_REACH_FWHM * fwhm)))
    if solution is not None and not galaxy_near:
        solution = _with_companion(grid, solution, sx, sy)
    if solution is None or solution.x.size == 0:
        return NeighbourLight.none(data_sub)
    stars = solution.flux[1:]
    ok = (bool(np.all(np.isfinite(stars))) and bool(np.all(stars > 0))
          and bool(np.all(np.hypot(solution.x - x, solution.y - y)
                          >= _MIN_SEPARATION_FWHM * fwhm)))
    if not ok:
        return NeighbourLight.none(data_sub)
    image, at_target = subtracted_light(data_sub, x, y, solution.x, solution.y, stars, psf=psf,
                                        radius=radius)
    return NeighbourLight(
        image=image, x=solution.x, y=solution.y, flux=stars, flux_at_target=at_target,
        error=float(np.hypot(solution.extra_error, CORE_MODEL_UNCERTAINTY * abs(at_target))),
    )


def _with_companion(grid: _Grid, solution: _Solution, sx: np.ndarray, sy: np.ndarray
                    ) -> _Solution:
    """``solution`` plus an undetected companion where its residual calls for one."""
    cx, cy, peak = grid.companion_start(solution.residual, sx, sy)
    if peak < _COMPANION_SNR:
        return solution
    # Is it still there when the target may move? (A position error leaves a dipole.)
    test = grid.fit(np.append(sx, cx), np.append(sy, cy), free_target=True)
    if test is None or not _companion_holds(test, grid):
        return solution
    final = grid.fit(np.append(sx, test.x[-1]), np.append(sy, test.y[-1]))
    return final if final is not None and _companion_holds(final, grid) else solution


def _companion_holds(solution: _Solution, grid: _Grid) -> bool:
    """The last star (the companion) is significant, not a sliver of the target, and stays
    apart from the target's position."""
    f, e = float(solution.flux[-1]), float(solution.flux_err[-1])
    target = float(solution.flux[0])
    apart = float(np.hypot(solution.x[-1] - grid.x, solution.y[-1] - grid.y))
    return bool(
        np.isfinite(f) and e > 0 and f >= _COMPANION_SNR * e
        and f >= _COMPANION_FRACTION * max(target, 0.0)
        and apart >= _MIN_SEPARATION_FWHM * grid.psf.fwhm_at(grid.x, grid.y)
        # a star further out whose light in the target's fit is lost in its noise is left
        and float(solution.at_target[-1]) >= _COMPANION_MIN_LIGHT * solution.alone_error
    )


def _correlate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``image`` correlated with an odd-sized ``kernel``, zero outside (same shape); numpy
    only, as importing scipy.ndimage would cost a one-shot ``skyphot measure`` ~0.2 s."""
    h = kernel.shape[0] // 2
    padded = np.pad(image, h)
    return np.asarray(np.einsum("ijkl,kl->ij", sliding_window_view(padded, kernel.shape), kernel))


def _weighted_solve(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Least-squares solution of a x = b with weights w (pseudo-inverse: a degenerate
    column gets no flux rather than an error)."""
    aw = a * w[:, None]
    return np.asarray(np.linalg.pinv(a.T @ aw) @ (aw.T @ b))
