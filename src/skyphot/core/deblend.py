"""Detected neighbours' light subtracted around a position before it is measured.

A forced PSF fit at the target takes every photon in its fit circle as the target's. A
bright star a few FWHM away puts its wing there: on the benchmark frames a 15th-magnitude
star 3 FWHM from an undetectable target (24.5 mag) made a 6.3-sigma "detection". The
local-background annulus cannot take it out (the star's disc is left out of the annulus,
and its wing is a slope, not a level). Like DAOPHOT's neighbour subtraction, each detected
neighbour whose light reaches the fit circle is fitted with the PSF model at its own
position and subtracted; the target is then measured on what is left. What the subtraction
may have got wrong goes into the target's error: a fixed fraction of the light removed, or
more when PSF fits at probe positions around the neighbour, at the target's distance, find
it left more than noise behind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyphot.core.annulus import SourceDiscs
from skyphot.core.detection import SourceList
from skyphot.core.masking import MaskBits
from skyphot.core.photometry import PSFPhotometry, forced_psf_photometry
from skyphot.core.psf import PSFModel

# Fraction of the subtracted light (as the target's PSF fit sees it) taken as the
# subtraction's error: a Moffat wing 3 FWHM out changes by ~7% for a 1% change in beta
# (d ln I / d beta = -2 ln(r / alpha)), and beta is known to ~1% (see core.psf).
WING_MODEL_UNCERTAINTY = 0.1
# Stamps for the neighbours reach at most this many FWHM (their discs stop at 10).
_MAX_STAMP_FWHM = 12.0
# Neighbours closer than this (FWHM) are left alone: their own fit would hold much of the
# target's light, so subtracting one after the other is wrong there (a simultaneous fit
# is needed: ``core.blend``); the target's own detection and a host's nucleus are that close,
# and the result's BLENDED flag reports such a neighbour.
CLOSE_NEIGHBOUR_FWHM = 2.0
# Probes around the brightest neighbour that sample its residual, and how many must be clear.
_PROBES = 16
_MIN_PROBES = 4
_PROBE_SIGNIFICANCE = 3.0
# A detection whose peak pixel holds at least this fraction of what the PSF's would for its
# flux is a point source; a galaxy spreads its light. (Second moments do not tell: a bright
# star's isophote reaches far into its wings and widens them as much as a galaxy's.)
_POINT_PEAK_FRACTION = 0.5


@dataclass(frozen=True)
class NeighbourLight:
    """Detected neighbours subtracted around a position.

    ``image``: the background-subtracted image less the neighbours' PSF models (the input
    itself, not a copy, when there are none); ``x``, ``y``, ``flux``: the neighbours (px,
    ADU, PSF-fit flux); ``flux_at_target``: the PSF-fit flux (ADU) the subtracted light had
    at the position, i.e. what it added to the target before; ``error``: the error that
    subtraction leaves in the target's flux (ADU).
    """

    image: np.ndarray
    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    flux_at_target: float
    error: float

    @property
    def count(self) -> int:
        return int(self.x.size)

    @classmethod
    def none(cls, data_sub: np.ndarray) -> NeighbourLight:
        """Nothing subtracted: ``data_sub`` itself comes back."""
        empty = np.zeros(0)
        return cls(image=data_sub, x=empty, y=empty, flux=empty, flux_at_target=0.0, error=0.0)


@dataclass(frozen=True)
class ForcedFit:
    """How the target is measured, for measuring its neighbours and the probes alike: a
    forced PSF fit with this ``radius`` and local-background ``annulus`` (px), the other
    detections' ``discs`` left out of the annulus."""

    psf: PSFModel
    rms: np.ndarray
    gain: float
    mask: np.ndarray | None
    radius: float
    annulus: tuple[float, float] | None
    discs: SourceDiscs

    def photometry(
        self, image: np.ndarray, xs: np.ndarray, ys: np.ndarray, *, grow: float = 0.0
    ) -> PSFPhotometry:
        """Forced PSF photometry at (``xs``, ``ys``), fit circle and annulus ``grow`` px
        wider."""
        annulus = None if self.annulus is None else (
            self.annulus[0] + grow, self.annulus[1] + grow
        )
        return forced_psf_photometry(
            image, xs, ys, psf=self.psf, rms=self.rms, gain=self.gain, mask=self.mask,
            radius=self.radius + grow, annulus=annulus, exclude=self.discs,
        )


def point_sources(sources: SourceList, mask: np.ndarray, *, psf_peak: float) -> np.ndarray:
    """One flag per detection with a finite position (the order ``core.annulus``'s discs
    keep): True for a point source, i.e. a peak pixel of at least half ``psf_peak`` (the
    unit-flux PSF's brightest pixel) times its flux, or a saturated centre pixel (its peak
    is clipped, its shape is a star's)."""
    finite = np.isfinite(sources.x) & np.isfinite(sources.y)
    ny, nx = mask.shape
    col = np.clip(np.rint(sources.x[finite]), 0, nx - 1).astype(np.intp)
    row = np.clip(np.rint(sources.y[finite]), 0, ny - 1).astype(np.intp)
    saturated = (np.asarray(mask)[row, col] & int(MaskBits.SATURATED)) != 0
    flux = np.asarray(sources.flux[finite], dtype=float)
    peak = np.asarray(sources.peak[finite], dtype=float)
    compact = (flux > 0) & (peak >= _POINT_PEAK_FRACTION * psf_peak * flux)
    return np.asarray(compact | saturated)


def neighbours_reaching(
    discs: SourceDiscs, x: float, y: float, *, radius: float, stellar: np.ndarray,
    min_distance: float,
) -> np.ndarray:
    """Indices of the ``stellar`` discs that reach the circle of ``radius`` px around
    (``x``, ``y``) from at least ``min_distance`` px away.

    Only point sources are subtracted: a galaxy (the host a transient sits on) is no PSF,
    and ``discs.own_radius`` cannot serve here, since a saturated star's second moments
    are inflated (2a reached 12 px for one 12 px from the target)."""
    dist = np.hypot(discs.x - x, discs.y - y)
    return np.flatnonzero(stellar & (dist >= min_distance) & (dist < discs.radius + radius))


def subtract_neighbours(
    data_sub: np.ndarray, x: float, y: float, *, fit: ForcedFit, stellar: np.ndarray
) -> NeighbourLight:
    """Fit and subtract the point sources (``stellar``, one flag per disc of
    ``fit.discs``) whose light reaches the target's fit circle at (``x``, ``y``) from 2 FWHM
    or more away: each measured as the target is (``fit``: its radius and annulus, other
    sources' discs left out of the annulus; masked pixels, a saturated core, left out of
    the fit) at its own position, rendered out past the position's circle and subtracted
    from a copy of ``data_sub``."""
    psf, radius, discs = fit.psf, fit.radius, fit.discs
    fwhm = psf.fwhm_at(x, y)
    near = neighbours_reaching(
        discs, x, y, radius=radius, stellar=np.asarray(stellar, dtype=bool),
        min_distance=CLOSE_NEIGHBOUR_FWHM * fwhm,
    )
    nx_, ny_ = discs.x[near], discs.y[near]
    flux = np.array([_fitted_flux(data_sub, sx, sy, fit) for sx, sy in zip(nx_, ny_, strict=True)])
    ok = np.isfinite(flux) & (flux > 0)
    nx_, ny_, flux = nx_[ok], ny_[ok], flux[ok]
    if flux.size == 0:
        return NeighbourLight.none(data_sub)
    image, at_target = subtracted_light(data_sub, x, y, nx_, ny_, flux, psf=psf, radius=radius)
    # The brightest neighbour's residual, sampled where the target sits relative to it.
    main = int(np.argmax(flux / np.maximum(np.hypot(nx_ - x, ny_ - y), 1.0) ** 2))
    probed = _probed_residual(image, x, y, (float(nx_[main]), float(ny_[main])), fit)
    return NeighbourLight(
        image=image, x=nx_, y=ny_, flux=flux, flux_at_target=at_target,
        error=max(WING_MODEL_UNCERTAINTY * abs(at_target), probed),
    )


def subtracted_light(
    data_sub: np.ndarray, x: float, y: float, xs: np.ndarray, ys: np.ndarray, flux: np.ndarray,
    *, psf: PSFModel, radius: float,
) -> tuple[np.ndarray, float]:
    """A copy of ``data_sub`` (in its float precision; the caller's array is never changed)
    less PSFs of ``flux`` at (``xs``, ``ys``), and what that light was worth to a PSF fit
    of ``radius`` px at (``x``, ``y``) (ADU)."""
    fwhm = psf.fwhm_at(x, y)
    image = np.array(data_sub, dtype=np.result_type(data_sub.dtype, np.float32))
    # The subtracted light over a box holding the position's fit circle.
    half = int(np.ceil(radius)) + 1
    box = 2 * half + 1
    p, bx0, by0 = psf.render(float(x), float(y), box)
    seen = np.zeros((box, box))
    for sx, sy, f in zip(xs, ys, flux, strict=True):
        reach = min(float(np.hypot(sx - x, sy - y)) + radius + 2.0, _MAX_STAMP_FWHM * fwhm)
        size = 2 * int(np.ceil(reach)) + 1
        stamp, x0, y0 = psf.render(float(sx), float(sy), size)
        light = f * stamp
        add_stamp(image, -light, x0, y0)
        add_stamp(seen, light, x0 - bx0, y0 - by0)
    dy, dx = np.mgrid[by0:by0 + box, bx0:bx0 + box]
    inside = (dx - x) ** 2 + (dy - y) ** 2 <= radius**2
    pp = float(np.sum(p[inside] ** 2))
    return image, float(np.sum(p[inside] * seen[inside]) / pp) if pp > 0 else 0.0


def _probed_residual(
    image: np.ndarray, x: float, y: float, centre: tuple[float, float], fit: ForcedFit
) -> float:
    """What a neighbour's subtraction leaves in a PSF fit at the target's distance from it
    (ADU, beyond the noise; 0 when too few probes are clear).

    The fixed fraction of the subtracted light misses a subtraction that failed (a saturated
    core and its bleeding fitted badly: residuals of tens of sigma on simulated frames) or an
    asymmetric wing. Probes on the circle through the target around the neighbour, clear of
    the target and of every other detection, are measured as the target is; the mean square
    of their fluxes less their noise, when it stands out of the noise, is the subtraction's
    error there."""
    cx, cy = centre
    radius, discs = fit.radius, fit.discs
    d = float(np.hypot(x - cx, y - cy))
    angles = np.linspace(0.0, 2.0 * np.pi, _PROBES, endpoint=False) + np.arctan2(y - cy, x - cx)
    px, py = cx + d * np.cos(angles), cy + d * np.sin(angles)
    clear = np.hypot(px - x, py - y) > 2.0 * radius
    ny, nx = image.shape
    clear &= (px > radius) & (px < nx - 1 - radius) & (py > radius) & (py < ny - 1 - radius)
    others = np.hypot(discs.x - cx, discs.y - cy) > 1.0  # every disc but the neighbour's
    for ox, oy, r in zip(discs.x[others], discs.y[others], discs.radius[others], strict=True):
        clear &= np.hypot(px - ox, py - oy) > r + radius
    if int(clear.sum()) < _MIN_PROBES:
        return 0.0
    phot = fit.photometry(image, px[clear], py[clear])
    good = np.isfinite(phot.flux) & np.isfinite(phot.fluxerr_background)
    if int(good.sum()) < _MIN_PROBES:
        return 0.0
    noise = float(np.mean(phot.fluxerr_background[good] ** 2))
    excess = float(np.mean(phot.flux[good] ** 2)) - noise
    # With a handful of probes the mean square scatters by sqrt(2 / n) of the noise: only an
    # excess well above that is a residual (else a clean subtraction inflated the error by
    # ~20% on crowded benchmark frames).
    if excess < _PROBE_SIGNIFICANCE * np.sqrt(2.0 / int(good.sum())) * noise:
        return 0.0
    return float(np.sqrt(excess))


def _fitted_flux(data_sub: np.ndarray, x: float, y: float, fit: ForcedFit) -> float:
    """A neighbour's PSF-fit flux (ADU; NaN when nothing is left to fit). A saturated
    core is masked: the fit circle (and the annulus) grow by its radius, so the fit has the
    star's wings to go on."""
    core = 0.0
    if fit.mask is not None:
        # masked pixels out to three fit radii: a saturated core several times the circle
        half = int(np.ceil(3.0 * fit.radius))
        ix, iy = round(x), round(y)
        box = np.asarray(fit.mask)[max(iy - half, 0):iy + half + 1,
                                   max(ix - half, 0):ix + half + 1]
        core = float(np.sqrt(np.count_nonzero(box) / np.pi))
    return float(fit.photometry(data_sub, np.array([x]), np.array([y]), grow=core).flux[0])


def add_stamp(target: np.ndarray, stamp: np.ndarray, x0: int, y0: int) -> None:
    """Add ``stamp`` (corner at column ``x0``, row ``y0`` of ``target``) in place, clipped to
    ``target``; only ever applied to arrays the caller created (never to an input)."""
    ny, nx = target.shape
    sy, sx = stamp.shape
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + sx, nx), min(y0 + sy, ny)
    if xa < xb and ya < yb:
        target[ya:yb, xa:xb] += stamp[ya - y0:yb - y0, xa - x0:xb - x0]
