"""Forced PSF-fit and aperture photometry at fixed positions, with a local background.

Noise model: the per-pixel background variance is ``rms**2`` (ADU^2; sky photons and read
noise); a source adds ``max(model, 0) / gain`` (ADU^2). The PSF fit uses background-only
weights: ``F = sum(P D) / sum(P^2)`` over the fit circle, so the ratio of measured to true
flux does not depend on brightness, and its background-only error is the ideal PSF-fit
limit ``sqrt(B * n_eff)`` for a flat background ``B``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep

from skyphot.core.annulus import SourceDiscs, covered_by_others
from skyphot.core.masking import all_finite, bad_pixels
from skyphot.core.psf import PSFModel
from skyphot.errors import ConfigError, InputError

# Sigma clipping of the local-background annulus.
_CLIP_SIGMA = 3.0
_CLIP_ITERATIONS = 5
# Fewer usable annulus pixels than this: the local background is not estimated (0 is used).
_MIN_ANNULUS_PIXELS = 10
# Other sources' discs are left out of an annulus only while this fraction of it remains
# (a crowded field keeps its whole annulus rather than a few pixels).
_MIN_KEPT_FRACTION = 0.25
# Standard error of a median relative to a mean, for Gaussian noise.
_MEDIAN_EFFICIENCY = float(np.sqrt(np.pi / 2.0))


@dataclass(frozen=True)
class PSFPhotometry:
    """Forced PSF-fit photometry; every attribute is an array with one entry per position.

    flux: PSF-fit flux (ADU, total over the plane). fluxerr: its 1-sigma error including the
    source's photon noise. fluxerr_background: the error from background, read noise and the
    local-background estimate only (the detection limit). local_background: the annulus
    level subtracted (ADU/px). n_masked: masked pixels in the fit circle. near_edge: the fit
    circle extends beyond the frame. chi2: reduced chi^2 of the fit. Positions that cannot
    be measured (off the frame, all pixels masked) have NaN flux and errors.

    With ``covariance_radius`` given, three more arrays let a caller form the covariance of
    the flux with an aperture sum of that radius about the same position and with the same
    local background: ``pixel_cov = sum_j w_j var_j`` (ADU^2) over the fit pixels whose
    centres lie in the aperture (``w_j``: the fit's pixel weights, ``var_j`` the pixel
    variance with source photons), ``local_weight = sum_j w_j`` (the fit's response to the
    local level) and ``local_background_err`` (ADU/px). None otherwise.
    """

    flux: np.ndarray
    fluxerr: np.ndarray
    fluxerr_background: np.ndarray
    local_background: np.ndarray
    n_masked: np.ndarray
    near_edge: np.ndarray
    chi2: np.ndarray
    pixel_cov: np.ndarray | None = None
    local_weight: np.ndarray | None = None
    local_background_err: np.ndarray | None = None

    def aperture_covariance(self, area: np.ndarray) -> np.ndarray:
        """Cov(flux, aperture flux) (ADU^2) for apertures of ``area`` px^2 at the same
        positions (the ``covariance_radius`` ones): the shared pixels plus the shared local
        background, subtracted ``local_weight`` times from this flux and ``area`` times from
        the aperture's. Raises ``InputError`` when measured without ``covariance_radius``."""
        if self.pixel_cov is None or self.local_weight is None or (
                self.local_background_err is None):
            raise InputError("the PSF photometry was measured without covariance_radius")
        return np.asarray(self.pixel_cov + self.local_weight * np.asarray(area, dtype=float)
                          * self.local_background_err**2)

    def __len__(self) -> int:
        return int(self.flux.size)


@dataclass(frozen=True)
class AperturePhotometry:
    """Circular-aperture photometry; arrays with one entry per position.

    flux: aperture sum minus local background (ADU). fluxerr: 1-sigma error (background,
    read noise, source photons, local background). local_background: ADU/px. area: aperture
    area on the frame (px^2). n_masked: masked pixels (centres) in the aperture; SEP replaces
    them by the aperture's mean. near_edge: the aperture extends beyond the frame.
    """

    flux: np.ndarray
    fluxerr: np.ndarray
    local_background: np.ndarray
    area: np.ndarray
    n_masked: np.ndarray
    near_edge: np.ndarray

    def __len__(self) -> int:
        return int(self.flux.size)


# --- helpers -----------------------------------------------------------------------------------


def _check_inputs(
    data: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rms: np.ndarray,
    mask: np.ndarray | None,
    gain: float,
    radius: float,
    annulus: tuple[float, float] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    image = np.asarray(data)
    noise = np.asarray(rms)
    if image.ndim != 2:
        raise InputError(f"the image must be 2-d, got shape {image.shape}")
    if noise.shape != image.shape:
        raise InputError(f"rms map shape {noise.shape} does not match the image {image.shape}")
    bad = None
    if mask is not None:
        bad = bad_pixels(mask)
        if bad.shape != image.shape:
            raise InputError(f"mask shape {bad.shape} does not match the image {image.shape}")
    xs = np.atleast_1d(np.asarray(x, dtype=float)).ravel()
    ys = np.atleast_1d(np.asarray(y, dtype=float)).ravel()
    if xs.shape != ys.shape:
        raise InputError(f"x and y have different lengths ({xs.size} and {ys.size})")
    if not (np.isfinite(gain) and gain > 0):
        raise ConfigError(f"gain must be a positive number of e-/ADU, got {gain}")
    if not (np.isfinite(radius) and radius > 0):
        raise ConfigError(f"the photometry radius must be positive, got {radius} px")
    if annulus is not None and not (0 < annulus[0] < annulus[1]):
        raise ConfigError(
            f"the background annulus must satisfy 0 < inner < outer, got {annulus} px"
        )
    return image, xs, ys, noise, bad


def _gather(
    image: np.ndarray, x0: np.ndarray, y0: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size) cut-outs with corners (x0, y0), and which of their pixels are on the frame.

    Off-frame pixels hold an arbitrary on-frame value; use the returned validity.
    """
    ny, nx = image.shape
    offs = np.arange(size)
    cols = x0[:, None] + offs[None, :]
    rows = y0[:, None] + offs[None, :]
    valid = ((cols >= 0) & (cols < nx))[:, None, :] & ((rows >= 0) & (rows < ny))[:, :, None]
    flat = (np.clip(rows, 0, ny - 1) * nx)[:, :, None] + np.clip(cols, 0, nx - 1)[:, None, :]
    return _take(image, flat), valid


def _take(image: np.ndarray, flat_index: np.ndarray) -> np.ndarray:
    """Pixels at flat indices (faster than 2-d fancy indexing)."""
    return np.take(np.ascontiguousarray(image).ravel(), flat_index)


def _distance2(
    x: np.ndarray, y: np.ndarray, x0: np.ndarray, y0: np.ndarray, size: int
) -> np.ndarray:
    offs = np.arange(size, dtype=float)
    dx = (x0 - x)[:, None] + offs[None, :]
    dy = (y0 - y)[:, None] + offs[None, :]
    return dy[:, :, None] ** 2 + dx[:, None, :] ** 2


def _local_background(
    image: np.ndarray,
    noise: np.ndarray,
    bad: np.ndarray | None,
    x: np.ndarray,
    y: np.ndarray,
    annulus: tuple[float, float] | None,
    exclude: SourceDiscs | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sigma-clipped median of the annulus (ADU/px) and its 1-sigma error, per position.

    ``exclude``: discs of other detected sources, left out of each annulus (``core.annulus``)
    while at least a quarter of it remains. Positions whose annulus has too few usable
    pixels get 0 +- 0: the smooth background map already subtracted stands.
    """
    n = x.size
    level = np.zeros(n)
    error = np.zeros(n)
    if annulus is None or n == 0:
        return level, error
    r_in, r_out = annulus
    # Only pixels that can fall in the annulus for any sub-pixel centre are gathered.
    half = int(np.ceil(r_out + 1.0))
    oy, ox = np.mgrid[-half:half + 1, -half:half + 1]
    rr = np.hypot(ox, oy)
    ring = (rr >= r_in - 0.75) & (rr <= r_out + 0.75)
    ox, oy = ox[ring], oy[ring]
    ny, nx = image.shape
    xr = np.where(np.isfinite(x), np.rint(x), -10**6).astype(np.int64)
    yr = np.where(np.isfinite(y), np.rint(y), -10**6).astype(np.int64)
    cols = xr[:, None] + ox[None, :]
    rows = yr[:, None] + oy[None, :]
    valid = (cols >= 0) & (cols < nx) & (rows >= 0) & (rows < ny)
    d2 = (cols - x[:, None]) ** 2 + (rows - y[:, None]) ** 2
    flat = np.clip(rows, 0, ny - 1) * nx + np.clip(cols, 0, nx - 1)
    cut = _take(image, flat)
    sig_cut = _take(noise, flat)
    use = valid & (d2 >= r_in**2) & (d2 <= r_out**2) & np.isfinite(cut)
    if bad is not None:
        use &= ~_take(bad, flat)
    if exclude is not None:
        kept = use & ~covered_by_others(exclude, x, y, cols, rows, reach=r_out + 1.0)
        n_kept = kept.sum(axis=1)
        enough = n_kept >= np.maximum(_MIN_ANNULUS_PIXELS, _MIN_KEPT_FRACTION * use.sum(axis=1))
        use = np.where(enough[:, None], kept, use)
    values = np.where(use, cut, np.inf).astype(np.float32)
    # One sort per position: clipping then only moves the ends of a contiguous range, and
    # the median and a percentile-based sigma are single look-ups in that range.
    values.sort(axis=1)
    count = use.sum(axis=1).astype(np.int64)
    last = values.shape[1] - 1
    rows_i = np.arange(n)
    lo = np.zeros(n, dtype=np.int64)
    hi = count.copy()
    med = np.zeros(n)
    std = np.zeros(n)
    for _ in range(_CLIP_ITERATIONS):
        m = np.maximum(hi - lo, 1)
        med = 0.5 * (values[rows_i, np.clip(lo + (m - 1) // 2, 0, last)].astype(float)
                     + values[rows_i, np.clip(lo + m // 2, 0, last)])
        p16 = values[rows_i, np.clip(lo + np.floor(0.1587 * (m - 1)).astype(np.int64), 0, last)]
        p84 = values[rows_i, np.clip(lo + np.ceil(0.8413 * (m - 1)).astype(np.int64), 0, last)]
        # Rows without usable pixels hold only +inf; their result is discarded below.
        std = np.where(count > 0, 0.5 * (np.where(count > 0, p84, 0.0).astype(float)
                                         - np.where(count > 0, p16, 0.0)), 0.0)
        # Bounds are recomputed from all pixels each time (the range may also grow back).
        new_lo = _row_search(values, med - _CLIP_SIGMA * std, "left", count)
        new_hi = _row_search(values, med + _CLIP_SIGMA * std, "right", count)
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
            break
        keep = (new_hi - new_lo) >= _MIN_ANNULUS_PIXELS
        lo = np.where(keep, new_lo, lo)
        hi = np.where(keep, new_hi, hi)
    ok = count >= _MIN_ANNULUS_PIXELS
    n_used = np.maximum(hi - lo, 1)
    map_var = np.where(use, sig_cut.astype(float) ** 2, 0.0).sum(axis=1)
    map_sigma = np.sqrt(map_var / np.maximum(count, 1))
    # The map noise is right for a clean sky; a crowded annulus scatters more, so the
    # larger of the two is used.
    sigma = np.maximum(map_sigma, std)
    level = np.where(ok, med, 0.0)
    error = np.where(ok, _MEDIAN_EFFICIENCY * sigma / np.sqrt(n_used), 0.0)
    return level, error


def _row_search(values: np.ndarray, threshold: np.ndarray, side: str, hi: np.ndarray) -> np.ndarray:
    """Per row, the number of sorted values below (side='left') or up to ('right') the
    threshold, never beyond ``hi``."""
    if side == "left":
        count = np.sum(values < threshold[:, None], axis=1)
    else:
        count = np.sum(values <= threshold[:, None], axis=1)
    return np.minimum(count, hi).astype(np.int64)


def _render_psf(
    psf: PSFModel, x: np.ndarray, y: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PSF stamps (n, size, size) and corners, batched when the model supports it."""
    render_many = getattr(psf, "render_many", None)
    if callable(render_many):
        stamps, x0, y0 = render_many(x, y, size)
        return np.asarray(stamps, dtype=float), np.asarray(x0), np.asarray(y0)
    stamps = np.empty((x.size, size, size))
    x0 = np.empty(x.size, dtype=np.int64)
    y0 = np.empty(x.size, dtype=np.int64)
    for i in range(x.size):
        stamp, x0[i], y0[i] = psf.render(float(x[i]), float(y[i]), size)
        stamps[i] = stamp
    return stamps, x0, y0


# --- PSF photometry ------------------------------------------------------------------------------


def forced_psf_photometry(
    data_sub: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    psf: PSFModel,
    rms: np.ndarray,
    gain: float,
    mask: np.ndarray | None = None,
    radius: float,
    annulus: tuple[float, float] | None,
    covariance_radius: float | None = None,
    exclude: SourceDiscs | None = None,
) -> PSFPhotometry:
    """PSF-fit flux (ADU) at fixed pixel positions: a linear amplitude fit over a circle.

    ``data_sub``: background-subtracted image (ADU); ``rms``: per-pixel background noise
    (ADU); ``gain``: e-/ADU; ``radius``: fit-circle radius (px); ``annulus``: inner/outer radius
    (px) of the local-background annulus, or None for no local background. Masked pixels are
    left out of the fit (the flux stays unbiased, only noisier); positions near the edge are
    fitted on the pixels on the frame and flagged ``near_edge``. A position with no usable
    pixel gets NaN flux and errors — the caller decides what that means.
    ``covariance_radius`` (px): also report what the flux's covariance with an aperture sum
    of that radius needs (see ``PSFPhotometry``). ``exclude``: other detected sources'
    discs, left out of the annulus (``core.annulus.source_discs``).
    """
    image, xs, ys, noise, bad = _check_inputs(
        data_sub, x, y, rms, mask, gain, radius, annulus
    )
    n = xs.size
    ny, nx = image.shape
    finite_pos = np.isfinite(xs) & np.isfinite(ys)
    # Non-finite positions are parked far off the frame: they get no pixels and NaN flux.
    xq = np.where(finite_pos, xs, -1e6)
    yq = np.where(finite_pos, ys, -1e6)
    size = 2 * int(np.ceil(radius + 0.5)) + 1
    if n == 0:
        empty = np.zeros(0)
        return PSFPhotometry(empty, empty, empty, empty, np.zeros(0, dtype=np.int64),
                             np.zeros(0, dtype=bool), empty)
    model, x0, y0 = _render_psf(psf, np.where(finite_pos, xs, 0.0),
                                np.where(finite_pos, ys, 0.0), size)
    x0 = np.where(finite_pos, x0, -10**7).astype(np.int64)
    y0 = np.where(finite_pos, y0, -10**7).astype(np.int64)
    cut, valid = _gather(image, x0, y0, size)
    sig, _ = _gather(noise, x0, y0, size)
    inside = _distance2(xq, yq, x0, y0, size) <= radius**2
    masked = np.zeros_like(valid) if bad is None else _gather(bad, x0, y0, size)[0]
    cut = cut.astype(float)
    var_bg = sig.astype(float) ** 2
    use = inside & valid & ~masked & np.isfinite(cut) & np.isfinite(var_bg) & (var_bg > 0)
    n_masked = np.sum(inside & valid & masked, axis=(1, 2))

    local, local_err = _local_background(image, noise, bad, xq, yq, annulus, exclude)
    # The annulus also holds the star's own wings, so the local level takes in ``F * ring``;
    # fitting the template P - ring keeps the flux a total flux (0.1-0.5 % otherwise).
    ring = np.zeros(n) if annulus is None else ring_level(
        psf, np.where(finite_pos, xs, 0.0), np.where(finite_pos, ys, 0.0), annulus
    )
    data = np.where(use, cut - local[:, None, None], 0.0)
    p = np.where(use, model - ring[:, None, None], 0.0)
    spp = np.sum(p * p, axis=(1, 2))
    sp = np.sum(p, axis=(1, 2))
    fit_ok = finite_pos & (spp > 0)
    spp_safe = np.where(fit_ok, spp, 1.0)
    flux = np.sum(p * data, axis=(1, 2)) / spp_safe
    var_background = (
        np.sum(p * p * np.where(use, var_bg, 0.0), axis=(1, 2)) / spp_safe**2
        + (local_err * sp / spp_safe) ** 2
    )
    source_var = np.maximum(flux[:, None, None] * p, 0.0) / gain
    var_total = var_background + np.sum(p * p * source_var, axis=(1, 2)) / spp_safe**2
    pix_var = np.where(use, var_bg + source_var, 1.0)
    resid2 = np.where(use, (data - flux[:, None, None] * p) ** 2 / pix_var, 0.0)
    n_used = np.sum(use, axis=(1, 2))
    chi2 = np.sum(resid2, axis=(1, 2)) / np.maximum(n_used - 1, 1)
    cov_fields: dict[str, np.ndarray] = {}
    if covariance_radius is not None:
        # The fit and an aperture sum share the photons of the pixels in both: each adds
        # w_j * 1 * var_j to their covariance (w_j = p_j / sum p^2).
        shared = _distance2(xq, yq, x0, y0, size) <= covariance_radius**2
        pix_cov = np.sum(np.where(use & shared, p * pix_var, 0.0), axis=(1, 2)) / spp_safe
        nan_n = np.full(n, np.nan)
        cov_fields = {
            "pixel_cov": np.where(fit_ok, pix_cov, nan_n),
            "local_weight": np.where(fit_ok, sp / spp_safe, nan_n),
            "local_background_err": np.where(finite_pos, local_err, nan_n),
        }

    near_edge = (xq - radius < -0.5) | (xq + radius > nx - 0.5) | (
        yq - radius < -0.5) | (yq + radius > ny - 0.5)
    nan = np.full(n, np.nan)
    return PSFPhotometry(
        flux=np.where(fit_ok, flux, nan),
        fluxerr=np.where(fit_ok, np.sqrt(var_total), nan),
        fluxerr_background=np.where(fit_ok, np.sqrt(var_background), nan),
        local_background=np.where(finite_pos, local, nan),
        n_masked=n_masked.astype(np.int64),
        near_edge=near_edge | ~finite_pos,
        chi2=np.where(fit_ok, chi2, nan),
        **cov_fields,
    )


def ring_level(
    psf: PSFModel, x: np.ndarray, y: np.ndarray, annulus: tuple[float, float]
) -> np.ndarray:
    """Mean of the unit-flux PSF over the annulus (px radii) at each position, per px.

    A star of total flux F raises a local background measured in that annulus by about
    ``F * ring_level``. Pixel centres decide membership, as in ``_local_background``.
    """
    xs = np.atleast_1d(np.asarray(x, dtype=float)).ravel()
    ys = np.atleast_1d(np.asarray(y, dtype=float)).ravel()
    r_in, r_out = annulus
    if xs.size == 0:
        return np.zeros(0)
    ring_mean = getattr(psf, "ring_mean", None)
    if callable(ring_mean):  # analytic models answer without rendering big stamps
        return np.asarray(ring_mean(xs, ys, r_in, r_out), dtype=float)
    size = 2 * int(np.ceil(r_out + 1.0)) + 1
    stamps, x0, y0 = _render_psf(psf, xs, ys, size)
    d2 = _distance2(xs, ys, x0, y0, size)
    ring = (d2 >= r_in**2) & (d2 <= r_out**2)
    count = np.maximum(ring.sum(axis=(1, 2)), 1)
    return np.asarray(np.sum(np.where(ring, stamps, 0.0), axis=(1, 2)) / count)


# --- aperture photometry -----------------------------------------------------------------------


def aperture_photometry(
    data_sub: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    radius: float,
    rms: np.ndarray,
    gain: float,
    mask: np.ndarray | None = None,
    annulus: tuple[float, float] | None,
    exclude: SourceDiscs | None = None,
) -> AperturePhotometry:
    """Exact-overlap circular aperture sums (ADU) at pixel positions, minus a local background.

    ``radius`` and ``annulus`` in px; ``rms`` per-pixel background noise (ADU); ``gain``
    e-/ADU. Masked pixels are replaced by the mean of the aperture's unmasked pixels (SEP's
    correction); positions off the frame or with non-finite coordinates get NaN.
    ``exclude``: other detected sources' discs, left out of the annulus.
    """
    image, xs, ys, noise, bad = _check_inputs(
        data_sub, x, y, rms, mask, gain, radius, annulus
    )
    n = xs.size
    ny, nx = image.shape
    finite_pos = np.isfinite(xs) & np.isfinite(ys)
    xq = np.where(finite_pos, xs, -1e6)
    yq = np.where(finite_pos, ys, -1e6)
    # SEP takes float32 or float64 as is; only other types are converted.
    work = np.ascontiguousarray(image if image.dtype in (np.float32, np.float64)
                                else image.astype(np.float64))
    err = np.ascontiguousarray(noise if noise.dtype in (np.float32, np.float64)
                               else noise.astype(np.float64))
    if not work.flags.writeable:  # SEP's buffers must be writable
        work = work.copy()
    if not err.flags.writeable:
        err = err.copy()
    sep_mask = None if bad is None else np.ascontiguousarray(bad)
    if not all_finite(work, err):  # tested first: the map is a quarter frame per pass
        good_pix = np.isfinite(work) & np.isfinite(err)
        work = np.where(good_pix, work, 0.0)
        err = np.where(good_pix, err, 0.0)
        sep_mask = ~good_pix if sep_mask is None else (sep_mask | ~good_pix)
    total, total_err, flags = sep.sum_circle(
        work, xq, yq, radius, err=err, gain=gain, mask=sep_mask, subpix=0
    )
    area = _aperture_area(xq, yq, radius, (ny, nx))
    local, local_err = _local_background(image, noise, bad, xq, yq, annulus, exclude)
    half = int(np.ceil(radius + 0.5))
    size = 2 * half + 1
    x0 = np.rint(xq).astype(np.int64) - half
    y0 = np.rint(yq).astype(np.int64) - half
    if sep_mask is not None:
        msk, valid = _gather(sep_mask, x0, y0, size)
        inside = _distance2(xq, yq, x0, y0, size) <= radius**2
        n_masked = np.sum(msk & valid & inside, axis=(1, 2)).astype(np.int64)
    else:
        n_masked = np.zeros(n, dtype=np.int64)
    flux = total - local * area
    fluxerr = np.sqrt(total_err**2 + (local_err * area) ** 2)
    near_edge = (flags & sep.APER_TRUNC) != 0
    measurable = finite_pos & (area > 0) & np.isfinite(flux)
    nan = np.full(n, np.nan)
    return AperturePhotometry(
        flux=np.where(measurable, flux, nan),
        fluxerr=np.where(measurable, fluxerr, nan),
        local_background=np.where(finite_pos, local, nan),
        area=np.asarray(area, dtype=float),
        n_masked=n_masked,
        near_edge=near_edge | ~finite_pos | (
            (xq - radius < -0.5) | (xq + radius > nx - 0.5)
            | (yq - radius < -0.5) | (yq + radius > ny - 0.5)
        ),
    )


def _aperture_area(
    x: np.ndarray, y: np.ndarray, radius: float, shape: tuple[int, int]
) -> np.ndarray:
    """Exact area (px^2) of each circle that lies on the frame."""
    ny, nx = shape
    area = np.full(x.size, np.pi * radius**2)
    cut = (x - radius < -0.5) | (x + radius > nx - 0.5) | (y - radius < -0.5) | (
        y + radius > ny - 0.5)
    half = int(np.ceil(radius + 1.0))
    for i in np.flatnonzero(cut):
        # A window of ones: its frame-edge sides are real, the others lie beyond the circle.
        xa, xb = max(int(np.rint(x[i])) - half, 0), min(int(np.rint(x[i])) + half + 1, nx)
        ya, yb = max(int(np.rint(y[i])) - half, 0), min(int(np.rint(y[i])) + half + 1, ny)
        if xa >= xb or ya >= yb:
            area[i] = 0.0
            continue
        ones = np.ones((yb - ya, xb - xa))
        value, _, _ = sep.sum_circle(ones, np.array([x[i] - xa]), np.array([y[i] - ya]),
                                     radius, subpix=0)
        area[i] = float(value[0])
    return area


def encircled_energy(psf: PSFModel, x: float, y: float, radius: float) -> float:
    """Fraction of the PSF's total flux inside a circle of ``radius`` px at (x, y).

    Computed on the pixel-integrated PSF with exact pixel/circle overlap, the same way an
    aperture measures a star, so ``aperture flux / encircled_energy`` is the total flux.
    """
    return float(encircled_energies(psf, np.array([x], float), np.array([y], float), radius)[0])


def encircled_energies(
    psf: PSFModel, x: np.ndarray, y: np.ndarray, radius: float
) -> np.ndarray:
    """``encircled_energy`` at many positions at once (one value per position).

    The stamps are rendered in one batch and stacked into one image, each circle inside its
    own stamp (1.5 px clear of its border), so a single exact-overlap sum measures them all:
    the aperture correction asks this for ~200 stars per frame.
    """
    if not (np.isfinite(radius) and radius > 0):
        raise ConfigError(f"the aperture radius must be positive, got {radius} px")
    xs = np.atleast_1d(np.asarray(x, dtype=float)).ravel()
    ys = np.atleast_1d(np.asarray(y, dtype=float)).ravel()
    if xs.size != ys.size or not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        raise InputError(
            f"encircled_energies needs finite x and y of one length; got {xs.size} and {ys.size}"
            " values"
        )
    if xs.size == 0:
        return np.zeros(0)
    size = 2 * int(np.ceil(radius + 1.5)) + 1
    stamps, x0, y0 = _render_psf(psf, xs, ys, size)
    column = np.ascontiguousarray(stamps.reshape(xs.size * size, size), dtype=np.float64)
    frac, _, _ = sep.sum_circle(
        column, xs - x0, ys - y0 + size * np.arange(xs.size), radius, subpix=0,
    )
    return np.asarray(frac, dtype=float)
