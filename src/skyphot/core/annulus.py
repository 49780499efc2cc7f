"""Which pixels of a local-background annulus hold other sources' light.

A star's local background is the clipped median of an annulus 3-8 FWHM wide, so a detected
neighbour often falls in it; the clipping removes its core but not its wings, which lift the
median. Calibration stars are chosen with no detected neighbour near their centre, so their
annuli hold more neighbour light than their fit circles: on simulated 2048^2 frames the
PSF-fit flux came out low by ~0.25 ADU/px times the fit's effective area (-42 ADU with
>1e5 ADU of neighbours in the annulus, +25 ADU with none; 20 000 stars), the zero point
~1 mmag low (0.35 of its error). Leaving each detected source's disc out of the annuli of the
other positions removes that: what remains is light too faint to detect, which is spread
like the light inside the fit circle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyphot.core.neighbours import pairs_within
from skyphot.core.psf import moffat_alpha
from skyphot.errors import InputError

# A source's disc reaches where its PSF wing falls to this fraction of the pixel noise.
WING_LEVEL = 0.1
# Discs are never smaller than this many FWHM (a detection just above threshold)...
_MIN_RADIUS_FWHM = 1.0
# ...nor larger (a saturated star: its flux is underestimated, its extent is not).
_MAX_RADIUS_FWHM = 10.0
# Discs extend to this many second-moment radii of an extended source (a galaxy).
_EXTENT_SIGMAS = 3.0
# A source centred within max(this many FWHM, 2 a) of a position is that position's own
# source (the star itself, or the galaxy a transient sits on): its light stays.
_OWN_RADIUS_FWHM = 0.5


@dataclass(frozen=True)
class SourceDiscs:
    """Discs around detected sources whose pixels a local background leaves out.

    ``x, y``: centres (px); ``radius``: disc radii (px); ``own_radius``: a position closer
    than this to a centre belongs to that source and keeps its light.
    """

    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    own_radius: np.ndarray

    def __post_init__(self) -> None:
        sizes = {a.shape for a in (self.x, self.y, self.radius, self.own_radius)}
        if len(sizes) != 1 or self.x.ndim != 1:
            raise InputError(
                "SourceDiscs: x, y, radius and own_radius need one value per source, got "
                f"shapes {sorted(sizes)}"
            )

    @property
    def reach(self) -> float:
        """The largest disc radius (px; 0 without discs)."""
        return float(self.radius.max()) if self.radius.size else 0.0


def moffat_radius(
    flux: np.ndarray, level: np.ndarray, *, fwhm: float, beta: float
) -> np.ndarray:
    """Radius (px) where a Moffat star of ``flux`` falls to ``level`` per pixel (0 if never).

    Solves ``flux (beta - 1) / (pi alpha^2) (1 + r^2 / alpha^2)^-beta = level``.
    """
    if not (fwhm > 0 and beta > 1):
        raise InputError(f"moffat_radius needs fwhm > 0 and beta > 1, got {fwhm}, {beta}")
    alpha = float(moffat_alpha(fwhm, beta))
    peak = np.asarray(flux, dtype=float) * (beta - 1.0) / (np.pi * alpha**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = peak / np.asarray(level, dtype=float)
        r2 = alpha**2 * (np.power(np.maximum(ratio, 0.0), 1.0 / beta) - 1.0)
    return np.sqrt(np.where(np.isfinite(r2) & (r2 > 0), r2, 0.0))


def source_discs(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    a: np.ndarray,
    noise: np.ndarray,
    *,
    fwhm: float,
    beta: float = 3.0,
    level: float = WING_LEVEL,
) -> SourceDiscs:
    """The discs of detected sources (``flux`` ADU, second-moment semi-major axis ``a`` px,
    pixel ``noise`` ADU at each): where a Moffat of ``fwhm``/``beta`` with that flux is above
    ``level`` times the noise, or within 3 ``a`` for an extended source; sources with a
    non-finite position are dropped."""
    xs, ys, fl, aa, sig = (np.asarray(v, dtype=float).ravel() for v in (x, y, flux, a, noise))
    if len({xs.size, ys.size, fl.size, aa.size, sig.size}) != 1:
        raise InputError("source_discs: x, y, flux, a and noise need one value per source")
    keep = np.isfinite(xs) & np.isfinite(ys)
    wing = moffat_radius(np.where(np.isfinite(fl), fl, 0.0)[keep],
                         np.maximum(sig[keep], 1e-30) * level, fwhm=fwhm, beta=beta)
    extent = _EXTENT_SIGMAS * np.where(np.isfinite(aa), aa, 0.0)[keep]
    radius = np.clip(np.maximum(wing, extent), _MIN_RADIUS_FWHM * fwhm, _MAX_RADIUS_FWHM * fwhm)
    own = np.maximum(_OWN_RADIUS_FWHM * fwhm, 2.0 * np.where(np.isfinite(aa), aa, 0.0)[keep])
    return SourceDiscs(x=xs[keep], y=ys[keep], radius=radius, own_radius=own)


def covered_by_others(
    discs: SourceDiscs,
    x: np.ndarray,
    y: np.ndarray,
    cols: np.ndarray,
    rows: np.ndarray,
    *,
    reach: float,
) -> np.ndarray:
    """(n, m) True where pixel (``cols[i, k]``, ``rows[i, k]``) lies in the disc of a source
    other than position i's own. ``reach``: how far from a position its pixels go (px)."""
    out = np.zeros(cols.shape, dtype=bool)
    if discs.x.size == 0 or x.size == 0:
        return out
    pos = np.column_stack([x, y])
    centres = np.column_stack([discs.x, discs.y])
    i, j, dist = pairs_within(pos, centres, reach + discs.reach + 1.0)
    other = (dist > discs.own_radius[j]) & (dist - discs.radius[j] < reach + 1.0)
    i, j = i[other], j[other]
    # In chunks of pairs: each pair costs one row of m pixels.
    step = max(1, 2_000_000 // max(cols.shape[1], 1))
    for s in range(0, i.size, step):
        ii, jj = i[s:s + step], j[s:s + step]
        d2 = (cols[ii] - discs.x[jj, None]) ** 2 + (rows[ii] - discs.y[jj, None]) ** 2
        inside = d2 < discs.radius[jj, None] ** 2
        # several pairs can share a position: OR them in
        np.logical_or.at(out, ii, inside)
    return out
