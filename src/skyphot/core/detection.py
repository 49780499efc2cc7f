"""Background estimation, source detection and a first FWHM estimate (SEP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import sep

from skyphot.core.masking import all_finite, all_positive
from skyphot.core.neighbours import pairs_within_one
from skyphot.errors import ConfigError, DetectionError, InputError


@dataclass(frozen=True)
class BackgroundModel:
    """Smooth sky level and its per-pixel noise (ADU) of a frame.

    ``rms`` is a float32 map of the frame's shape. The level is kept as SEP's coarse mesh
    (``mesh``, a ``sep.Background``) rather than as a full-frame map, which would be one more
    frame-sized array held for the whole analysis: ``level`` makes the map when asked and
    ``subtract_from`` subtracts it without one. A model built from a map (``level_map``)
    keeps that map instead; exactly one of the two is given.
    """

    rms: np.ndarray
    global_level: float
    global_rms: float
    mesh: Any = None  # sep.Background (untyped library)
    level_map: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.mesh is None) == (self.level_map is None):
            raise InputError("a background model needs either its SEP mesh or a level map")
        if self.level_map is not None and self.level_map.shape != self.rms.shape:
            raise InputError(
                f"background level map {self.level_map.shape} and rms map {self.rms.shape} "
                "must have the same shape"
            )

    @property
    def level(self) -> np.ndarray:
        """The sky level, a float32 map of the frame's shape (made afresh from the mesh on
        each access: keep it only as long as needed)."""
        if self.level_map is not None:
            return self.level_map
        return np.asarray(self.mesh.back(dtype=np.float32))

    def subtract_from(self, data: np.ndarray) -> np.ndarray:
        """``data - level`` as a new float32 array, without a full-frame level temporary
        (``data`` itself is left as it is)."""
        image = np.array(data, dtype=np.float32, order="C")  # our own copy, written below
        if image.shape != self.rms.shape:
            raise InputError(
                f"image shape {image.shape} does not match the background's {self.rms.shape}"
            )
        if self.level_map is not None:
            image -= self.level_map
        else:
            self.mesh.subfrom(image)
        return image


@dataclass(frozen=True)
class SourceList:
    """Detected sources; every attribute is an array of the same length.

    x, y: 0-based pixel centroids. flux: detection-stage flux (ADU, background-subtracted).
    a, b, theta: second-moment ellipse (pixels, radians). flag: SEP-style bit flags.
    peak: peak pixel value above background. npix: pixels above threshold.
    threshold_sigma: the detection threshold actually used (sigma; NaN when unknown), higher
    than the one asked for when a crowded frame made the extractor raise it.
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    fluxerr: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    flag: np.ndarray
    peak: np.ndarray
    npix: np.ndarray
    threshold_sigma: float = float("nan")

    def __len__(self) -> int:
        return int(self.x.size)

    def select(self, index: np.ndarray) -> SourceList:
        """A new list with the rows picked by a boolean mask or integer index."""
        return SourceList(
            x=self.x[index], y=self.y[index], flux=self.flux[index],
            fluxerr=self.fluxerr[index], a=self.a[index], b=self.b[index],
            theta=self.theta[index], flag=self.flag[index], peak=self.peak[index],
            npix=self.npix[index], threshold_sigma=self.threshold_sigma,
        )


# --- functions -------------------------------------------------------------------------------

# SEP's default working memory holds 300 000 active pixels; a crowded frame (a globular cluster
# core) needs more. We raise the limit for one call at most up to this many pixels.
_MAX_PIXSTACK = 20_000_000
_MAX_SUB_OBJECTS = 20_000
# Each retry after SEP ran out of room raises the threshold by this factor.
_THRESHOLD_STEP = 1.6
_MAX_RETRIES = 6
# SEP's own defaults for the two limits; a call starts from at least these.
_SEP_PIXSTACK = 300_000
_SEP_SUB_OBJECTS = 1024
# Messages of SEP's capacity errors. SEP's Python binding raises a plain ``Exception`` whose
# only content is the C library's status text (no error class, no status code), so the text
# is the one signal there is; these are the short status names, stable across SEP releases,
# and any other exception is re-raised unchanged.
_SEP_PIXSTACK_MSG = "pixel buffer full"
_SEP_DEBLEND_MSG = "deblending overflow"
_SEP_OBJECT_LIMIT_MSG = "object limit"

# estimate_fwhm selection
_FWHM_MIN_SNR = 20.0
_FWHM_MAX_STARS = 200
# Profiles narrower than this (px) are cosmic-ray-like, once at least this share of the
# candidates is broader (see ``estimate_fwhm``).
_SAMPLED_FWHM = 1.2
_SAMPLED_SHARE = 0.3


def _as_sep_image(array: np.ndarray, name: str) -> np.ndarray:
    """A C-contiguous, native-endian float32 copy-or-view SEP accepts."""
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-d image, got an array of shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    # SEP's buffers must be writable (it never writes to them); read-only inputs are copied.
    return out if out.flags.writeable else out.copy()


def _as_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != shape:
        raise InputError(f"mask shape {m.shape} does not match the image shape {shape}")
    if m.dtype == np.bool_ and m.flags.c_contiguous and m.flags.writeable:
        # Already what SEP takes (which never writes to it): no frame-sized copy.
        return m
    return np.ascontiguousarray(m != 0)  # a fresh, writable array


def estimate_background(
    data: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    box_size: int = 64,
    filter_size: int = 3,
) -> BackgroundModel:
    """Smooth sky level and sky noise (ADU) with SEP's mesh background.

    Masked and non-finite pixels are excluded. ``box_size`` is the mesh size in pixels,
    ``filter_size`` the median-filter width in meshes. ``rms`` is a float32 map of
    ``data.shape``, the per-pixel sky noise (sky photons + read noise); the level is kept as
    the mesh (``BackgroundModel.level`` / ``subtract_from`` interpolate it to the pixels).
    """
    image = _as_sep_image(data, "data")
    bad = _as_mask(mask, image.shape)
    if not all_finite(image):
        finite = np.isfinite(image)
        bad = ~finite if bad is None else (bad | ~finite)
        image = np.where(finite, image, np.float32(0.0))
        del finite
    if bad is not None and bad.all():
        raise DetectionError(
            "every pixel of the frame is masked or not finite; no background can be "
            "estimated — check the mask (saturation level, edge width) and the image data"
        )
    if box_size < 2 or filter_size < 1:
        raise ConfigError(
            f"background box {box_size} px / filter {filter_size} meshes is invalid; use a "
            "box of at least 2 px and a filter of at least 1 mesh"
        )
    ny, nx = image.shape
    box = int(min(box_size, max(ny, nx)))
    bkg = sep.Background(image, mask=bad, bw=box, bh=box, fw=filter_size, fh=filter_size)
    del image, bad  # the mesh keeps what it needs; the frame-sized inputs can go
    rms = bkg.rms(dtype=np.float32)
    if not (np.isfinite(bkg.globalrms) and bkg.globalrms > 0 and np.any(rms > 0)):
        raise DetectionError(
            "the sky noise of the frame is zero or undefined (a constant or empty image?); "
            "the frame cannot be analysed"
        )
    # Meshes that were entirely masked can come out with zero noise; a zero rms would make
    # every later weight infinite, so such pixels get the frame's global noise.
    bad_noise = ~(rms > 0)  # True for NaN too
    if bad_noise.any():
        rms[bad_noise] = np.float32(bkg.globalrms)  # in place: rms is our own new map
    del bad_noise
    return BackgroundModel(
        rms=rms,
        global_level=float(bkg.globalback),
        global_rms=float(bkg.globalrms),
        mesh=bkg,
    )


# SEP's extraction limits are process-wide settings of the C library, not arguments of
# ``sep.extract``. One lock covers setting them, extracting and restoring them, so two
# threads measuring frames at once neither see each other's raised limits nor restore a
# value under the other's feet, and the process is left as it was found.
_SEP_LIMITS_LOCK = threading.Lock()


@contextmanager
def _sep_limits(pixstack: int, sub_objects: int) -> Iterator[None]:
    """SEP's limits set to the given values for one extraction, then restored."""
    with _SEP_LIMITS_LOCK:
        old_pixstack = sep.get_extract_pixstack()
        old_sub_objects = sep.get_sub_object_limit()
        sep.set_extract_pixstack(pixstack)
        sep.set_sub_object_limit(sub_objects)
        try:
            yield
        finally:
            sep.set_extract_pixstack(old_pixstack)
            sep.set_sub_object_limit(old_sub_objects)


def _sep_capacity_error(exc: Exception) -> str | None:
    """Which SEP capacity limit an exception reports, or None when it is something else."""
    text = str(exc).lower()
    for key in (_SEP_PIXSTACK_MSG, _SEP_DEBLEND_MSG, _SEP_OBJECT_LIMIT_MSG):
        if key in text:
            return key
    return None


def _extract(
    image: np.ndarray,
    rms: np.ndarray,
    mask: np.ndarray | None,
    threshold_sigma: float,
    min_area: int,
    max_pixstack: int = _MAX_PIXSTACK,
) -> tuple[np.ndarray, float]:
    """sep.extract that raises its limits, then its threshold, instead of failing on crowding.

    The limits are raised only inside ``_sep_limits``: SEP's settings are the same after the
    call as before it, whatever happens.
    """
    pixstack = min(_SEP_PIXSTACK, max_pixstack)
    subobj = _SEP_SUB_OBJECTS
    threshold = threshold_sigma
    deblend_cont = 0.005
    for _ in range(_MAX_RETRIES + 4):
        try:
            with _sep_limits(pixstack, subobj):
                objects = sep.extract(
                    image, threshold, err=rms, mask=mask, minarea=min_area,
                    deblend_cont=deblend_cont,
                )
        except Exception as exc:
            kind = _sep_capacity_error(exc)
            if kind is None:
                raise
            if kind == _SEP_PIXSTACK_MSG and pixstack < min(max_pixstack, image.size):
                pixstack = min(max_pixstack, image.size, pixstack * 4)
            elif kind == _SEP_DEBLEND_MSG and subobj < _MAX_SUB_OBJECTS:
                subobj = min(_MAX_SUB_OBJECTS, subobj * 4)
            elif kind == _SEP_DEBLEND_MSG and deblend_cont < 1.0:
                deblend_cont = 1.0  # no deblending rather than no detections
            else:
                threshold *= _THRESHOLD_STEP
            continue
        return objects, threshold
    raise DetectionError(
        f"source extraction ran out of memory even at a {threshold:.1f}-sigma threshold "
        "(an extremely crowded frame); raise detection.threshold_sigma or crop the frame"
    )


def detect_sources(
    data_sub: np.ndarray,
    *,
    rms: np.ndarray,
    mask: np.ndarray | None = None,
    threshold_sigma: float = 5.0,
    min_area: int = 5,
    max_sources: int | None = None,
    max_pixstack: int = _MAX_PIXSTACK,
) -> SourceList:
    """Detect sources on a background-subtracted image (ADU) with SEP.

    The threshold is ``threshold_sigma`` times the per-pixel ``rms`` (ADU). On a frame too
    crowded for SEP's buffers, the buffers and then the threshold are raised rather than
    failing (``max_pixstack`` bounds the pixels held at once; ``threshold_sigma`` of the
    result is the threshold used). Sources are sorted by flux, brightest first; at most
    ``max_sources`` are kept.
    ``fluxerr`` is the background-only error of the isophotal flux, ``sqrt(npix) * rms``.
    Raises ``DetectionError`` when nothing is found.
    """
    image = _as_sep_image(data_sub, "data_sub")
    noise = _as_sep_image(rms, "rms")
    if noise.shape != image.shape:
        raise InputError(f"rms map shape {noise.shape} does not match the image {image.shape}")
    if threshold_sigma <= 0 or min_area < 1:
        raise ConfigError(
            f"detection threshold {threshold_sigma} sigma / minimum area {min_area} px is "
            "invalid; both must be positive"
        )
    bad = _as_mask(mask, image.shape)
    if not (all_finite(image, noise) and all_positive(noise)):
        finite = np.isfinite(image) & np.isfinite(noise) & (noise > 0)
        bad = ~finite if bad is None else (bad | ~finite)
        image = np.where(finite, image, np.float32(0.0))
        noise = np.where(finite, noise, np.float32(1.0))
        del finite
    objects, used_threshold = _extract(image, noise, bad, threshold_sigma, min_area,
                                       max_pixstack)
    if objects.size == 0:
        raise DetectionError(
            f"no sources were detected above {used_threshold:.1f} sigma (minimum area "
            f"{min_area} px); the frame may be empty, out of focus or badly masked — check "
            "the image, or lower detection.threshold_sigma"
        )
    order = np.argsort(-objects["flux"], kind="stable")
    if max_sources is not None:
        order = order[: max(int(max_sources), 1)]
    obj = objects[order]
    xi = np.clip(np.rint(obj["x"]).astype(np.intp), 0, image.shape[1] - 1)
    yi = np.clip(np.rint(obj["y"]).astype(np.intp), 0, image.shape[0] - 1)
    fluxerr = np.sqrt(obj["npix"].astype(float)) * noise[yi, xi].astype(float)
    return SourceList(
        x=obj["x"].astype(float),
        y=obj["y"].astype(float),
        flux=obj["flux"].astype(float),
        fluxerr=fluxerr,
        a=obj["a"].astype(float),
        b=obj["b"].astype(float),
        theta=obj["theta"].astype(float),
        flag=obj["flag"].astype(np.int64),
        peak=obj["peak"].astype(float),
        npix=obj["npix"].astype(np.int64),
        threshold_sigma=float(used_threshold),
    )


def isolated(sources: SourceList, *, radius: float, min_flux_ratio: float = 0.0) -> np.ndarray:
    """True for sources with no neighbour within ``radius`` px brighter than
    ``min_flux_ratio`` times their own flux (0: any neighbour counts)."""
    n = len(sources)
    result = np.ones(n, dtype=bool)
    if n < 2:
        return result
    pairs = pairs_within_one(np.column_stack([sources.x, sources.y]), radius)
    if pairs.size == 0:
        return result
    i, j = pairs[:, 0], pairs[:, 1]
    flux = np.abs(sources.flux)
    # A pair spoils i when j is bright enough relative to i, and vice versa.
    spoil_i = flux[j] > min_flux_ratio * flux[i]
    spoil_j = flux[i] > min_flux_ratio * flux[j]
    result[i[spoil_i]] = False
    result[j[spoil_j]] = False
    return result


def stamp_is_clean(
    x: np.ndarray, y: np.ndarray, half: int, shape: tuple[int, int], mask: np.ndarray | None
) -> np.ndarray:
    """True where the (2*half+1)^2 stamp around (round(x), round(y)) is on the frame and
    free of masked pixels."""
    ny, nx = shape
    xi = np.rint(x).astype(np.intp)
    yi = np.rint(y).astype(np.intp)
    ok = (xi - half >= 0) & (xi + half < nx) & (yi - half >= 0) & (yi + half < ny)
    if mask is None or not ok.any():
        return ok
    idx = np.flatnonzero(ok)
    offsets = np.arange(-half, half + 1)
    rows = (yi[idx, None] + offsets[None, :])[:, :, None]
    cols = (xi[idx, None] + offsets[None, :])[:, None, :]
    ok[idx] = ~np.any(mask[rows, cols], axis=(1, 2))
    return ok


def cutouts(
    data: np.ndarray, x: np.ndarray, y: np.ndarray, half: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 2h+1, 2h+1) stamps around (round(x), round(y)) — all must be on the frame — and
    the pixel offsets dx, dy of every stamp pixel from (x, y)."""
    offsets = np.arange(-half, half + 1)
    xi = np.rint(x).astype(np.intp)
    yi = np.rint(y).astype(np.intp)
    rows = (yi[:, None] + offsets[None, :])[:, :, None]
    cols = (xi[:, None] + offsets[None, :])[:, None, :]
    stamps = data[rows, cols].astype(float)
    dx = cols - x[:, None, None]
    dy = rows - y[:, None, None]
    return stamps, np.broadcast_to(dx, stamps.shape), np.broadcast_to(dy, stamps.shape)


def half_max_fwhm(stamps: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """FWHM (px) per stamp from a weighted fit of ln I = c0 + c1 r^2 + c2 r^4 to the core.

    The quadratic term absorbs the non-Gaussian (e.g. Moffat) shape of the core, so the
    half-maximum radius solved from the fit is nearly model-independent.
    """
    n = stamps.shape[0]
    r2 = (dx**2 + dy**2).reshape(n, -1)
    values = stamps.reshape(n, -1)
    peak = values.max(axis=1)
    half2 = r2.max(axis=1, keepdims=True) / 2.0  # stamp half-width squared
    use = (values > 0.15 * peak[:, None]) & (r2 <= half2)
    logv = np.log(np.where(use, values, 1.0))
    # Weights ~ (I/sigma)^2 with sigma roughly constant in the core: var(ln I) ~ 1/I^2.
    w = np.where(use, values**2, 0.0)
    npts = use.sum(axis=1)
    # Sharp (undersampled) stars have too few core pixels for the r^4 term: a Gaussian
    # (c2 = 0) is fitted to them instead.
    quartic = (npts >= 6)[:, None].astype(float)
    basis = np.stack([np.ones_like(r2), r2, r2**2 * quartic], axis=-1)
    ata = np.einsum("np,npi,npj->nij", w, basis, basis)
    ata[:, 2, 2] += 1.0 - quartic[:, 0]  # keeps the matrix regular when c2 is dropped
    atb = np.einsum("np,npi,np->ni", w, basis, logv)
    fwhm = np.full(n, np.nan)
    det = np.linalg.det(ata)
    good = (npts >= 3) & np.isfinite(det) & (np.abs(det) > 0)
    if not good.any():
        return fwhm
    coef = np.linalg.solve(ata[good], atb[good][..., None])[..., 0]
    c1, c2 = coef[:, 1], coef[:, 2]
    # Solve c2 rho^2 + c1 rho + ln2 = 0 for the smallest positive rho = r_half^2.
    rho = np.full(c1.shape, np.nan)
    linear = np.abs(c2) < 1e-12 * np.maximum(np.abs(c1), 1e-30)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho_lin = -np.log(2.0) / c1
        disc = c1**2 - 4.0 * c2 * np.log(2.0)
        sq = np.sqrt(np.where(disc >= 0, disc, np.nan))
        r_a = (-c1 - sq) / (2.0 * c2)
        r_b = (-c1 + sq) / (2.0 * c2)
        roots = np.stack([r_a, r_b], axis=-1)
        roots = np.where(roots > 0, roots, np.inf)
        rho_quad = roots.min(axis=-1)
    rho = np.where(linear, rho_lin, rho_quad)
    rho = np.where(np.isfinite(rho) & (rho > 0), rho, np.nan)
    fwhm[good] = 2.0 * np.sqrt(rho)
    return fwhm


def estimate_fwhm(
    data_sub: np.ndarray, sources: SourceList, *, mask: np.ndarray | None = None
) -> float:
    """Typical FWHM (px) of isolated, unflagged, unmasked stars with S/N > 20.

    Each star's FWHM is the half-maximum diameter of its pixel profile (circularised); the
    result is the robust mode of these, so galaxies and blends do not pull it up.
    Stars whose stamp touches a masked pixel (saturated pixels are masked upstream) or the
    edge are skipped. Raises ``DetectionError`` when no star qualifies.
    """
    image = np.asarray(data_sub)
    if image.ndim != 2:
        raise InputError(f"data_sub must be a 2-d image, got shape {image.shape}")
    bad = _as_mask(mask, image.shape)
    if len(sources) == 0:
        raise DetectionError("no sources were given, so the FWHM cannot be measured")
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = sources.flux / sources.fluxerr
    size_guess = 2.0 * np.sqrt(np.log(2.0) * 2.0 * np.maximum(sources.a * sources.b, 0.0))
    typical = float(np.nanmedian(size_guess[snr > _FWHM_MIN_SNR])) if (
        snr > _FWHM_MIN_SNR
    ).any() else float(np.nanmedian(size_guess))
    typical = max(typical, 1.0) if np.isfinite(typical) else 2.0
    half = int(np.clip(np.ceil(2.0 * typical), 3, 25))
    candidates = (
        (sources.flag == 0)
        & (snr > _FWHM_MIN_SNR)
        & np.isfinite(sources.x) & np.isfinite(sources.y)
        & isolated(sources, radius=3.0 * half, min_flux_ratio=0.01)
    )
    idx = np.flatnonzero(candidates)
    if idx.size:
        idx = idx[stamp_is_clean(sources.x[idx], sources.y[idx], half, image.shape, bad)]
    if idx.size == 0:
        raise DetectionError(
            f"no isolated, unsaturated, unmasked star with S/N > {_FWHM_MIN_SNR:.0f} was "
            f"found among {len(sources)} detections, so the FWHM cannot be measured — the "
            "frame may be too shallow, too crowded or mostly saturated"
        )
    idx = idx[:_FWHM_MAX_STARS]  # sources are sorted brightest first
    stamps, dx, dy = cutouts(image, sources.x[idx], sources.y[idx], half)
    fwhm = half_max_fwhm(stamps, dx, dy)
    fwhm = fwhm[np.isfinite(fwhm) & (fwhm > 0.3) & (fwhm < 4.0 * half)]
    if fwhm.size == 0:
        raise DetectionError(
            f"the profiles of {idx.size} candidate stars could not be measured (no clear "
            "peak); the frame may be out of focus or not contain stars"
        )
    # Cosmic-ray hits (a pixel or two) are sharper than any star a PSF fit can sample: when
    # a fair share of the candidates is broader, the sharp ones are left out. On a sparse
    # frame 20 hits outnumbered the bright stars and the mode found a 0.4 px "PSF". An
    # undersampled frame, whose stars are that sharp themselves, keeps them all.
    broad = fwhm >= _SAMPLED_FWHM
    if int(broad.sum()) >= max(3, int(np.ceil(_SAMPLED_SHARE * fwhm.size))):
        fwhm = fwhm[broad]
    # Stars share one width; galaxies, blends and unmasked saturated stars scatter
    # above it. The mode of the distribution finds the stars even when they are a minority.
    return float(np.exp(half_sample_mode(np.log(fwhm))))


def half_sample_mode(values: np.ndarray) -> float:
    """Robust mode of a 1-d sample: repeatedly keep the densest half (Bickel's estimator)."""
    v = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
    if v.size == 0:
        raise DetectionError("no finite values to take the mode of")
    while v.size > 3:
        h = (v.size + 1) // 2
        widths = v[h - 1:] - v[: v.size - h + 1]
        start = int(np.argmin(widths))
        v = v[start:start + h]
    if v.size == 3:
        # The closer pair of three decides.
        v = v[:2] if (v[1] - v[0]) < (v[2] - v[1]) else (v[1:] if v[2] - v[1] < v[1] - v[0]
                                                          else v)
    return float(np.mean(v))
