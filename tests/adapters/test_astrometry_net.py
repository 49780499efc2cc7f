"""Blind astrometry with astrometry.net, offline, with index files built from a star list."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from skyphot.adapters._process import available
from skyphot.adapters.astrometry_net import (
    build_index,
    find_index_files,
    presets_for_field,
    solve_field,
)
from skyphot.adapters.sextractor import detect_sources_sextractor
from skyphot.errors import AstrometryError, CatalogError, InputError

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(
        not (available("solve-field") and available("build-astrometry-index")),
        reason="astrometry.net is not installed",
    ),
]

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
PIXEL_SCALE = 1.2  # arcsec/pixel of the simulated frames


@pytest.fixture(scope="module")
def index_dir(sim_frame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    f = sim_frame
    out = tmp_path_factory.mktemp("index")
    files = build_index(f.ra, f.dec, f.mag, out_dir=out,
                        field_arcmin=f.shape[1] * PIXEL_SCALE / 60)
    assert [p.name for p in files] == [f"index-skyphot-{p:02d}.fits" for p in range(4)]
    return out


def _residuals(sim_frame, wcs: WCS) -> np.ndarray:
    x, y = wcs.all_world2pix(sim_frame.ra, sim_frame.dec, 0)
    return np.hypot(x - sim_frame.x, y - sim_frame.y)


def test_presets_follow_the_field_size() -> None:
    # Preset P has quads of 2.0*sqrt(2)**P arcmin; keep those of 15-60% of the field.
    assert presets_for_field(10.24) == [0, 1, 2, 3]
    assert presets_for_field(60.0) == [5, 6, 7, 8]
    with pytest.raises(InputError, match="smaller than the finest index preset"):
        presets_for_field(2.0)


def test_built_index_files_cover_their_scales(index_dir: Path) -> None:
    files = find_index_files(index_dir)
    assert len(files) == 4
    low = sorted(f.scale_low_arcmin for f in files)
    assert low == pytest.approx([2.0 * np.sqrt(2) ** p for p in range(4)], rel=0.02)


def test_frame_without_wcs_is_solved_from_its_pixels(sim_frame, index_dir: Path) -> None:
    f = sim_frame
    start = time.perf_counter()
    wcs = solve_field(f.data, index_dir=index_dir, scale_low=1.0, scale_high=1.5, timeout=20)
    assert time.perf_counter() - start < 15
    residual = _residuals(f, wcs)
    assert residual.max() < 1.0
    assert np.sqrt(np.mean(residual**2)) < 0.1
    assert wcs.pixel_shape == (f.shape[1], f.shape[0])


def test_solved_blind_from_a_source_list(sim_frame, index_dir: Path) -> None:
    f = sim_frame
    sources = detect_sources_sextractor(f.data - f.sky, rms=f.noise)
    wcs = solve_field(sources, shape=f.shape, index_dir=index_dir, timeout=20, tweak_order=0)
    assert _residuals(f, wcs).max() < 1.0
    assert "SIP" not in wcs.wcs.ctype[0]
    # x, y arrays (0-based) with a position hint give the same answer.
    hinted = solve_field((sources.x, sources.y, sources.flux), shape=f.shape,
                         index_dir=index_dir, ra=f.ra.mean(), dec=f.dec.mean(), radius=0.5,
                         timeout=20)
    assert _residuals(f, hinted).max() < 1.0


def test_no_solution_says_what_to_install(sim_frame, tmp_path: Path) -> None:
    f = sim_frame
    rng = np.random.default_rng(4)
    # An index of unrelated stars: nothing in it matches the frame.
    ra = f.ra.mean() + rng.uniform(-0.1, 0.1, 300)
    dec = f.dec.mean() + rng.uniform(-0.1, 0.1, 300)
    build_index(ra, dec, rng.uniform(10, 18, 300), out_dir=tmp_path, presets=[1, 2])
    sources = detect_sources_sextractor(f.data - f.sky, rms=f.noise)
    with pytest.raises(AstrometryError) as info:
        solve_field(sources, shape=f.shape, index_dir=tmp_path, scale_low=1.1,
                    scale_high=1.3, timeout=1)
    message = str(info.value)
    assert message.startswith("astrometry.net found no solution in")
    assert str(tmp_path) in message
    assert "covering scales 2.8–5.6 arcmin" in message
    assert "install index files matching your field size" in message


def test_bad_requests_are_refused(sim_frame, index_dir: Path) -> None:
    f = sim_frame
    with pytest.raises(InputError, match="an image to solve must be 2-D"):
        solve_field(f.x, index_dir=index_dir)
    with pytest.raises(InputError, match="needs the frame shape"):
        solve_field((f.x, f.y), index_dir=index_dir)
    with pytest.raises(InputError, match="both scale_low and scale_high"):
        solve_field(f.data, index_dir=index_dir, scale_low=1.0)
    with pytest.raises(InputError, match="all of ra, dec and radius"):
        solve_field(f.data, index_dir=index_dir, ra=150.0)
    with pytest.raises(AstrometryError, match="only 3 sources"):
        solve_field((f.x[:3], f.y[:3]), shape=f.shape, index_dir=index_dir)
    with pytest.raises(CatalogError, match="only 5 usable stars"):
        build_index(f.ra[:5], f.dec[:5], f.mag[:5], out_dir=index_dir, presets=[0])
    with pytest.raises(InputError, match="give field_arcmin"):
        build_index(f.ra, f.dec, f.mag, out_dir=index_dir)


def test_real_wide_field_with_debian_tycho2_index() -> None:
    path = REAL / "stellarsolver_randomsky_SIMULATED.fits"
    if not path.is_file():
        pytest.skip("shared real data is not available")
    tycho = Path("/usr/share/astrometry")
    if not any(tycho.glob("index-tycho2-*.fits")):
        pytest.skip("Debian astrometry-data-tycho2 is not installed")
    with fits.open(path) as hdul:
        data = hdul[0].data.astype(np.float32)
        header_wcs = WCS(hdul[0].header)
    # The header scale is 2.68"/px; bounds of +-10% as a user would give them.
    wcs = solve_field(data, index_dir=tycho, scale_low=2.4, scale_high=3.0, timeout=30)
    ny, nx = data.shape
    yy, xx = np.mgrid[0:ny:64, 0:nx:64]
    ra, dec = header_wcs.all_pix2world(xx, yy, 0)
    x, y = wcs.all_world2pix(ra, dec, 0)
    # The simulator's header WCS is itself approximate at the pixel level.
    assert np.max(np.hypot(x - xx, y - yy)) < 2.0
