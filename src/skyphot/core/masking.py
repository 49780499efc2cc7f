"""Bad-pixel masks: non-finite pixels, saturation, frame edges, bad columns, cosmic rays.

The mask is a uint8 bit field of the image's shape (see :class:`MaskBits`); nonzero = bad.
"""

from __future__ import annotations

import math
from enum import IntFlag

import numpy as np

from skyphot.core.stats import MAD_TO_SIGMA
from skyphot.errors import ConfigError, InputError

_MEDIAN_EFFICIENCY = 1.2533  # noise of a sample median / noise of a sample mean (Gaussian)
_BLOCKS = 4  # the column medians are taken in this many row blocks...
_BLOCK_ROWS = 32  # ...of this many evenly spaced rows: bad columns run (most of) the height
_NEIGHBOUR_WINDOW = 9  # columns compared with each one: wider than a cluster of 2-3 bad ones
_LOCAL_WINDOW = 31  # columns over which the local scatter of column medians is measured
_PLATEAU_MIN_PIXELS = 4
_DENSE_FRACTION = 0.02  # above this fraction of saturated pixels, grow with filters


class MaskBits(IntFlag):
    """Why a pixel is masked. Bits combine: a pixel can be saturated and on the edge."""

    NONFINITE = 1
    SATURATED = 2
    EDGE = 4
    BAD_COLUMN = 8
    COSMIC_RAY = 16


def bad_pixels(mask: np.ndarray) -> np.ndarray:
    """Boolean map of a mask's bad (nonzero) pixels, for reading only: a boolean mask is
    returned as it is (no frame-sized copy), any other is compared with 0."""
    m = np.asarray(mask)
    return m if m.dtype == np.bool_ else m != 0


_ROWS_PER_BLOCK = 256  # rows tested at once: the temporaries of a whole-frame test stay small


def all_finite(*images: np.ndarray) -> bool:
    """True when every pixel of every image is finite; tested in row blocks, so that no
    frame-sized boolean temporary is made (on a large frame each is a quarter of the image)."""
    return all(
        bool(np.isfinite(image[start:start + _ROWS_PER_BLOCK]).all())
        for image in images
        for start in range(0, image.shape[0], _ROWS_PER_BLOCK)
    )


def all_positive(image: np.ndarray) -> bool:
    """True when every pixel is > 0 (NaN is not); tested in row blocks like ``all_finite``."""
    return all(
        bool((image[start:start + _ROWS_PER_BLOCK] > 0).all())
        for start in range(0, image.shape[0], _ROWS_PER_BLOCK)
    )


def build_mask(
    data: np.ndarray,
    *,
    saturation: float | None,
    saturation_fraction: float = 0.95,
    saturation_grow_px: int = 2,
    edge_px: int = 3,
    bad_columns: bool = True,
) -> np.ndarray:
    """uint8 bit mask (:class:`MaskBits`) of ``data``'s shape; nonzero marks a bad pixel.

    ``saturation`` is the saturation level in data units (ADU); pixels at or above
    ``saturation_fraction`` of it are masked and the masked regions grown by
    ``saturation_grow_px`` pixels (square dilation) to cover bleeding and non-linear wings.
    When ``saturation`` is None, a plateau of several pixels sharing the image maximum (what a
    saturated CCD produces) is taken as the level; a smooth image gets no saturation mask.
    ``edge_px`` pixels along every border are masked; ``bad_columns`` masks hot or dead
    columns and rows (see :func:`find_bad_columns`). Cosmic rays are not searched here: they
    need the background (see :func:`find_cosmic_rays`).
    """
    _check_image(data, "data")
    if saturation is not None and not (math.isfinite(saturation) and saturation > 0):
        raise ConfigError(f"saturation level must be a positive number of ADU, not {saturation}")
    if not 0.0 < saturation_fraction <= 1.0:
        raise ConfigError(f"saturation_fraction must lie in (0, 1], not {saturation_fraction}")
    if saturation_grow_px < 0 or edge_px < 0:
        raise ConfigError(
            f"saturation_grow_px and edge_px must be >= 0 (got {saturation_grow_px}, {edge_px})"
        )
    mask = np.zeros(data.shape, dtype=np.uint8)
    finite = np.isfinite(data)
    every_finite = bool(finite.all())
    if not every_finite:
        mask[~finite] = np.uint8(MaskBits.NONFINITE)

    level = saturation if saturation is not None else _plateau_level(data, finite, every_finite)
    if level is not None:
        with np.errstate(invalid="ignore"):
            saturated = data >= saturation_fraction * level  # NaN compares False
        _set_grown(mask, saturated, saturation_grow_px, np.uint8(MaskBits.SATURATED))

    if edge_px:
        for edge in (np.s_[:edge_px, :], np.s_[-edge_px:, :], np.s_[:, :edge_px],
                     np.s_[:, -edge_px:]):
            mask[edge] |= np.uint8(MaskBits.EDGE)

    if bad_columns:
        mask[:, find_bad_columns(data)] |= np.uint8(MaskBits.BAD_COLUMN)
        mask[find_bad_columns(data.T), :] |= np.uint8(MaskBits.BAD_COLUMN)
    return mask


def find_bad_columns(data: np.ndarray, *, nsigma: float = 5.0) -> np.ndarray:
    """Indices (0-based x) of columns whose median departs from their neighbours' medians.

    A hot or dead column shifts the median of the whole column; real sky structure (stars,
    galaxies, gradients) barely moves a median and is shared with the neighbouring columns.
    Medians are taken in 4 blocks of rows; a column is bad when its combined deviation
    exceeds ``nsigma`` and at least 3 of the 4 blocks deviate the same way by ``nsigma``/2
    (a galaxy or a bleed trail crossing one block does not). Each block's scale is the
    robust column-to-column scatter, globally and over the 31 nearest columns (a rough
    galaxy core is structure), never below the noise (or quantisation) of a median.
    Call with ``data.T`` for rows. Fast: 128 evenly spaced rows are used.
    """
    _check_image(data, "data")
    if nsigma <= 0:
        raise ConfigError(f"nsigma must be > 0, not {nsigma}")
    ny, nx = data.shape
    per_block = min(_BLOCK_ROWS, ny // _BLOCKS)
    if nx < _NEIGHBOUR_WINDOW or per_block < 3:
        return np.empty(0, dtype=np.intp)  # too small to compare columns with neighbours
    rows = np.linspace(0, ny - 1, per_block * _BLOCKS).round().astype(np.intp)
    sample = np.ascontiguousarray(data[rows].T, dtype=np.float32)  # (nx, rows)
    blocks = _nan_to_balanced_inf(sample).reshape(nx, _BLOCKS, per_block)
    middle = per_block // 2
    medians = np.partition(blocks, middle, axis=-1)[..., middle]  # (nx, blocks)
    usable = np.isfinite(medians)
    if usable.sum(axis=0).min() < _NEIGHBOUR_WINDOW:
        return np.empty(0, dtype=np.intp)
    fill = np.array([np.median(medians[usable[:, k], k]) for k in range(_BLOCKS)])
    medians = np.where(usable, medians, fill)
    reference = _running_median(medians, _NEIGHBOUR_WINDOW)
    residual = medians - reference
    floor = max(_MEDIAN_EFFICIENCY * _pixel_noise(sample) / math.sqrt(per_block),
                0.5 * _quantum(sample))
    # the scatter is taken globally and over the nearby columns: near a galaxy core the
    # column profile is rough over many columns, which is structure, not a bad column
    scatter = np.maximum(
        MAD_TO_SIGMA * np.median(np.abs(residual), axis=0),
        MAD_TO_SIGMA * _running_median(np.abs(residual), _LOCAL_WINDOW),
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        # floor 0: a noiseless, unquantised image, where any step is infinitely significant
        z = np.where(usable, residual / np.maximum(scatter, floor), 0.0) if floor > 0 else \
            np.where(usable & (residual != 0), np.copysign(np.inf, residual), 0.0)
        combined = z.sum(axis=1) / math.sqrt(_BLOCKS)
        agreeing = (np.sign(combined)[:, None] * z > 0.5 * nsigma).sum(axis=1)
        bad = (np.abs(combined) > nsigma) & (agreeing >= _BLOCKS - 1)
    return np.flatnonzero(bad).astype(np.intp)


def find_cosmic_rays(
    data_sub: np.ndarray, *, rms: np.ndarray | float, fwhm: float, nsigma: float = 5.0
) -> np.ndarray:
    """Boolean map of cosmic-ray hits: significant features sharper than any star can be.

    ``data_sub`` is background-subtracted (ADU), ``rms`` the background noise (ADU, map or
    scalar; pixels where it is not positive and finite are never flagged), ``fwhm`` the PSF
    FWHM in pixels. A pixel is a hit when it is ``nsigma`` above
    the noise and its contrast to the mean of its 8 neighbours exceeds, significantly and by
    a wide ratio, what a PSF of this FWHM centred on the pixel would give (the sharpest a
    star can look). Hits are then grown into adjacent significant pixels that are also
    sharper than a star (tracks, hits split over pixels). Star cores are not flagged for
    ``fwhm`` >= 2 px; undersampled frames (fwhm < 2) cannot tell stars from hits reliably.
    """
    _check_image(data_sub, "data_sub")
    if not (math.isfinite(fwhm) and fwhm > 0):
        raise ConfigError(f"fwhm must be a positive number of pixels, not {fwhm}")
    if nsigma <= 0:
        raise ConfigError(f"nsigma must be > 0, not {nsigma}")
    noise = _noise_map(rms, data_sub.shape)
    finite = np.isfinite(data_sub)
    image = np.where(finite, data_sub, 0.0).astype(np.float32)
    neighbours = (_box3_sum(image) - image) / 8.0
    contrast = image - neighbours
    star = _psf_sharpness(fwhm)  # contrast / peak of a star centred on a pixel
    ratio = star + 0.5 * (1.0 - star)  # halfway between the sharpest star and a lone pixel
    excess_noise = noise * math.sqrt((1.0 - star) ** 2 + 1.0 / 8.0)
    significant = image > nsigma * noise
    hits = (
        significant
        & (contrast - star * image > nsigma * excess_noise)
        & (contrast > ratio * image)
    )
    if not finite.all():
        # next to a NaN the neighbour mean is meaningless (NaN was replaced by 0)
        hits &= _box3_sum((~finite).astype(np.float32)) == 0
    if not hits.any():
        return hits
    grow_into = (image > 0.5 * nsigma * noise) & (contrast > star * image)
    from scipy import ndimage  # only when there are hits: a measurement need not import it

    # the connected pieces of grow_into that touch a hit (one labelling pass, not iterations)
    labels, count = ndimage.label(grow_into | hits, structure=np.ones((3, 3), bool))
    touched = np.zeros(count + 1, dtype=bool)
    touched[labels[hits]] = True
    touched[0] = False
    return touched[labels]


# Below this FWHM (px) a star's core is as sharp as a hit: cosmic rays are not looked for.
CR_MIN_FWHM = 2.0


def cosmic_rays_near(
    data_sub: np.ndarray, x: float, y: float, *, radius: float, rms: np.ndarray | float,
    fwhm: float, nsigma: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the cosmic-ray hits (``find_cosmic_rays``) whose pixel centres
    lie within ``radius`` px of ``(x, y)``: only a cut-out around the position is searched.
    ``rms`` is a map of the image's shape or a scalar. Empty when there are none."""
    _check_image(data_sub, "data_sub")
    ny, nx = data_sub.shape
    half = math.ceil(radius) + 2  # a ring beyond the radius: the hits' neighbour means
    x0, x1 = max(0, math.floor(x) - half), min(nx, math.floor(x) + half + 2)
    y0, y1 = max(0, math.floor(y) - half), min(ny, math.floor(y) + half + 2)
    empty = np.zeros(0, dtype=np.intp)
    if x0 >= x1 or y0 >= y1:
        return empty, empty
    noise = rms if np.ndim(rms) == 0 else np.asarray(rms)[y0:y1, x0:x1]
    hits = find_cosmic_rays(data_sub[y0:y1, x0:x1], rms=noise, fwhm=fwhm, nsigma=nsigma)
    iy, ix = np.nonzero(hits)
    iy, ix = iy + y0, ix + x0
    near = (ix - x) ** 2 + (iy - y) ** 2 <= radius**2
    return iy[near].astype(np.intp), ix[near].astype(np.intp)


# --- helpers ------------------------------------------------------------------------------


def _check_image(data: np.ndarray, name: str) -> None:
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        shape = getattr(data, "shape", None)
        raise InputError(f"{name} must be a 2-D image array, got shape {shape}")
    if data.dtype.kind not in "fiu":
        raise InputError(f"{name} must be a real-valued image, got dtype {data.dtype}")


def _plateau_level(data: np.ndarray, finite: np.ndarray, all_finite: bool) -> float | None:
    """The image maximum when it is a saturation plateau, else None.

    A saturated CCD clips many pixels to exactly the same value, so the histogram piles up
    at the top; an unsaturated image's top value is held by one pixel or a few, fewer than
    the next value down.
    """
    if all_finite:
        top = float(data.max())
    elif finite.any():
        top = float(np.max(data, where=finite, initial=-np.inf))
    else:
        return None
    at_top = int(np.count_nonzero(data == top))
    if at_top < _PLATEAU_MIN_PIXELS or at_top > 0.5 * data.size or top <= 0:
        return None
    below_max = float(np.max(data, where=(data < top) & finite, initial=-np.inf))
    if not math.isfinite(below_max):
        return None
    next_down = int(np.count_nonzero(data == below_max))
    return top if at_top > next_down else None


def grow(mask: np.ndarray, half: int) -> np.ndarray:
    """A boolean ``mask`` dilated by a square of half-size ``half`` px (a new array): the
    same as a maximum filter of side 2 half + 1, as shifted ORs, several times faster."""
    if half < 0:
        raise InputError(f"the growth of a mask must be >= 0 px, got {half}")
    src = np.asarray(mask, dtype=bool)
    rows = src.copy()
    for s in range(1, min(half, src.shape[0] - 1) + 1):
        rows[s:] |= src[:-s]
        rows[:-s] |= src[s:]
    out = rows.copy()
    for s in range(1, min(half, src.shape[1] - 1) + 1):
        out[:, s:] |= rows[:, :-s]
        out[:, :-s] |= rows[:, s:]
    return out


def _set_grown(mask: np.ndarray, region: np.ndarray, pixels: int, bit: np.uint8) -> None:
    """OR ``bit`` into ``mask`` over ``region`` grown by a square of half-size ``pixels``.

    Saturated pixels are usually few, so the square is stamped at their coordinates; a
    densely saturated frame uses two 1-D maximum filters (the same square dilation).
    """
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return
    sub_y, xs = np.nonzero(region[rows])
    if pixels == 0:
        mask[rows[sub_y], xs] |= bit
        return
    if xs.size > _DENSE_FRACTION * region.size:
        from scipy import ndimage  # a densely saturated frame only

        size = 2 * pixels + 1
        grown = ndimage.maximum_filter1d(region.view(np.uint8), size, axis=0, mode="constant")
        grown = ndimage.maximum_filter1d(grown, size, axis=1, mode="constant")
        mask |= grown * bit
        return
    ys = rows[sub_y]
    ny, nx = region.shape
    for dy in range(-pixels, pixels + 1):
        yy = np.clip(ys + dy, 0, ny - 1)
        for dx in range(-pixels, pixels + 1):
            mask[yy, np.clip(xs + dx, 0, nx - 1)] |= bit


def _nan_to_balanced_inf(sample: np.ndarray) -> np.ndarray:
    """Non-finite values as alternately -inf and +inf, so a partition-based median of the
    rest stays unbiased (np.partition sorts NaN last, which would bias it high)."""
    bad = ~np.isfinite(sample)
    if not bad.any():
        return sample
    out = sample.copy()
    where = np.flatnonzero(bad)
    out.flat[where] = np.where(np.arange(where.size) % 2 == 0, -np.inf, np.inf)
    return out


def _pixel_noise(sample: np.ndarray) -> float:
    """Robust pixel noise from differences of adjacent columns (insensitive to gradients)."""
    diffs = np.diff(sample[:, ::4], axis=0).ravel()
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return 0.0
    return MAD_TO_SIGMA * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2.0)


def _quantum(sample: np.ndarray) -> float:
    """Step between representable values (1 for integer data, BSCALE for scaled data)."""
    values = np.unique(sample[:, :: max(1, sample.shape[1] // 16)])
    steps = np.diff(values[np.isfinite(values)])
    steps = steps[steps > 0]
    return float(steps.min()) if steps.size else 0.0


def _noise_map(rms: np.ndarray | float, shape: tuple[int, ...]) -> np.ndarray:
    noise = np.asarray(rms, dtype=np.float32)
    try:
        noise = np.broadcast_to(noise, shape)
    except ValueError as exc:
        raise InputError(
            f"rms has shape {noise.shape}, which does not match the image shape {shape}"
        ) from exc
    usable = np.isfinite(noise) & (noise > 0)
    if not usable.any():
        raise InputError("rms has no positive, finite value (background noise, ADU)")
    # where the noise is unknown nothing is significant: +inf keeps those pixels unflagged
    return noise if usable.all() else np.where(usable, noise, np.float32(np.inf))


def _running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median over ``window`` (odd) consecutive rows of each column, edges replicated:
    ``scipy.ndimage.median_filter(values, size=(window, 1), mode="nearest")``."""
    half = window // 2
    padded = np.pad(values, ((half, half), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
    return np.asarray(np.partition(windows, half, axis=-1)[..., half])


def _box3_sum(image: np.ndarray) -> np.ndarray:
    """Sum over each pixel's 3x3 neighbourhood (edges replicated), as separable shifts."""
    padded = np.pad(image, 1, mode="edge")
    across = padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]
    return across[:-2] + across[1:-1] + across[2:]


def _psf_sharpness(fwhm: float) -> float:
    """1 - (mean of the 8 neighbours / peak) for a Gaussian PSF centred on a pixel.

    Point-sampled, which is sharper than any pixel-integrated or off-centre star of the same
    FWHM, so it bounds what a real star can show. A Moffat core is no sharper at equal FWHM.
    """
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    side = math.exp(-1.0 / (2.0 * sigma**2))
    corner = math.exp(-1.0 / sigma**2)
    return 1.0 - (4.0 * side + 4.0 * corner) / 8.0
