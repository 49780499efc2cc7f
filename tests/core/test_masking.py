"""Bad-pixel masks on synthetic images whose bad pixels are known."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from skyphot.core.masking import (
    MaskBits,
    build_mask,
    cosmic_rays_near,
    find_bad_columns,
    find_cosmic_rays,
)
from skyphot.errors import ConfigError, InputError

SKY, NOISE = 1000.0, 10.0


def _sky(shape: tuple[int, int] = (120, 150), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(SKY, NOISE, shape).astype(np.float32)


def _moffat(shape: tuple[int, int], x0: float, y0: float, flux: float, fwhm: float,
            beta: float = 2.5) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    norm = (beta - 1.0) / (np.pi * alpha**2)
    return flux * norm * (1.0 + ((xx - x0) ** 2 + (yy - y0) ** 2) / alpha**2) ** (-beta)


def _with_stars(image: np.ndarray, n: int, seed: int, fwhm: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = image.astype(np.float64)
    for _ in range(n):
        x, y = rng.uniform(5, image.shape[1] - 5), rng.uniform(5, image.shape[0] - 5)
        out += _moffat(image.shape, x, y, 10 ** rng.uniform(3.5, 5.5), fwhm)
    return out.astype(np.float32)


def _bits(mask: np.ndarray, bit: MaskBits) -> np.ndarray:
    return (mask & bit) != 0


def test_bits() -> None:
    assert [int(b) for b in MaskBits] == [1, 2, 4, 8, 16]


def test_clean_image_has_only_edges() -> None:
    data = _with_stars(_sky(), 15, seed=2)
    original = data.copy()
    mask = build_mask(data, saturation=None, edge_px=3)
    assert mask.dtype == np.uint8 and mask.shape == data.shape
    edge = np.ones(data.shape, bool)
    edge[3:-3, 3:-3] = False
    np.testing.assert_array_equal(mask != 0, edge)
    np.testing.assert_array_equal(mask[edge], MaskBits.EDGE)
    np.testing.assert_array_equal(data, original)  # inputs are never modified


def test_no_edge_when_zero() -> None:
    assert not build_mask(_sky(), saturation=None, edge_px=0).any()


def test_hot_and_dead_columns_and_rows() -> None:
    data = _with_stars(_sky((200, 180), seed=3), 20, seed=4)
    data[:, 37] += 8 * NOISE  # hot column
    data[:, 120] = 0.0  # dead column
    data[:, 121] = 0.0  # its dead neighbour
    data[60:, 150] += 10 * NOISE  # hot from a charge trap at row 60 to the top (70%)
    data[88, :] -= 6 * NOISE  # cold row
    np.testing.assert_array_equal(find_bad_columns(data), [37, 120, 121, 150])
    np.testing.assert_array_equal(find_bad_columns(data.T), [88])
    mask = build_mask(data, saturation=None, edge_px=0)
    bad = _bits(mask, MaskBits.BAD_COLUMN)
    expected = np.zeros(data.shape, bool)
    expected[:, [37, 120, 121, 150]] = True
    expected[88, :] = True
    np.testing.assert_array_equal(bad, expected)
    assert not build_mask(data, saturation=None, bad_columns=False).any(where=~_edge(data))


def _edge(data: np.ndarray, px: int = 3) -> np.ndarray:
    edge = np.ones(data.shape, bool)
    edge[px:-px, px:-px] = False
    return edge


def test_bad_columns_ignore_galaxy_and_gradient() -> None:
    shape = (256, 256)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    galaxy = 3000.0 * np.exp(-np.hypot(xx - 128.0, (yy - 128.0) / 0.7) / 12.0)
    data = _sky(shape, seed=5) + galaxy + 0.5 * xx  # bright core, sky gradient
    assert find_bad_columns(data.astype(np.float32)).size == 0
    assert find_bad_columns(data.T.astype(np.float32)).size == 0


def test_bad_columns_in_integer_data() -> None:
    # quantised, low-noise data: medians tie, the column scatter is 0; must not flag noise
    data = np.random.default_rng(6).poisson(4.0, (150, 160)).astype(np.float32)
    assert find_bad_columns(data).size == 0
    data[:, 70] += 6.0
    np.testing.assert_array_equal(find_bad_columns(data), [70])


def test_bad_columns_with_nans() -> None:
    data = _sky((150, 160), seed=7)
    data[:, 40] += 10 * NOISE
    data[10:30, 80:90] = np.nan
    data[:, 100] = np.nan  # an all-NaN column is NONFINITE, not a bad column
    np.testing.assert_array_equal(find_bad_columns(data), [40])


def test_tiny_images_have_no_bad_columns() -> None:
    assert find_bad_columns(np.ones((4, 4), np.float32)).size == 0


def test_nonfinite() -> None:
    data = _sky()
    data[10, 20] = np.nan
    data[50, 60] = np.inf
    data[70, 80] = -np.inf
    mask = build_mask(data, saturation=None, edge_px=0, bad_columns=False)
    np.testing.assert_array_equal(np.argwhere(mask), [[10, 20], [50, 60], [70, 80]])
    assert set(mask[mask != 0]) == {MaskBits.NONFINITE}


def _square_dilation(region: np.ndarray, px: int) -> np.ndarray:
    return ndimage.binary_dilation(region, structure=np.ones((2 * px + 1, 2 * px + 1), bool))


@pytest.mark.parametrize("grow", [0, 1, 2, 4])
def test_saturation_given_is_grown(grow: int) -> None:
    data = _sky()
    data[40:44, 50:53] = 60000.0  # a saturated core
    data[45, 51] = 0.96 * 60000.0  # above 95 % of the level: counts as saturated
    data[10, 140] = 0.94 * 60000.0  # below: does not
    data[100:102, 20] = 61000.0
    mask = build_mask(data, saturation=60000.0, saturation_grow_px=grow, edge_px=0,
                      bad_columns=False)
    expected = _square_dilation(data >= 0.95 * 60000.0, grow) if grow else data >= 57000.0
    np.testing.assert_array_equal(_bits(mask, MaskBits.SATURATED), expected)
    assert not _bits(mask, MaskBits.SATURATED)[10, 140]


def test_saturation_growth_at_the_border_and_when_dense() -> None:
    data = _sky((60, 70), seed=8)
    data[0, 0] = data[59, 69] = 5e4
    data[20:40, 10:60] = 5e4  # ~24 % of the frame: the filter path
    mask = build_mask(data, saturation=5e4, edge_px=0, bad_columns=False)
    np.testing.assert_array_equal(_bits(mask, MaskBits.SATURATED),
                                  _square_dilation(data >= 0.95 * 5e4, 2))


def test_saturation_fraction() -> None:
    data = _sky()
    data[30, 30] = 800.0 + 1000.0
    mask = build_mask(data, saturation=2000.0, saturation_fraction=0.9, saturation_grow_px=0,
                      edge_px=0, bad_columns=False)
    assert _bits(mask, MaskBits.SATURATED)[30, 30] and _bits(mask, MaskBits.SATURATED).sum() == 1


def test_plateau_detected_without_a_level() -> None:
    data = np.round(_with_stars(_sky(seed=9), 10, seed=10)).astype(np.float32)
    star = _moffat(data.shape, 70.3, 60.6, 3e6, 3.0)
    data = np.minimum(data + star, 65535.0).astype(np.float32)  # a clipped, saturated star
    clipped = data == 65535.0
    assert clipped.sum() >= 4
    mask = build_mask(data, saturation=None, edge_px=0, bad_columns=False)
    np.testing.assert_array_equal(_bits(mask, MaskBits.SATURATED),
                                  _square_dilation(data >= 0.95 * 65535.0, 2))


def test_no_plateau_in_smooth_or_integer_images() -> None:
    smooth = _with_stars(_sky(seed=11), 10, seed=12) + _moffat((120, 150), 75, 60, 1e7, 4.0)
    assert not _bits(build_mask(smooth, saturation=None), MaskBits.SATURATED).any()
    # low counts: several pixels share the maximum by chance, but fewer than the next value
    counts = np.random.default_rng(13).poisson(2.0, (200, 200)).astype(np.float32)
    top = counts.max()
    assert (counts == top).sum() >= 1
    assert not _bits(build_mask(counts, saturation=None), MaskBits.SATURATED).any()
    flat = np.full((50, 50), 7.0, np.float32)  # a constant frame is not a saturated one
    assert not _bits(build_mask(flat, saturation=None), MaskBits.SATURATED).any()


# --- cosmic rays --------------------------------------------------------------------------


def _cosmic_scene(seed: int, fwhm: float) -> tuple[np.ndarray, list, list[list[tuple[int, int]]]]:
    """Background-subtracted frame with Moffat stars and cosmic rays kept 12 px from them."""
    rng = np.random.default_rng(seed)
    shape = (160, 160)
    image = np.zeros(shape)
    stars: list[tuple[float, float]] = []
    while len(stars) < 25:
        x, y = rng.uniform(8, 152, 2)
        if all(np.hypot(x - a, y - b) > 12 for a, b in stars):
            stars.append((x, y))
            image += _moffat(shape, x, y, 10 ** rng.uniform(3.0, 6.0), fwhm)  # peak S/N 5..5000
    hits: list[list[tuple[int, int]]] = []
    while len(hits) < 40:
        x, y = (int(v) for v in rng.integers(4, 156, 2))
        if min(np.hypot(x - a, y - b) for a, b in stars) < 12 or any(
            np.hypot(x - h[0][1], y - h[0][0]) < 6 for h in hits
        ):
            continue
        length = int(rng.integers(1, 4))  # single pixels, pairs, short tracks
        step = [(0, 1), (1, 0), (1, 1), (1, -1)][int(rng.integers(0, 4))]
        pixels = [(y + k * step[0], x + k * step[1]) for k in range(length)]
        amplitude = NOISE * rng.uniform(15, 200)
        for p in pixels:
            image[p] += amplitude * rng.uniform(0.5, 1.0)
        hits.append(pixels)
    image += rng.normal(0.0, NOISE, shape)
    return image.astype(np.float32), stars, hits


@pytest.mark.parametrize("fwhm", [2.0, 3.0])
def test_cosmic_rays_found_and_star_cores_kept(fwhm: float) -> None:
    found = total = 0
    for seed in range(4):
        image, stars, hits = _cosmic_scene(seed, fwhm)
        original = image.copy()
        flagged = find_cosmic_rays(image, rms=np.full(image.shape, NOISE), fwhm=fwhm)
        np.testing.assert_array_equal(image, original)
        assert flagged.dtype == bool and flagged.shape == image.shape
        hit_pixels = np.zeros(image.shape, bool)
        for pixels in hits:
            total += 1
            found += any(flagged[p] for p in pixels)
            for p in pixels:
                hit_pixels[p] = True
        yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
        for x, y in stars:
            core = np.hypot(xx - x, yy - y) <= 1.5 * fwhm
            assert not flagged[core].any(), f"star core at ({x:.1f}, {y:.1f}) flagged"
        assert not (flagged & ~hit_pixels).any()
    assert found / total > 0.9


def test_cosmic_rays_near_a_position_are_those_within_the_radius() -> None:
    """A star with a hit 3.2 px from its centre and another 9 px away: searched within 5 px,
    only the first is returned (as rows and columns), the star's core never."""
    rng = np.random.default_rng(3)
    image = _moffat((80, 90), 40.0, 30.0, 2e4, 3.0) + rng.normal(0.0, NOISE, (80, 90))
    image[31, 43] += 60 * NOISE
    image[30, 49] += 60 * NOISE
    rows, cols = cosmic_rays_near(image, 40.0, 30.0, radius=5.0, rms=NOISE, fwhm=3.0)
    assert (rows.tolist(), cols.tolist()) == ([31], [43])
    rows, cols = cosmic_rays_near(image, 40.0, 30.0, radius=10.0,
                                  rms=np.full(image.shape, NOISE), fwhm=3.0)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(30, 49), (31, 43)]


def test_cosmic_rays_near_the_frame_corner_and_on_a_clean_star() -> None:
    rng = np.random.default_rng(4)
    image = _moffat((40, 50), 2.0, 1.5, 1e5, 3.0) + rng.normal(0.0, NOISE, (40, 50))
    rows, cols = cosmic_rays_near(image, 2.0, 1.5, radius=6.0, rms=NOISE, fwhm=3.0)
    assert rows.size == 0 and cols.size == 0
    image[0, 7] += 80 * NOISE  # inside the radius, on the first row of the frame
    rows, cols = cosmic_rays_near(image, 2.0, 1.5, radius=6.0, rms=NOISE, fwhm=3.0)
    assert (rows.tolist(), cols.tolist()) == ([0], [7])


def test_cosmic_rays_scalar_rms_and_nan_neighbours() -> None:
    image = np.random.default_rng(14).normal(0.0, NOISE, (60, 60)).astype(np.float32)
    image[30, 30] = 100 * NOISE
    image[10, 10] = np.nan
    image[10, 11] = 3 * NOISE  # next to a NaN: its neighbour mean is unknown, so not flagged
    flagged = find_cosmic_rays(image, rms=NOISE, fwhm=3.0)
    np.testing.assert_array_equal(np.argwhere(flagged), [[30, 30]])


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"saturation": 0.0}, ConfigError, "saturation level must be a positive number"),
        ({"saturation": float("nan")}, ConfigError, "saturation level must be a positive"),
        ({"saturation": None, "saturation_fraction": 1.5}, ConfigError,
         "saturation_fraction must lie in (0, 1]"),
        ({"saturation": None, "edge_px": -1}, ConfigError, "must be >= 0"),
        ({"saturation": None, "saturation_grow_px": -2}, ConfigError, "must be >= 0"),
    ],
)
def test_build_mask_option_errors(kwargs: dict, error: type, text: str) -> None:
    with pytest.raises(error) as info:
        build_mask(_sky(), **kwargs)
    assert text in str(info.value)


def test_shape_and_type_errors() -> None:
    with pytest.raises(InputError, match=r"data must be a 2-D image array, got shape \(2, 3, 4\)"):
        build_mask(np.zeros((2, 3, 4)), saturation=None)
    with pytest.raises(InputError, match="must be a real-valued image"):
        find_bad_columns(np.zeros((20, 20), complex))
    with pytest.raises(ConfigError, match="nsigma must be > 0"):
        find_bad_columns(_sky(), nsigma=0.0)


def test_cosmic_ray_errors() -> None:
    image = _sky() - SKY
    with pytest.raises(ConfigError, match="fwhm must be a positive number of pixels"):
        find_cosmic_rays(image, rms=NOISE, fwhm=0.0)
    with pytest.raises(ConfigError, match="nsigma must be > 0"):
        find_cosmic_rays(image, rms=NOISE, fwhm=3.0, nsigma=-1.0)
    with pytest.raises(InputError, match=r"rms has shape \(10, 10\), which does not match"):
        find_cosmic_rays(image, rms=np.ones((10, 10)), fwhm=3.0)
    with pytest.raises(InputError, match="rms has no positive, finite value"):
        find_cosmic_rays(image, rms=np.zeros(image.shape), fwhm=3.0)


def test_cosmic_rays_where_the_noise_is_unknown() -> None:
    image = np.random.default_rng(16).normal(0.0, NOISE, (40, 40)).astype(np.float32)
    image[10, 10] = image[30, 30] = 100 * NOISE
    rms = np.full(image.shape, NOISE)
    rms[:20, :20] = 0.0  # e.g. a fully masked background mesh
    rms[25:, 25:] = np.nan
    rms[30, 30] = NOISE
    np.testing.assert_array_equal(np.argwhere(find_cosmic_rays(image, rms=rms, fwhm=3.0)),
                                  [[30, 30]])


def test_build_mask_is_fast_on_a_2k_frame() -> None:
    data = _sky((2048, 2048), seed=15)
    data[1000:1010, 500:510] = 65535.0
    data[:, 77] += 100.0
    best = min(_timed(lambda: build_mask(data, saturation=None)) for _ in range(3))
    assert best < 0.25, f"build_mask took {best * 1e3:.0f} ms on 2048x2048 (target ~50 ms)"


def _timed(call: object) -> float:
    start = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - start


@pytest.mark.parametrize("half", [0, 1, 4, 9])
def test_grow_equals_a_square_maximum_filter(half: int) -> None:
    from skyphot.core.masking import grow

    rng = np.random.default_rng(half)
    mask = rng.random((37, 23)) < 0.01
    mask[0, 5] = mask[36, 22] = True  # on the edges
    got = grow(mask, half)
    square = ndimage.maximum_filter(mask.astype(np.uint8), size=2 * half + 1) > 0
    assert np.array_equal(got, square)
    assert got is not mask
    assert got.sum() > mask.sum() if half > 0 else np.array_equal(got, mask)
    assert np.array_equal(grow(mask, 40), np.ones_like(mask))
