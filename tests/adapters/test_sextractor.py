"""SExtractor detection meets the SourceList contract of the built-in detection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skyphot.adapters._ldac import read_ldac_header, read_ldac_objects
from skyphot.adapters._process import available
from skyphot.adapters.sextractor import (
    FLAG_SATURATED,
    SEP_OBJ_TRUNC,
    detect_sources_sextractor,
    extract_ldac,
)
from skyphot.errors import ExternalToolError, InputError

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(not available("source-extractor"),
                       reason="source-extractor is not installed"),
]

Match = Callable[..., tuple[np.ndarray, np.ndarray]]


def _centroid_sigma(frame, flux: np.ndarray) -> np.ndarray:
    # Centroid error of a PSF-like source: about sigma_PSF * sqrt(2) / SNR per axis, with
    # SNR from the sky noise over an effective area of 4 pi sigma^2.
    sigma = frame.fwhm / 2.3548
    snr = flux / (frame.noise * np.sqrt(4 * np.pi) * sigma)
    return np.sqrt(2.0) * sigma / snr


def test_positions_are_zero_based_and_match_truth(sim_frame, match: Match) -> None:
    f = sim_frame
    sources = detect_sources_sextractor(f.data - f.sky, rms=f.noise, threshold_sigma=5)
    i, j = match(sources.x, sources.y, f)
    assert i.size == len(sources) == f.x.size  # every star found, nothing spurious
    bright = f.flux[j] > 3e4
    assert bright.sum() > 30
    dx = sources.x[i] - f.x[j]
    dy = sources.y[i] - f.y[j]
    assert np.all(np.abs(dx[bright]) < 0.1)
    assert np.all(np.abs(dy[bright]) < 0.1)
    # No half- or one-pixel convention slip anywhere: the mean offset is ~0.
    tol = 4 * np.sqrt(np.mean(_centroid_sigma(f, f.flux[j]) ** 2) / i.size)
    assert abs(np.mean(dx)) < tol
    assert abs(np.mean(dy)) < tol


def test_contract_of_the_other_columns(sim_frame, match: Match) -> None:
    f = sim_frame
    sources = detect_sources_sextractor(f.data - f.sky, rms=f.noise, max_sources=40)
    assert len(sources) == 40
    assert np.all(np.diff(sources.flux) <= 0)  # brightest first
    i, j = match(sources.x, sources.y, f)
    # Isophotal flux holds most of a star's flux (and never more than all of it, within noise).
    ratio = sources.flux[i] / f.flux[j]
    assert np.all((ratio > 0.7) & (ratio < 1.02))
    assert np.all(sources.fluxerr > 0)
    # Round stars: a ~ b ~ sigma of the PSF (Moffat second moments are a little wider).
    sigma = f.fwhm / 2.3548
    assert np.all((sources.a > 0.9 * sigma) & (sources.a < 1.6 * sigma))
    assert np.all(sources.b / sources.a > 0.85)
    assert np.all(np.abs(sources.theta) <= np.pi / 2 + 1e-6)
    # Peak above background of a Moffat: flux * (beta - 1) / (pi alpha^2), pixel-averaged.
    assert np.all(sources.peak > 0) and np.all(sources.peak < sources.flux)
    assert np.all(sources.npix >= 5)
    assert sources.flag.dtype.kind == "i"


def test_raw_frame_without_rms_estimates_the_background(sim_frame, match: Match) -> None:
    f = sim_frame
    sources = detect_sources_sextractor(f.data, threshold_sigma=5)
    i, j = match(sources.x, sources.y, f)
    assert i.size >= 0.95 * f.x.size
    bright = f.flux[j] > 3e4
    assert np.all(np.hypot(sources.x[i] - f.x[j], sources.y[i] - f.y[j])[bright] < 0.1)


@pytest.mark.parametrize("with_rms", [True, False])
def test_masked_pixels_take_no_part(sim_frame, match: Match, with_rms: bool) -> None:
    f = sim_frame
    mask = np.zeros(f.shape, dtype=bool)
    mask[:, : f.shape[1] // 2] = True
    if with_rms:  # variance map with masked pixels beyond the threshold
        sources = detect_sources_sextractor(f.data - f.sky, rms=f.noise, mask=mask)
    else:  # zero-weight map, SExtractor's own background
        sources = detect_sources_sextractor(f.data, mask=mask)
    assert np.all(sources.x > f.shape[1] // 2 - 3)
    _, j = match(sources.x, sources.y, f)
    right = f.x > f.shape[1] // 2 + 10
    assert np.count_nonzero(f.x[j] > f.shape[1] // 2 + 10) == np.count_nonzero(right)


def test_saturated_and_edge_sources_are_flagged() -> None:
    data = np.zeros((64, 64), dtype=np.float32)
    yy, xx = np.mgrid[0:64, 0:64]
    data += 5000 * np.exp(-((xx - 30) ** 2 + (yy - 30) ** 2) / (2 * 1.5**2))
    data += 3000 * np.exp(-((xx - 0.5) ** 2 + (yy - 50) ** 2) / (2 * 1.5**2))
    sources = detect_sources_sextractor(data, rms=1.0, saturation=4000.0)
    by_x = np.argsort(sources.x)
    assert len(sources) == 2
    assert sources.flag[by_x[0]] & SEP_OBJ_TRUNC
    assert sources.flag[by_x[1]] & FLAG_SATURATED
    assert not sources.flag[by_x[1]] & SEP_OBJ_TRUNC


def test_blank_frame_gives_an_empty_list() -> None:
    rng = np.random.default_rng(5)
    sources = detect_sources_sextractor(rng.normal(0, 1, (64, 64)), rms=1.0,
                                        threshold_sigma=10)
    assert len(sources) == 0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InputError, match="2-D image"):
        detect_sources_sextractor(np.zeros(10), rms=1.0)
    with pytest.raises(InputError, match="mask shape"):
        detect_sources_sextractor(np.zeros((8, 8)), rms=1.0, mask=np.zeros((4, 4), bool))
    with pytest.raises(InputError, match="rms shape"):
        detect_sources_sextractor(np.zeros((8, 8)), rms=np.ones((4, 4)))
    with pytest.raises(InputError, match="rms map must be positive"):
        detect_sources_sextractor(np.zeros((8, 8)), rms=np.zeros((8, 8)))


def test_ldac_catalog_for_scamp_and_psfex(sim_frame, tmp_path: Path, match: Match) -> None:
    f = sim_frame
    header = f.wcs.to_header()
    out = extract_ldac(f.data - f.sky, tmp_path / "frame.cat", header=header, rms=f.noise,
                       vignet_size=21)
    objects = read_ldac_objects(out, "test")
    for column in ("XWIN_IMAGE", "ERRAWIN_IMAGE", "FLUX_AUTO", "FLUX_RADIUS", "SNR_WIN",
                   "X_WORLD", "FLAGS"):
        assert column in objects.colnames
    assert objects["VIGNET"].shape[1:] == (21, 21)
    # The file keeps SExtractor's 1-based pixels; world positions come from the header WCS.
    x = np.asarray(objects["XWIN_IMAGE"]) - 1.0
    y = np.asarray(objects["YWIN_IMAGE"]) - 1.0
    i, j = match(x, y, f)
    bright = f.flux[j] > 3e4
    assert np.all(np.hypot(x[i] - f.x[j], y[i] - f.y[j])[bright] < 0.1)
    sep = np.hypot((np.asarray(objects["X_WORLD"])[i] - f.ra[j]) * np.cos(np.deg2rad(f.dec[j])),
                   np.asarray(objects["Y_WORLD"])[i] - f.dec[j]) * 3600
    assert np.all(sep[bright] < 0.1 * 1.2)
    stored = read_ldac_header(out)
    assert stored["CRVAL1"] == pytest.approx(header["CRVAL1"])
    with fits.open(out) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "LDAC_IMHEAD", "LDAC_OBJECTS"]


def test_ldac_vignet_must_be_usable(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="vignet_size must be at least 5"):
        extract_ldac(np.zeros((8, 8)), tmp_path / "x.cat", vignet_size=3)


def test_real_tool_failure_carries_its_own_message() -> None:
    # SExtractor itself refuses the value and exits non-zero.
    with pytest.raises(ExternalToolError) as info:
        detect_sources_sextractor(np.zeros((16, 16)), rms=1.0, deblend_nthresh=0)
    message = str(info.value)
    assert message.startswith("source-extractor exited with code 1")
    assert "DEBLEND_NTHRESH keyword out of range" in message


def test_nan_pixels_are_treated_as_masked(sim_frame) -> None:
    f = sim_frame
    data = f.data - f.sky
    data[:100, :] = np.nan
    rms = np.full(f.shape, f.noise)
    rms[:100, :] = np.nan  # the rms of unusable pixels may be unusable too
    sources = detect_sources_sextractor(data, rms=rms)
    assert len(sources) > 0.6 * f.x.size
    assert sources.y.min() > 97
