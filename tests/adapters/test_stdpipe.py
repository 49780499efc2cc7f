"""The STDPipe engine: its conversions (exact checks), every error path (with stand-ins for
STDPipe), and end to end on simulated frames against the truth and the built-in engine."""

from __future__ import annotations

import importlib.util
import math
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from astropy.io.fits import Header
from astropy.table import Table
from astropy.wcs import WCS

import skyphot.adapters.stdpipe as engine
import skyphot.pipeline.stages.stdpipe as stage_module
from skyphot.adapters.sextractor import FLAG_SATURATED, SEP_APER_HASMASKED, SEP_OBJ_MERGED
from skyphot.adapters.stdpipe import MISSING_EXTRA, StdpipeAPI, assess_solution, sep_flags
from skyphot.adapters.stdpipe_calibration import convert_zero_point
from skyphot.adapters.stdpipe_psf import StdpipePSF
from skyphot.catalogs.base import ReferenceCatalog
from skyphot.core.detection import BackgroundModel, SourceList
from skyphot.core.psf import MoffatPSF
from skyphot.errors import (
    AstrometryError,
    CalibrationError,
    ConfigError,
    DetectionError,
    ExternalToolError,
    InputError,
    PhotometryError,
    TargetOutsideFrameError,
    ToolNotFoundError,
)
from skyphot.io.frame import Frame, ObservationMeta
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.recipe import recipe_for
from skyphot.pipeline.stages.stdpipe import (
    StdpipeAstrometry,
    StdpipeCalibrate,
    StdpipeDetect,
    StdpipeFitPSF,
    StdpipeMeasureTarget,
)
from skyphot.pipeline.state import Bands, FrameState

SHAPE = (60, 80)  # (ny, nx) of the stand-in frames
RA0, DEC0, SCALE = 150.0, 2.0, 0.6  # deg, deg, arcsec/px


# --- stand-ins for STDPipe -----------------------------------------------------------------


def gaussian(n: int, sigma: float, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """A unit-sum Gaussian on an n x n grid centred on the middle element + (dx, dy)."""
    grid = np.arange(n) - n // 2
    g = np.exp(-0.5 * (((grid[None, :] - dx) ** 2) + (grid[:, None] - dy) ** 2) / sigma**2)
    return g / g.sum()


FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


class FakePsfModule:
    """STDPipe's PSF functions for a model whose PSF is a Gaussian of FWHM ``model['fwhm']``."""

    run_psfex_result: dict[str, Any] | None = None

    @staticmethod
    def get_supersampled_psf_stamp(model: dict[str, Any], x: float = 0, y: float = 0,
                                   normalize: bool = True) -> np.ndarray:
        if model["fwhm"] <= 0:
            return np.zeros((model["width"], model["width"]))
        return gaussian(int(model["width"]), model["fwhm"] * FWHM_TO_SIGMA / model["sampling"])

    @staticmethod
    def get_psf_stamp(model: dict[str, Any], x: float = 0, y: float = 0,
                      normalize: bool = True) -> np.ndarray:
        return gaussian(15, model["fwhm"] * FWHM_TO_SIGMA, x - np.round(x), y - np.round(y))

    @staticmethod
    def enclosed_psf_fraction(model: dict[str, Any], x: float = 0, y: float = 0,
                              radius: float = 1.0) -> float:
        return 1.0 - math.exp(-0.5 * (radius / (model["fwhm"] * FWHM_TO_SIGMA)) ** 2)

    def run_psfex(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return self.run_psfex_result


def psf_model(fwhm: float = 3.0, sampling: float = 0.5, width: int = 41) -> dict[str, Any]:
    return {"width": width, "height": width, "sampling": sampling, "degree": 0, "x0": 0.0,
            "sx": 1.0, "y0": 0.0, "sy": 1.0, "data": np.zeros((1, width, width)),
            "fwhm": fwhm}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Replace STDPipe (and the program lookup) with configurable stand-ins."""
    state = SimpleNamespace(
        objects=None, wcs=None, match=None, measured=None, psf=FakePsfModule(),
    )

    def measure_objects(obj: Table, image: np.ndarray, **kwargs: Any) -> Table:
        out = obj.copy()
        n = len(out)
        values = state.measured or {}
        for col in ("flux", "fluxerr", "bg_local", "npix_aper", "chi2_optimal", "mag",
                    "magerr"):
            out[col] = np.full(n, values.get(col, 1.0))
        return out

    api = StdpipeAPI(
        photometry=SimpleNamespace(
            get_objects_sextractor=lambda *a, **k: state.objects,
            measure_objects=measure_objects,
            match=lambda *a, **k: state.match,
        ),
        pipeline=SimpleNamespace(refine_astrometry=lambda *a, **k: state.wcs),
        psf=state.psf,
    )
    for module in (engine, stage_module):
        monkeypatch.setattr(module, "load_stdpipe", lambda: api)
    monkeypatch.setattr(engine, "find_tool", lambda name: Path("/bin/true"))
    return state


def tan_wcs(shape: tuple[int, int] = SHAPE) -> WCS:
    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [RA0, DEC0]
    wcs.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    wcs.wcs.cd = np.array([[-SCALE / 3600.0, 0.0], [0.0, SCALE / 3600.0]])
    return wcs


def sources_at(x: np.ndarray, y: np.ndarray) -> SourceList:
    n = x.size
    ones = np.ones(n)
    return SourceList(x=x, y=y, flux=ones * 100, fluxerr=ones, a=ones, b=ones, theta=ones * 0,
                      flag=np.zeros(n, np.int64), peak=ones, npix=np.full(n, 9))


def base_state(**products: Any) -> FrameState:
    config = MeasureConfig.model_validate({"target": {"ra": RA0, "dec": DEC0}})
    frame = Frame(data=np.zeros(SHAPE, np.float32), header=Header(), path="fake.fits",
                  hdu_index=0, hdu_name="PRIMARY")
    meta = ObservationMeta(mjd=60000.0, mjd_source="given", exptime=60.0, filter="r",
                           gain=1.5, read_noise=5.0, saturation=50000.0, instrument=None,
                           telescope=None, object_name=None)
    rms = np.ones(SHAPE, np.float32)
    values: dict[str, Any] = {
        "frame": frame, "meta": meta, "mask": np.zeros(SHAPE, np.uint8),
        "background": BackgroundModel(level_map=np.zeros(SHAPE, np.float32), rms=rms,
                                      global_level=0.0, global_rms=1.0),
        "data_sub": np.zeros(SHAPE, np.float32), "header_wcs": tan_wcs(),
    }
    values.update(products)
    return FrameState(image_path="fake.fits", config=config, **values)


def catalog_at(ra: np.ndarray, dec: np.ndarray) -> ReferenceCatalog:
    table = Table({"ra": ra, "dec": dec, "r": np.full(ra.size, 15.0),
                   "r_err": np.full(ra.size, 0.01)})
    return ReferenceCatalog(table=table, bands=("r",), name="test")


# --- the missing extra and the configuration -----------------------------------------------


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "stdpipe", None)  # makes `import stdpipe` fail
    config = MeasureConfig.model_validate({"target": {"ra": 1.0, "dec": 2.0},
                                           "engine": "stdpipe"})
    with pytest.raises(ToolNotFoundError) as info:
        recipe_for(config)
    assert str(info.value) == MISSING_EXTRA
    assert str(info.value) == (
        "the STDPipe engine needs the optional extra: pip install 'skyphot[stdpipe]'"
    )


def test_missing_extra_reaches_the_caller_through_recipe_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "stdpipe", None)
    config = MeasureConfig.model_validate({"target": {"ra": 1.0, "dec": 2.0},
                                           "engine": "stdpipe"})
    with pytest.raises(ToolNotFoundError, match=r"pip install 'skyphot\[stdpipe\]'"):
        recipe_for(config)


def test_unsupported_astrometry_method_is_refused() -> None:
    config = MeasureConfig.model_validate({
        "target": {"ra": 1.0, "dec": 2.0}, "engine": "stdpipe",
        "astrometry": {"method": "scamp"},
    })
    with pytest.raises(ConfigError, match="'scamp' is not available with the STDPipe engine"):
        recipe_for(config)


def test_recipe_reuses_the_builtin_input_stages(fake: SimpleNamespace) -> None:
    config = MeasureConfig.model_validate({"target": {"ra": 1.0, "dec": 2.0},
                                           "engine": "stdpipe"})
    stdpipe_stages = recipe_for(config)
    names = [type(s).__name__ for s in stdpipe_stages]
    assert names == ["ReadFrame", "NormaliseHeader", "BuildMask", "SubtractBackground",
                     "StdpipeDetect", "LoadCatalog", "StdpipeAstrometry", "StdpipeFitPSF",
                     "StdpipeCalibrate", "StdpipeMeasureTarget"]
    # One recipe: the engine swaps stage implementations, never the stage names, so the
    # runner's timings and failures are named alike for both engines.
    builtin = recipe_for(config.model_copy(update={"engine": "skyphot"}))
    assert [s.name for s in builtin] == [s.name for s in stdpipe_stages]
    assert [type(s).__name__ for s in builtin][:4] == names[:4]
    with_cr = config.model_copy(update={"masking": config.masking.model_copy(
        update={"cosmic_rays": True})})
    names = [type(s).__name__ for s in recipe_for(with_cr)]
    assert names[names.index("StdpipeDetect") + 1] == "MaskCosmicRays"


# --- conversions ---------------------------------------------------------------------------


def stdpipe_like_zero_fn(coef: np.ndarray, cov: np.ndarray, x0: float, y0: float,
                         scale: float) -> Any:
    """A zero-point function built the way STDPipe builds it (own normalisation)."""
    def zero_fn(xx: np.ndarray, yy: np.ndarray, mag: Any = None, get_err: bool = False) -> Any:
        x = (np.atleast_1d(xx) - x0) / scale
        y = (np.atleast_1d(yy) - y0) / scale
        rows = np.stack([np.ones_like(x), x, y], axis=1)
        if get_err:
            return np.sqrt(np.einsum("ki,ij,kj->k", rows, cov, rows))
        return rows @ coef
    return zero_fn


def test_zero_point_conversion_reproduces_stdpipe_and_applies_the_colour() -> None:
    coef = np.array([25.1, 0.03, -0.02])
    cov = np.array([[4e-5, 1e-6, -2e-6], [1e-6, 9e-6, 5e-7], [-2e-6, 5e-7, 1.6e-5]])
    zero_fn = stdpipe_like_zero_fn(coef, cov, x0=310.0, y0=180.0, scale=420.0)
    c_ref, color_term, color_err = 0.6, 0.08, 0.01
    n = 12
    used = np.ones(n, bool)
    used[3] = False
    residuals = np.linspace(-0.02, 0.02, n)
    fit = convert_zero_point(
        zero_fn, shape=(600, 800), spatial_order=1, color_term=color_term,
        color_term_err=color_err, reference_color=c_ref, median_color=0.55,
        intrinsic_scatter=0.004, used=used, residuals=residuals,
    )
    assert fit.terms == ("zp", "color", "u^1 v^0", "u^0 v^1")
    assert fit.color_term == color_term and fit.color_term_err == color_err
    assert fit.reference_color == 0.55 and fit.n_used == n - 1
    for x, y, color in [(0.0, 0.0, 2.0), (799.0, 599.0, -0.3), (412.5, 77.0, 0.6)]:
        zp, err = fit.predict(x, y, color)
        expected = float(zero_fn(x, y)[0]) + color_term * (color - c_ref)
        expected_err = math.hypot(float(zero_fn(x, y, get_err=True)[0]),
                                  color_err * (color - c_ref))
        assert zp == pytest.approx(expected, abs=1e-9)
        assert err == pytest.approx(expected_err, rel=1e-6)
    # The old integration's bug: the colour ignored. A red target must get C * colour more.
    red, blue = fit.predict(400.0, 300.0, 2.0)[0], fit.predict(400.0, 300.0, 0.0)[0]
    assert red - blue == pytest.approx(2.0 * color_term, abs=1e-12)


def test_zero_point_conversion_without_colour_term() -> None:
    coef = np.array([24.0, 0.0, 0.05])
    cov = np.diag([1e-4, 1e-5, 1e-5])
    zero_fn = stdpipe_like_zero_fn(coef, cov, x0=0.0, y0=0.0, scale=100.0)
    fit = convert_zero_point(
        zero_fn, shape=(50, 60), spatial_order=1, color_term=None, color_term_err=None,
        reference_color=0.0, median_color=None, intrinsic_scatter=0.0,
        used=np.ones(5, bool), residuals=np.zeros(5),
    )
    assert fit.color_term is None and fit.reference_color is None
    zp, err = fit.predict(30.0, 40.0, 5.0)  # the colour is ignored without a colour term
    assert zp == pytest.approx(24.0 + 0.05 * 0.4, abs=1e-9)
    assert err == pytest.approx(float(zero_fn(30.0, 40.0, get_err=True)[0]), rel=1e-6)


def test_zero_point_conversion_refuses_a_model_of_another_order() -> None:
    def quadratic(xx: Any, yy: Any, mag: Any = None, get_err: bool = False) -> Any:
        x = np.atleast_1d(xx) / 100.0
        return np.full(x.shape, 0.01) if get_err else 25.0 + 0.1 * x**2

    with pytest.raises(CalibrationError, match="is not a polynomial of order 1"):
        convert_zero_point(
            quadratic, shape=(100, 100), spatial_order=1, color_term=None,
            color_term_err=None, reference_color=0.0, median_color=None,
            intrinsic_scatter=0.0, used=np.ones(3, bool), residuals=np.zeros(3),
        )


def test_detection_flags_are_translated_to_sep_bits() -> None:
    flags = sep_flags(np.array([0, 0x02, 0x04, 0x100, 0x01 | 0x02]))
    assert flags.tolist() == [0, SEP_OBJ_MERGED, FLAG_SATURATED, SEP_APER_HASMASKED,
                              SEP_APER_HASMASKED | SEP_OBJ_MERGED]


def test_psf_fwhm_and_render_follow_the_model(fake: SimpleNamespace) -> None:
    model = StdpipePSF(model=psf_model(fwhm=3.0, sampling=0.5), shape=SHAPE)
    # A Gaussian model of FWHM 3 px: the pixel's own width (FWHM^2 8 ln2/12) is removed.
    assert model.fwhm_at(10.0, 10.0) == pytest.approx(math.sqrt(9.0 - 8 * math.log(2) / 12),
                                                      rel=0.02)
    stamp, x0, y0 = model.render(20.3, 30.6, 9)
    assert (x0, y0) == (20 - 4, 31 - 4)
    assert stamp.shape == (9, 9)
    jj, ii = np.mgrid[0:9, 0:9]
    assert np.sum(stamp * (ii + x0)) / stamp.sum() == pytest.approx(20.3, abs=0.01)
    assert np.sum(stamp * (jj + y0)) / stamp.sum() == pytest.approx(30.6, abs=0.01)
    big, _, _ = model.render(20.3, 30.6, 31)  # larger than STDPipe's stamp: zero-padded
    assert big.sum() == pytest.approx(1.0, abs=1e-12)


def test_psf_rejects_bad_models_and_sizes(fake: SimpleNamespace) -> None:
    with pytest.raises(InputError, match="keys sx, data are missing"):
        StdpipePSF(model={k: v for k, v in psf_model().items() if k not in ("sx", "data")},
                   shape=SHAPE)
    with pytest.raises(DetectionError, match="invalid sampling"):
        StdpipePSF(model={**psf_model(), "sampling": float("nan")}, shape=SHAPE)
    model = StdpipePSF(model=psf_model(), shape=SHAPE)
    with pytest.raises(InputError, match="at least 1 pixel"):
        model.render(1.0, 1.0, 0)
    empty = StdpipePSF(model=psf_model(fwhm=0.0), shape=SHAPE)
    with pytest.raises(DetectionError, match="renders as empty"):
        empty.fwhm_at(5.0, 5.0)


# --- error paths of the stages -------------------------------------------------------------


def test_detection_failure_and_empty_frame(fake: SimpleNamespace) -> None:
    fake.objects = None
    with pytest.raises(ExternalToolError, match=r"SExtractor \(run by STDPipe\) failed"):
        StdpipeDetect().run(base_state())
    fake.objects = Table({"x": np.zeros(0)})
    with pytest.raises(DetectionError, match="SExtractor found no source above 5 sigma"):
        StdpipeDetect().run(base_state())


def test_detection_without_measurable_fwhm(fake: SimpleNamespace) -> None:
    n = 3
    fake.objects = Table({
        "x": [10.0, 20.0, 30.0], "y": [5.0, 6.0, 7.0], "flux": [9.0, 8.0, 7.0],
        "fluxerr": np.ones(n), "a": np.ones(n), "b": np.ones(n), "theta": np.zeros(n),
        "flags": np.zeros(n, int), "FLUX_MAX": np.ones(n), "ISOAREA_IMAGE": np.full(n, 5),
        "fwhm": np.full(n, np.nan),
    })
    with pytest.raises(DetectionError, match=r"none of the 3 sources .* measurable FWHM"):
        StdpipeDetect().run(base_state())
    fake.objects["fwhm"] = [3.0, 4.0, 5.0]
    state = StdpipeDetect().run(base_state())
    assert state.fwhm == 4.0
    assert state.sources is not None and state.sources.x.tolist() == [10.0, 20.0, 30.0]


def test_astrometry_without_solution(fake: SimpleNamespace) -> None:
    wcs = tan_wcs()
    x = np.array([10.0, 30.0, 50.0, 70.0])
    ra, dec = wcs.all_pix2world(x, x * 0.5, 0)
    state = base_state(sources=sources_at(x, x * 0.5), catalog=catalog_at(ra, dec),
                       bands=Bands(filter="r", band="r", color_bands=None))
    fake.wcs = None
    with pytest.raises(AstrometryError, match="quad-hash matcher found no astrometric"):
        StdpipeAstrometry().run(state)
    header_cfg = state.config.model_copy(update={"astrometry": state.config.astrometry.model_copy(
        update={"method": "header"})})
    kept = StdpipeAstrometry().run(FrameState(**{**state.__dict__, "config": header_cfg}))
    assert kept.astrometry is not None and kept.astrometry.method == "header"
    assert kept.astrometry.wcs is state.header_wcs


def test_solution_check_rejects_too_few_pairs_and_a_large_rms() -> None:
    wcs = tan_wcs()
    # A grid 12 px apart: every star's nearest catalog neighbour is itself.
    gx, gy = np.meshgrid(np.arange(8.0, 75.0, 12.0), np.arange(8.0, 55.0, 12.0))
    x, y = gx.ravel()[:20], gy.ravel()[:20]
    ra, dec = wcs.all_pix2world(x, y, 0)
    good = assess_solution(wcs, sources_at(x, y), ra, dec, shape=SHAPE,
                           match_radius_arcsec=2.0, min_matches=6, max_rms_arcsec=1.0,
                           method="stdpipe-quadhash")
    assert good.n_matched == 20 and good.rms_arcsec < 1e-6 and good.matched_fraction == 1.0
    with pytest.raises(AstrometryError, match=r"only 20 detections .*\(need 25\)"):
        assess_solution(wcs, sources_at(x, y), ra, dec, shape=SHAPE, match_radius_arcsec=2.0,
                        min_matches=25, max_rms_arcsec=1.0, method="x")
    # Every detection 1.2 px (0.72 arcsec) off: matched, but the rms is too large.
    with pytest.raises(AstrometryError, match=r"astrometric rms 0\.72 arcsec"):
        assess_solution(wcs, sources_at(x + 1.2, y), ra, dec, shape=SHAPE,
                        match_radius_arcsec=2.0, min_matches=6, max_rms_arcsec=0.5,
                        method="x")


def test_psf_stage_without_model(fake: SimpleNamespace) -> None:
    fake.psf.run_psfex_result = None
    with pytest.raises(ExternalToolError, match=r"PSFEx \(run by STDPipe\) wrote no PSF"):
        StdpipeFitPSF().run(base_state())


def calibrate_state() -> FrameState:
    wcs = tan_wcs()
    x = np.array([10.0, 25.0, 40.0, 55.0, 70.0, 15.0, 65.0])
    y = np.array([10.0, 50.0, 30.0, 12.0, 45.0, 35.0, 25.0])
    ra, dec = wcs.all_pix2world(x, y, 0)
    return base_state(
        sources=sources_at(x, y), catalog=catalog_at(ra, dec),
        bands=Bands(filter="r", band="r", color_bands=None),
        psf=StdpipePSF(model=psf_model(), shape=SHAPE),
        astrometry=assess_solution(wcs, sources_at(x, y), ra, dec, shape=SHAPE,
                                   match_radius_arcsec=2.0, min_matches=3,
                                   max_rms_arcsec=1.0, method="stdpipe-quadhash"),
    )


def test_calibration_failure_and_too_few_stars(fake: SimpleNamespace) -> None:
    fake.match = None
    with pytest.raises(CalibrationError, match="STDPipe's photometric calibration failed"):
        StdpipeCalibrate().run(calibrate_state())
    n = 7
    idx = np.zeros(n, bool)
    idx[:3] = True
    fake.match = {
        "idx0": np.ones(n, bool), "idx": idx, "color": np.zeros(n),
        "zero": np.full(n, 25.0), "zero_model": np.full(n, 25.0), "ox": np.arange(n) * 5.0,
        "oy": np.arange(n) * 3.0, "cmag": np.full(n, 15.0), "cmag_err": np.full(n, 0.01),
        "omag": np.full(n, -10.0), "omag_err": np.full(n, 0.01), "color_term": None,
        "color_term_err": None, "intrinsic_rms": 0.0,
        "zero_fn": stdpipe_like_zero_fn(np.array([25.0, 0.0, 0.0]), np.eye(3) * 1e-4,
                                        0.0, 0.0, 50.0),
    }
    with pytest.raises(CalibrationError, match="kept only 3 stars \\(need 5\\)"):
        StdpipeCalibrate().run(calibrate_state())
    idx[:6] = True
    state = StdpipeCalibrate().run(calibrate_state())
    assert state.zero_point is not None and state.zero_point.n_used == 6
    assert state.zero_point.predict(30.0, 20.0)[0] == pytest.approx(25.0)


def test_target_off_frame_unmeasurable_and_recipe_error(fake: SimpleNamespace) -> None:
    state = calibrate_state()
    fake.measured = {"flux": float("nan")}
    with pytest.raises(PhotometryError, match="STDPipe cannot measure the target"):
        StdpipeMeasureTarget().run(state)
    far = state.config.model_copy(update={"target": state.config.target.model_copy(
        update={"ra": RA0 + 0.1})})
    with pytest.raises(TargetOutsideFrameError, match="outside the 80x60 frame"):
        StdpipeMeasureTarget().run(FrameState(**{**state.__dict__, "config": far}))
    moffat = FrameState(**{**state.__dict__, "psf": MoffatPSF.constant(3.0, shape=SHAPE)})
    with pytest.raises(RuntimeError, match="need the PSF from the STDPipe PSF stage"):
        StdpipeMeasureTarget().run(moffat)
    fake.measured = {"flux": 250.0, "fluxerr": 12.0, "bg_local": 0.5, "npix_aper": 28.0,
                     "chi2_optimal": 1.1}
    measured = StdpipeMeasureTarget().run(state).target
    assert measured is not None
    assert measured.psf.flux[0] == 250.0 and measured.psf.fluxerr_background[0] == 12.0
    assert (measured.x, measured.y) == pytest.approx(((SHAPE[1] - 1) / 2, (SHAPE[0] - 1) / 2))
    assert measured.encircled_energy == pytest.approx(
        FakePsfModule.enclosed_psf_fraction(psf_model(), radius=measured.aperture_radius))


# --- end to end with the real STDPipe ----------------------------------------------------------

HAVE_STDPIPE = importlib.util.find_spec("stdpipe") is not None
HAVE_TOOLS = all(shutil.which(t) for t in ("source-extractor", "psfex"))
needs_stdpipe = pytest.mark.skipif(
    not (HAVE_STDPIPE and HAVE_TOOLS),
    reason="needs the stdpipe extra (pip install 'skyphot[stdpipe]') and the Debian "
    "source-extractor and psfex packages",
)

# Systematic allowance of the STDPipe method, mag: the target is forced at the position
# of STDPipe's TAN-SIP fit (~0.1 px off; <0.5 % flux for a 3.5 px FWHM) and PSFEx's
# quadratic model leaves ~1 % flux differences between field centre and corners.
SYSTEMATIC_MAG = 0.02


def run_measure(paths: Any, truth: Any, engine_name: str, color: float | None) -> Any:
    from skyphot.pipeline.api import measure

    config = MeasureConfig.model_validate({
        "engine": engine_name,
        "target": {"ra": truth.ra, "dec": truth.dec},
        "catalog": {"path": str(paths.catalog)},
        "target_color": color,
    })
    return measure(paths.image, config)


def truth_flux_ujy(mag: float) -> float:
    return float(10.0 ** (-0.4 * (mag - 23.9)))


@needs_stdpipe
@pytest.mark.slow
@pytest.mark.tools
def test_stdpipe_engine_agrees_with_truth_and_builtin(tmp_path: Path) -> None:
    from skyphot.testing import SimulationParams, simulate_frame

    sim = simulate_frame(SimulationParams(shape=(600, 800), target_mag=18.5), seed=3)
    paths = sim.write(tmp_path)
    truth = sim.truth
    assert truth is not None
    result = run_measure(paths, truth, "stdpipe", truth.color)
    builtin = run_measure(paths, truth, "skyphot", truth.color)
    assert result.config.engine == "stdpipe"
    assert result.astrometry_method == "stdpipe-quadhash"
    assert result.detected and result.mag is not None and result.magerr is not None
    assert abs(result.mag - truth.mag) < 4 * result.magerr + SYSTEMATIC_MAG
    assert abs(result.flux - truth_flux_ujy(truth.mag)) < 4 * result.fluxerr + (
        SYSTEMATIC_MAG / 1.0857 * result.flux)
    # Same pixels, two methods: they must agree within their combined errors.
    assert builtin.mag is not None and builtin.magerr is not None
    assert abs(result.mag - builtin.mag) < math.hypot(result.magerr, builtin.magerr)
    # The 5-sigma limit is the ideal PSF-fit limit, up to the noise-map estimate (~5 %).
    assert abs(result.limiting_mag - truth.ideal_limit(result.limit_nsigma)) < 0.15
    assert abs(result.fwhm_px - truth.fwhm) < 0.1 * truth.fwhm
    assert math.hypot(result.x - truth.x, result.y - truth.y) < 0.5
    assert result.n_calib >= 10 and result.color_term is not None


@needs_stdpipe
@pytest.mark.slow
@pytest.mark.tools
def test_colour_term_is_applied_to_a_red_target(tmp_path: Path) -> None:
    from skyphot.testing import SimulationParams, simulate_frame

    sim = simulate_frame(
        SimulationParams(shape=(600, 800), target_mag=16.5, target_color=2.0), seed=5
    )
    paths = sim.write(tmp_path)
    truth = sim.truth
    assert truth is not None
    from dataclasses import replace

    from skyphot.pipeline.report import build_result
    from skyphot.pipeline.runner import run_stages
    from skyphot.pipeline.state import FrameState

    config = MeasureConfig.model_validate({
        "engine": "stdpipe", "target": {"ra": truth.ra, "dec": truth.dec},
        "catalog": {"path": str(paths.catalog)}, "target_color": truth.color,
    })
    outcome = run_stages(recipe_for(config), FrameState(str(paths.image), config))
    given = build_result(outcome.state, outcome.timings)
    # The same measurement reported without the target's colour.
    unknown = config.model_copy(update={"target_color": None})
    assumed = build_result(replace(outcome.state, config=unknown), outcome.timings)
    assert given.mag is not None and given.magerr is not None and assumed.mag is not None
    assert given.color_source == "given" and given.target_color == 2.0
    assert abs(given.mag - truth.mag) < 4 * given.magerr + SYSTEMATIC_MAG
    # Without its colour the target gets the calibrators' median colour: off by
    # C * (2.0 - median), far more than the error — the colour term matters here.
    assert assumed.color_source == "calibrators_median"
    assert "COLOR_ASSUMED" in assumed.flag_names
    assert assumed.target_color is not None and given.color_term is not None
    shift = given.color_term * (2.0 - assumed.target_color)
    assert given.zero_point - assumed.zero_point == pytest.approx(shift, abs=1e-9)
    assert abs(shift) > 4 * given.magerr
    assert abs(assumed.mag - truth.mag) > 2 * given.magerr
