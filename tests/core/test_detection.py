"""Truth-based tests of background estimation, source detection and the FWHM estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sep

from skyphot.core import detection
from skyphot.core.detection import (
    BackgroundModel,
    SourceList,
    detect_sources,
    estimate_background,
    estimate_fwhm,
    half_sample_mode,
    isolated,
)
from skyphot.errors import DetectionError, InputError

# --- synthetic images (independent of skyphot's own PSF code) -----------------------------


def _moffat_image(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    fwhm: float,
    beta: float = 3.0,
    half: int = 20,
) -> np.ndarray:
    """Noiseless circular Moffat stars, integrated over pixels with 4x4 Gauss-Legendre."""
    nodes, weights = np.polynomial.legendre.leggauss(4)
    nodes, weights = nodes / 2.0, weights / 2.0
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    image = np.zeros(shape)
    ny, nx = shape
    for xs, ys, f in zip(x, y, flux, strict=True):
        xi, yi = round(xs), round(ys)
        xa, xb = max(xi - half, 0), min(xi + half + 1, nx)
        ya, yb = max(yi - half, 0), min(yi + half + 1, ny)
        dx = (np.arange(xa, xb)[:, None] + nodes[None, :]) - xs  # (nx, k)
        dy = (np.arange(ya, yb)[:, None] + nodes[None, :]) - ys
        r2 = dy[:, None, :, None] ** 2 + dx[None, :, None, :] ** 2
        prof = (beta - 1.0) / (np.pi * alpha**2) * (1.0 + r2 / alpha**2) ** -beta
        image[ya:yb, xa:xb] += f * np.einsum("jikl,k,l->ji", prof, weights, weights)
    return image


def _star_field(
    rng: np.random.Generator, shape: tuple[int, int], n_side: int, fwhm: float,
    flux_range: tuple[float, float], sky_sigma: float = 10.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stars on a jittered grid (well separated) over Gaussian sky noise."""
    ny, nx = shape
    gx = (np.arange(n_side) + 0.5) * nx / n_side
    gy = (np.arange(n_side) + 0.5) * ny / n_side
    x = (gx[None, :] + rng.uniform(-3, 3, (n_side, n_side))).ravel()
    y = (gy[:, None] + rng.uniform(-3, 3, (n_side, n_side))).ravel()
    flux = 10 ** rng.uniform(np.log10(flux_range[0]), np.log10(flux_range[1]), x.size)
    image = _moffat_image(shape, x, y, flux, fwhm) + rng.normal(0.0, sky_sigma, shape)
    return image.astype(np.float32), x, y, flux


# --- background ----------------------------------------------------------------------------


def test_background_recovers_flat_plus_gradient_and_noise() -> None:
    rng = np.random.default_rng(1)
    ny, nx, sigma = 512, 640, 5.0
    yy, xx = np.mgrid[:ny, :nx]
    truth = 100.0 + 0.03 * xx - 0.02 * yy
    image = (truth + rng.normal(0.0, sigma, (ny, nx))).astype(np.float32)
    bkg = estimate_background(image, box_size=64, filter_size=3)
    assert bkg.level.shape == image.shape and bkg.level.dtype == np.float32
    assert bkg.rms.shape == image.shape and bkg.rms.dtype == np.float32
    # SEP's per-mesh estimator (2.5 median - 1.5 mean) has an error of ~2.1 sigma / box;
    # filtering and interpolation only average meshes.
    mesh_error = 2.1 * sigma / 64
    error = bkg.level - truth
    assert np.sqrt(np.mean(error**2)) < 1.3 * mesh_error
    assert np.max(np.abs(error[64:-64, 64:-64])) < 4.5 * mesh_error
    # At the edges the spline extrapolates the gradient over half a mesh at most.
    assert np.max(np.abs(error)) < 4.5 * mesh_error + 0.5 * 64 * 0.03
    assert np.median(bkg.rms) == pytest.approx(sigma, rel=0.03)
    assert bkg.global_rms == pytest.approx(sigma, rel=0.03)
    assert image.dtype == np.float32 and np.isfinite(image).all()  # input untouched


def test_background_excludes_masked_and_nonfinite_pixels() -> None:
    rng = np.random.default_rng(2)
    image = (50.0 + rng.normal(0.0, 3.0, (256, 256))).astype(np.float32)
    image[64:160, 64:160] += 30.0  # a plateau (e.g. a large galaxy) over 3x3 meshes, masked
    image[10, 10] = np.nan
    mask = np.zeros(image.shape, dtype=bool)
    mask[64:160, 64:160] = True
    bkg = estimate_background(image, mask=mask, box_size=32)
    assert np.all(np.isfinite(bkg.level))
    mesh_error = 2.1 * 3.0 / 32  # see the test above
    error = bkg.level - 50.0
    assert np.sqrt(np.mean(error**2)) < 1.3 * mesh_error
    # Under the masked plateau the level is interpolated from the clean meshes around it
    # (unmasked, the error there would be 30 ADU).
    assert np.max(np.abs(error[64:160, 64:160])) < 4.5 * mesh_error
    assert np.max(np.abs(error)) < 8 * mesh_error  # far tail of 64 meshes + spline overshoot
    assert np.median(bkg.rms) == pytest.approx(3.0, rel=0.05)


def test_background_rejects_fully_masked_frame_and_bad_mask() -> None:
    image = np.ones((64, 64), dtype=np.float32)
    with pytest.raises(DetectionError, match="every pixel of the frame is masked"):
        estimate_background(image, mask=np.ones((64, 64), dtype=bool))
    with pytest.raises(InputError, match="does not match the image shape"):
        estimate_background(image, mask=np.zeros((32, 64), dtype=bool))
    with pytest.raises(InputError, match="must be a 2-d image"):
        estimate_background(np.ones(10, dtype=np.float32))


def test_background_of_constant_frame_is_refused() -> None:
    with pytest.raises(DetectionError, match="sky noise of the frame is zero"):
        estimate_background(np.full((128, 128), 7.0, dtype=np.float32))


# --- detection -----------------------------------------------------------------------------


def test_detection_finds_injected_stars_with_accurate_positions() -> None:
    rng = np.random.default_rng(3)
    image, x, y, flux = _star_field(rng, (400, 400), 6, fwhm=3.0, flux_range=(2e3, 2e5))
    rms = np.full(image.shape, 10.0, dtype=np.float32)
    found = detect_sources(image, rms=rms, threshold_sigma=5.0)
    assert len(found) >= x.size
    assert np.all(np.diff(found.flux) <= 0)  # brightest first
    # Match every injected star to its nearest detection.
    d2 = (found.x[None, :] - x[:, None]) ** 2 + (found.y[None, :] - y[:, None]) ** 2
    nearest = np.argmin(d2, axis=1)
    dist = np.sqrt(d2[np.arange(x.size), nearest])
    assert np.all(dist < 0.5)
    snr = found.flux[nearest] / found.fluxerr[nearest]
    bright = snr > 100
    assert bright.sum() >= 10
    assert np.max(dist[bright]) < 0.1
    # Detection-stage (isophotal) fluxes track the truth for bright stars.
    ratio = found.flux[nearest][bright] / flux[bright]
    assert np.all((ratio > 0.7) & (ratio <= 1.02))


def test_detection_respects_max_sources_and_mask() -> None:
    rng = np.random.default_rng(4)
    image, x, _, _ = _star_field(rng, (300, 300), 5, fwhm=3.0, flux_range=(5e3, 5e4))
    rms = np.full(image.shape, 10.0, dtype=np.float32)
    top = detect_sources(image, rms=rms, max_sources=7)
    assert len(top) == 7
    full = detect_sources(image, rms=rms)
    np.testing.assert_allclose(top.flux, full.flux[:7])
    mask = np.zeros(image.shape, dtype=bool)
    mask[:, :150] = True
    half = detect_sources(image, rms=rms, mask=mask)
    assert np.all(half.x > 145)
    assert len(half) == pytest.approx(np.sum(x > 150), abs=2)


def test_empty_frame_raises_clear_error() -> None:
    rng = np.random.default_rng(5)
    image = rng.normal(0.0, 1.0, (256, 256)).astype(np.float32)
    with pytest.raises(DetectionError, match=r"no sources were detected above 5\.0 sigma"):
        detect_sources(image, rms=np.ones_like(image))


def test_detection_input_errors() -> None:
    image = np.zeros((32, 32), dtype=np.float32)
    with pytest.raises(InputError, match="rms map shape"):
        detect_sources(image, rms=np.ones((16, 16), dtype=np.float32))
    with pytest.raises(InputError, match="must be a 2-d image"):
        detect_sources(np.zeros((2, 3, 4)), rms=np.ones((3, 4)))


def test_frame_filling_object_overflows_sep_buffer_without_crashing() -> None:
    # One smooth object covers more than SEP's default 300 000 active pixels.
    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[:600, :600]
    image = 50.0 * np.exp(-((xx - 300.0) ** 2 + (yy - 300.0) ** 2) / (2 * 260.0**2))
    image = (image + rng.normal(0.0, 1.0, image.shape)).astype(np.float32)
    before = sep.get_extract_pixstack()
    found = detect_sources(image, rms=np.ones_like(image), threshold_sigma=2.0)
    assert len(found) >= 1
    assert sep.get_extract_pixstack() == before  # the library setting is restored


def test_sep_capacity_errors_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    real_extract = sep.extract

    def flaky(data: np.ndarray, thresh: float, **kwargs: object) -> np.ndarray:
        calls.append(thresh)
        if len(calls) == 1:
            raise Exception("internal pixel buffer full: The limit of 300000 active ...")
        if len(calls) == 2:
            raise Exception("object deblending overflow: limit of sub-objects reached")
        return real_extract(data, thresh, **kwargs)

    monkeypatch.setattr(detection.sep, "extract", flaky)
    rng = np.random.default_rng(7)
    image, _, _, _ = _star_field(rng, (200, 200), 3, fwhm=3.0, flux_range=(1e4, 2e4))
    found = detect_sources(image, rms=np.full(image.shape, 10.0, np.float32))
    assert len(found) >= 9 and len(calls) == 3


def test_sep_capacity_exhausted_raises_detection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def always_full(data: np.ndarray, thresh: float, **kwargs: object) -> np.ndarray:
        raise Exception("internal pixel buffer full")

    monkeypatch.setattr(detection.sep, "extract", always_full)
    image = np.zeros((64, 64), dtype=np.float32)
    with pytest.raises(DetectionError, match=r"raise detection\.threshold_sigma"):
        detect_sources(image, rms=np.ones_like(image))


def test_unrelated_sep_error_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: np.ndarray, thresh: float, **kwargs: object) -> np.ndarray:
        raise Exception("something else entirely")

    monkeypatch.setattr(detection.sep, "extract", broken)
    image = np.zeros((64, 64), dtype=np.float32)
    with pytest.raises(Exception, match="something else entirely"):
        detect_sources(image, rms=np.ones_like(image))


def test_sep_limits_are_local_to_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Raised limits are seen only by the extraction that asked for them, under the lock;
    SEP's settings are restored after success, after a retry and after a foreign error."""
    seen: list[tuple[int, int, bool]] = []
    real_extract = sep.extract

    def recording(data: np.ndarray, thresh: float, **kwargs: object) -> np.ndarray:
        seen.append((sep.get_extract_pixstack(), sep.get_sub_object_limit(),
                     detection._SEP_LIMITS_LOCK.locked()))
        if len(seen) == 1:
            raise Exception("internal pixel buffer full: The limit of 300000 active ...")
        return real_extract(data, thresh, **kwargs)

    before = (sep.get_extract_pixstack(), sep.get_sub_object_limit())
    monkeypatch.setattr(detection.sep, "extract", recording)
    rng = np.random.default_rng(8)
    # 600 x 600 pixels: more than SEP's default buffer, so the retry raises it to the frame.
    image, _, _, _ = _star_field(rng, (600, 600), 2, fwhm=3.0, flux_range=(1e4, 2e4))
    rms = np.full(image.shape, 10.0, np.float32)
    detect_sources(image, rms=rms)
    assert seen == [(300_000, 1024, True), (360_000, 1024, True)]
    assert (sep.get_extract_pixstack(), sep.get_sub_object_limit()) == before
    assert not detection._SEP_LIMITS_LOCK.locked()

    def broken(data: np.ndarray, thresh: float, **kwargs: object) -> np.ndarray:
        raise Exception("something else entirely")

    monkeypatch.setattr(detection.sep, "extract", broken)
    with pytest.raises(Exception, match="something else entirely"):
        detect_sources(image, rms=rms)
    assert (sep.get_extract_pixstack(), sep.get_sub_object_limit()) == before
    assert not detection._SEP_LIMITS_LOCK.locked()


def test_concurrent_detections_do_not_share_sep_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads: one needs raised limits, the other must still see SEP's own."""
    import threading
    import time

    real_extract = sep.extract
    inside = threading.Event()
    seen: dict[str, list[int]] = {"crowded": [], "sparse": []}

    def extract(data: np.ndarray, thresh: float, **kwargs: object) -> np.ndarray:
        who = "crowded" if data.shape[0] == 600 else "sparse"
        seen[who].append(sep.get_extract_pixstack())
        if who == "crowded" and len(seen[who]) == 1:
            raise Exception("internal pixel buffer full")
        if who == "crowded":
            inside.set()
            time.sleep(0.2)  # hold the raised limits while the other thread wants SEP
        return real_extract(data, thresh, **kwargs)

    monkeypatch.setattr(detection.sep, "extract", extract)
    rng = np.random.default_rng(9)
    crowded, _, _, _ = _star_field(rng, (600, 600), 2, fwhm=3.0, flux_range=(1e4, 2e4))
    sparse, _, _, _ = _star_field(rng, (100, 100), 2, fwhm=3.0, flux_range=(1e4, 2e4))
    worker = threading.Thread(
        target=detect_sources, args=(crowded,),
        kwargs={"rms": np.full(crowded.shape, 10.0, np.float32)},
    )
    worker.start()
    assert inside.wait(10.0)
    detect_sources(sparse, rms=np.full(sparse.shape, 10.0, np.float32))
    worker.join(10.0)
    assert seen["crowded"] == [300_000, 360_000]
    assert seen["sparse"] == [300_000]


def test_crowded_real_frame_47tuc(real_data: Path) -> None:
    from astropy.io import fits

    path = real_data / "hst_acs_47tuc_j8bt06nyq_flt.fits"
    if not path.exists():
        pytest.skip(f"{path.name} not present")
    data = fits.getdata(path, "SCI").astype(np.float32)
    bkg = estimate_background(data)
    sub = data - bkg.level
    found = detect_sources(sub, rms=bkg.rms, threshold_sigma=5.0, max_sources=3000)
    assert len(found) == 3000
    fwhm = estimate_fwhm(sub, found)
    assert 1.0 < fwhm < 4.0  # HST/ACS HRC: undersampled, ~2 px


# --- FWHM ------------------------------------------------------------------------------------


def _pixel_fwhm(fwhm: float, beta: float = 3.0) -> float:
    """Half-maximum width of the pixel-integrated profile (fine 1-d numeric evaluation)."""
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    r = np.linspace(0.0, 3.0 * fwhm, 30001)
    nodes, weights = np.polynomial.legendre.leggauss(16)
    # Profile of a star centred on a pixel, integrated over the pixel around each r (along x).
    dx = r[:, None, None] + nodes[None, :, None] / 2.0
    dy = nodes[None, None, :] / 2.0
    prof = np.einsum("rkl,k,l->r", (1.0 + (dx**2 + dy**2) / alpha**2) ** -beta,
                     weights / 2, weights / 2)
    return float(2.0 * r[np.argmin(np.abs(prof - prof[0] / 2.0))])


@pytest.mark.parametrize("fwhm", [2.5, 4.0])
def test_estimate_fwhm_matches_truth(fwhm: float) -> None:
    rng = np.random.default_rng(8)
    image, _, _, _ = _star_field(rng, (480, 480), 6, fwhm=fwhm, flux_range=(1e4, 1e5))
    rms = np.full(image.shape, 10.0, dtype=np.float32)
    found = detect_sources(image, rms=rms)
    measured = estimate_fwhm(image, found)
    assert measured == pytest.approx(_pixel_fwhm(fwhm), rel=0.04)


def test_estimate_fwhm_ignores_a_minority_of_extended_sources() -> None:
    rng = np.random.default_rng(9)
    image, _, _, _ = _star_field(rng, (480, 480), 6, fwhm=3.0, flux_range=(1e4, 1e5))
    # Add wide "galaxies" (3x the stellar FWHM) between the stars.
    gx = np.array([40.0, 200.0, 360.0, 120.0, 280.0])
    gy = np.array([80.0, 160.0, 240.0, 320.0, 400.0])
    image = image + _moffat_image(image.shape, gx, gy, np.full(5, 2e5), 9.0, half=30)
    found = detect_sources(image.astype(np.float32), rms=np.full(image.shape, 10.0, np.float32))
    assert estimate_fwhm(image, found) == pytest.approx(_pixel_fwhm(3.0), rel=0.05)


def test_estimate_fwhm_without_usable_stars_raises() -> None:
    rng = np.random.default_rng(10)
    image, _, _, _ = _star_field(rng, (200, 200), 3, fwhm=3.0, flux_range=(1e4, 2e4))
    found = detect_sources(image, rms=np.full(image.shape, 10.0, np.float32))
    with pytest.raises(DetectionError, match="no isolated, unsaturated, unmasked star"):
        estimate_fwhm(image, found, mask=np.ones(image.shape, dtype=bool))
    empty = found.select(np.zeros(len(found), dtype=bool))
    with pytest.raises(DetectionError, match="no sources were given"):
        estimate_fwhm(image, empty)


def test_isolated_and_half_sample_mode() -> None:
    sources = SourceList(
        x=np.array([0.0, 3.0, 100.0]), y=np.zeros(3), flux=np.array([100.0, 0.5, 10.0]),
        fluxerr=np.ones(3), a=np.ones(3), b=np.ones(3), theta=np.zeros(3),
        flag=np.zeros(3, dtype=np.int64), peak=np.ones(3), npix=np.ones(3, dtype=np.int64),
    )
    # The faint neighbour (0.5 % of star 0) does not spoil star 0, but star 0 spoils it.
    np.testing.assert_array_equal(
        isolated(sources, radius=5.0, min_flux_ratio=0.01), [True, False, True]
    )
    np.testing.assert_array_equal(isolated(sources, radius=5.0), [False, False, True])
    values = np.concatenate([np.full(10, 3.0) + np.linspace(-0.01, 0.01, 10),
                             np.array([6.0, 7.0, 8.0, 9.0, 12.0, 15.0])])
    assert half_sample_mode(values) == pytest.approx(3.0, abs=0.01)
    with pytest.raises(DetectionError, match="no finite values"):
        half_sample_mode(np.array([np.nan]))


def test_configuration_errors_are_reported() -> None:
    from skyphot.errors import ConfigError

    image = np.random.default_rng(11).normal(0.0, 1.0, (64, 64)).astype(np.float32)
    with pytest.raises(ConfigError, match="background box 1 px"):
        estimate_background(image, box_size=1)
    with pytest.raises(ConfigError, match="both must be positive"):
        detect_sources(image, rms=np.ones_like(image), threshold_sigma=0.0)
    sources = SourceList(*(np.zeros(1) for _ in range(10)))
    with pytest.raises(InputError, match="data_sub must be a 2-d image"):
        estimate_fwhm(np.zeros(5), sources)


def test_estimate_fwhm_refuses_profiles_without_a_peak() -> None:
    # Bright, isolated "detections" on an empty image: no profile to measure.
    n = 4
    sources = SourceList(
        x=np.array([20.0, 60.0, 100.0, 140.0]), y=np.full(n, 80.0), flux=np.full(n, 1e5),
        fluxerr=np.ones(n), a=np.full(n, 1.5), b=np.full(n, 1.5), theta=np.zeros(n),
        flag=np.zeros(n, dtype=np.int64), peak=np.full(n, 1e4), npix=np.full(n, 20),
    )
    with pytest.raises(DetectionError, match="could not be measured"):
        estimate_fwhm(np.zeros((160, 160)), sources)


def test_background_level_from_the_mesh_equals_the_subtracted_level() -> None:
    rng = np.random.default_rng(3)
    image = (100.0 + np.linspace(0, 20, 128)[None, :] + rng.normal(0, 2, (128, 128))).astype(
        np.float32)
    before = image.copy()
    bkg = estimate_background(image, box_size=32)
    sub = bkg.subtract_from(image)
    np.testing.assert_array_equal(image, before)  # the input is left as it was
    np.testing.assert_allclose(sub, image - bkg.level, atol=1e-4)
    assert sub.dtype == np.float32 and sub is not image


def test_background_model_needs_exactly_one_level() -> None:
    rms = np.ones((8, 8), np.float32)
    with pytest.raises(InputError, match="needs either its SEP mesh or a level map"):
        BackgroundModel(rms=rms, global_level=0.0, global_rms=1.0)
    with pytest.raises(InputError, match=r"level map \(4, 4\) and rms map \(8, 8\)"):
        BackgroundModel(rms=rms, global_level=0.0, global_rms=1.0,
                        level_map=np.zeros((4, 4), np.float32))
    model = BackgroundModel(rms=rms, global_level=0.0, global_rms=1.0,
                            level_map=np.full((8, 8), 2.0, np.float32))
    with pytest.raises(InputError, match=r"image shape \(2, 2\) does not match"):
        model.subtract_from(np.zeros((2, 2), np.float32))
