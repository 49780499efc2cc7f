"""Template subtraction end to end on simulated frames with host galaxies (known truth)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skyphot.adapters._process import available
from skyphot.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_OK, main
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.recipe import recipe_for
from skyphot.pipeline.state import FrameState
from skyphot.testing import SimulatedFrame, SimulationParams, simulate_frame
from skyphot.testing.galaxy import HostComponent
from skyphot.testing.template import TemplateParams, simulate_template

HOSTS = (
    HostComponent(mag=16.8, r_eff_arcsec=4.0, sersic_n=1.0, axis_ratio=0.6, angle_deg=30.0,
                  offset_arcsec=(1.5, 1.0)),
    HostComponent(mag=17.8, r_eff_arcsec=0.8, sersic_n=4.0, offset_arcsec=(1.5, 1.0)),
)


@dataclass(frozen=True)
class Pair:
    science: Path
    catalog: Path
    template: Path
    sim: SimulatedFrame
    directory: Path


def _pair(directory: Path, seed: int, template: TemplateParams | None = None) -> Pair:
    sim = simulate_frame(SimulationParams(target_mag=19.5, hosts=HOSTS), seed=seed)
    paths = sim.write(directory, stem="science")
    tmpl = simulate_template(sim, template or TemplateParams(), seed=seed + 100)
    tpath = tmpl.write(directory, stem="template").image
    return Pair(paths.image, paths.catalog, tpath, sim, directory)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return _pair(tmp_path_factory.mktemp("sub"), seed=3)


def _argv(p: Pair, template: str, *extra: str) -> list[str]:
    t = p.sim.truth
    return ["measure", str(p.science), "--ra", repr(t.ra), "--dec", repr(t.dec),
            "--catalog", str(p.catalog), "--template", template, "--json", *extra]


def _true_ujy(mag: float) -> float:
    return 10.0 ** (-0.4 * (mag - 23.9))


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(argv) == EXIT_OK
    return dict(json.loads(capsys.readouterr().out))


def test_difference_photometry_recovers_the_transient_on_its_host(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _run(_argv(pair, str(pair.template)), capsys)
    truth = _true_ujy(pair.sim.truth.mag)
    sub = out["subtraction"]
    assert isinstance(sub, dict)
    flux, err = float(out["flux"]), float(out["fluxerr"])  # type: ignore[arg-type]
    # unbiased within 4 sigma of its own error (+1% for the zero points)
    assert abs(flux - truth) < 4 * err + 0.01 * truth
    # the science frame alone measures the host too: far too bright
    assert float(sub["science_flux"]) - truth > 10 * float(sub["science_fluxerr"])
    assert sub["method"] == "zogy"
    assert sub["template"] == "template.fits" and sub["template_origin"] == "file"
    assert 0.85 < float(sub["difference_noise_ratio"]) < 1.2
    assert sub["template_limiting_mag"] > out["limiting_mag"]  # the template is deeper
    assert set(sub["timings"]) == {"align", "match", "subtract", "photometry", "total"}
    # the profile test is for the science frame's PSF fit, not the difference image's
    assert out["psf_chi2"] is None and "PROFILE_MISMATCH" not in out["flag_names"]  # type: ignore[operator]
    # template noise is included: the error exceeds the science frame's ideal
    ideal = pair.sim.truth.ideal_flux_error() * truth / pair.sim.truth.flux_adu
    assert err > ideal


def test_diagnostics_show_science_template_and_difference(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    png = tmp_path / "diag.png"
    _run(_argv(pair, str(pair.template), "--plot", str(png)), capsys)
    with Image.open(png) as image:
        width, height = image.size
    # three rows of panels instead of two
    assert height > width * 0.9


def test_without_template_the_result_has_no_subtraction_block(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _run(_argv(pair, "none"), capsys)
    assert out["subtraction"] is None
    # host light biases the plain measurement by tenths of a magnitude
    assert float(out["mag"]) < pair.sim.truth.mag - 0.3  # type: ignore[arg-type]
    # and is not the PSF's shape
    assert "PROFILE_MISMATCH" in out["flag_names"]  # type: ignore[operator]


def test_a_faded_transient_gives_a_negative_flux(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = _pair(tmp_path, seed=4, template=TemplateParams(transient_mag=18.5))
    out = _run(_argv(p, str(p.template)), capsys)
    true_diff = _true_ujy(19.5) - _true_ujy(18.5)
    flux, err = float(out["flux"]), float(out["fluxerr"])  # type: ignore[arg-type]
    assert flux < 0 and out["mag"] is None
    assert abs(flux - true_diff) < 4 * err + 0.02 * abs(true_diff)


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], *fragments: str) -> None:
    assert main(argv) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    message = captured.err.strip().splitlines()[-1]
    assert message.startswith(("skyphot: error: template: ", "skyphot: error: subtract: "))
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message


def test_missing_template_file(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(_argv(pair, str(pair.directory / "nope.fits")), capsys, "nope.fits", "does not exist")


def test_unreadable_template(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "junk.fits"
    bad.write_text("not an image\n" * 50)
    _fails(_argv(pair, str(bad)), capsys, "junk.fits", "unusable (read)")


def test_template_not_covering_the_target(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    far = simulate_template(pair.sim, TemplateParams(pointing_offset_arcsec=(1500.0, 0.0)), seed=1)
    path = far.write(tmp_path, stem="far").image
    _fails(_argv(pair, str(path)), capsys, "far.fits", "does not cover the target")


def test_template_in_another_band(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = simulate_template(pair.sim, TemplateParams(filter="i"), seed=1)
    path = other.write(tmp_path, stem="iband").image
    _fails(_argv(pair, str(path)), capsys, "band i", "same band")


def test_template_too_shallow(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shallow = simulate_template(pair.sim, TemplateParams(zero_point=27.3, sky=3000.0), seed=1)
    path = shallow.write(tmp_path, stem="shallow").image
    _fails(_argv(pair, str(path)), capsys, "too shallow", "deeper template")


def test_template_without_wcs(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fits.open(pair.template) as hdul:
        header = hdul[0].header.copy()
        data = hdul[0].data
    for key in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2",
                "CD2_1", "CD2_2", "CUNIT1", "CUNIT2", "WCSAXES"):
        header.remove(key, ignore_missing=True)
    path = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(data=data, header=header).writeto(path)
    _fails(_argv(pair, str(path)), capsys, "nowcs.fits", "wcs")



def test_full_frame_tiled_subtraction_agrees_with_the_target_cutout(pair: Pair) -> None:
    from skyphot.pipeline.api import measure
    from skyphot.pipeline.config import MeasureConfig

    t = pair.sim.truth
    base = {"target": {"ra": t.ra, "dec": t.dec}, "catalog": {"path": str(pair.catalog)}}
    cut = measure(pair.science, MeasureConfig.model_validate(
        {**base, "subtraction": {"template": str(pair.template)}}))
    full = measure(pair.science, MeasureConfig.model_validate(
        {**base, "subtraction": {"template": str(pair.template), "region": "full",
                                 "tile_px": 256}}))
    assert full.subtraction is not None and cut.subtraction is not None
    assert full.subtraction.cutout_px == max(pair.sim.data.shape)
    # same frames, same template: the two differ only by the PSFs of other tiles' edges
    assert abs(full.flux - cut.flux) < 0.5 * cut.fluxerr
    truth = 10.0 ** (-0.4 * (t.mag - 23.9))
    assert abs(full.flux - truth) < 4 * full.fluxerr + 0.01 * truth


def test_sfft_method_for_comparison(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sfft")
    out = _run(_argv(pair, str(pair.template), "--config", str(_sfft_config(pair))), capsys)
    sub = out["subtraction"]
    assert isinstance(sub, dict) and sub["method"] == "sfft"
    truth = _true_ujy(pair.sim.truth.mag)
    flux, err = float(out["flux"]), float(out["fluxerr"])  # type: ignore[arg-type]
    # SFFT removes the host too (its errors here are conservative)
    assert abs(flux - truth) < 4 * err + 0.02 * truth
    assert float(sub["science_flux"]) - truth > 10 * float(sub["science_fluxerr"])


def _sfft_config(p: Pair) -> Path:
    path = p.directory / "sfft.yaml"
    path.write_text("subtraction:\n  method: sfft\n")
    return path


@pytest.mark.skipif(not available("swarp"), reason="swarp is not installed")
def test_swarp_alignment_option(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    """The real SWarp aligns the template: its flux is the sky's and the transient comes
    out right."""
    t = pair.sim.truth
    config = MeasureConfig.model_validate({
        "target": {"ra": t.ra, "dec": t.dec}, "catalog": {"path": str(pair.catalog)},
        "subtraction": {"template": str(pair.template), "align": "swarp"},
    })
    state = FrameState(image_path=str(pair.science), config=config)
    for stage in recipe_for(config):
        state = stage.run(state)
    sub = state.subtraction
    assert sub is not None and state.target is not None
    # The aligned template (science units) holds the science frame's static light: in a
    # wide aperture around the host, science minus template is the transient alone.
    x, y = t.x - sub.origin[0], t.y - sub.origin[1]
    yy, xx = np.indices(sub.science.shape)
    ap = (np.hypot(xx - x, yy - y) < 4.0 * t.fwhm) & ~sub.bad
    static_sci = float(sub.science[ap].sum()) - t.flux_adu
    static_tpl = float(sub.template_aligned[ap].sum())
    noise = math.sqrt(float(sub.variance[ap].sum()))
    assert abs(static_tpl - static_sci) < 4 * noise + 0.01 * static_sci
    flux, err = float(state.target.psf.flux[0]), float(state.target.psf.fluxerr[0])
    assert abs(flux - t.flux_adu) < 4 * err + 0.01 * t.flux_adu
    # and through the command line
    out = _run(_argv(pair, str(pair.template), "--template-align", "swarp"), capsys)
    truth = _true_ujy(t.mag)
    assert abs(float(out["flux"]) - truth) < 4 * float(out["fluxerr"]) + 0.01 * truth  # type: ignore[arg-type]


@pytest.mark.skipif(available("hotpants"), reason="hotpants is installed here")
def test_hotpants_method_without_the_program(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    _fails_with(
        _argv(pair, str(pair.template), "--subtraction-method", "hotpants"), capsys,
        EXIT_ENVIRONMENT, "hotpants is not installed",
    )


def _fails_with(
    argv: list[str], capsys: pytest.CaptureFixture[str], code: int, fragment: str
) -> None:
    assert main(argv) == code
    captured = capsys.readouterr()
    assert captured.out == "" and fragment in captured.err


def test_flux_ratio_is_refined_from_the_first_difference(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    """The template/science flux ratio against the simulator's two zero points."""
    out = _run(_argv(pair, str(pair.template)), capsys)
    sub = out["subtraction"]
    assert isinstance(sub, dict)
    assert "first difference image" in str(sub["flux_ratio_source"])
    ratio, err = float(sub["flux_ratio"]), float(sub["flux_ratio_err"])
    assert abs(ratio - _true_flux_ratio(pair)) < 4 * err
    # Few stars on this small frame, measured in wide apertures (the residuals' PSF-fit
    # flux would carry the PSF models' shape errors): ~3%; 2048 px frames: ~0.5%.
    assert err < 0.05 * ratio


def _true_flux_ratio(pair: Pair) -> float:
    t = pair.sim.truth
    tmpl = simulate_template(pair.sim, TemplateParams(), seed=3 + 100)  # the fixture's
    tx, ty = tmpl.true_wcs.all_world2pix(np.array([t.ra]), np.array([t.dec]), 0)
    zp_t = float(tmpl.photometry.zero_point_at(float(tx[0]), float(ty[0]), t.color))
    return float(10 ** (0.4 * (zp_t - t.zero_point_at_target)))


@pytest.mark.parametrize("fallback", ["stars on both frames", "zero points"])
def test_flux_ratio_falls_back_when_too_few_stars_refine_it(
    pair: Pair, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    fallback: str,
) -> None:
    """A field with too few isolated stars for the first difference (and, further, too few
    calibration stars shared by both frames): the ratio comes from the stars' fluxes (or
    the two zero points), is named, and is still right within its error, which carries
    into the transient's."""
    from skyphot.errors import TooFewStarsError
    from skyphot.pipeline.stages import subtraction as stage

    def too_few(*args: object, **kwargs: object) -> None:
        raise TooFewStarsError("only 2 stars")

    monkeypatch.setattr(stage, "flux_ratio_from_difference", too_few)
    if fallback == "zero points":
        monkeypatch.setattr(stage, "mean_flux_ratio", too_few)
    out = _run(_argv(pair, str(pair.template)), capsys)
    sub = out["subtraction"]
    assert isinstance(sub, dict)
    assert str(sub["flux_ratio_source"]).endswith(fallback)
    ratio, err = float(sub["flux_ratio"]), float(sub["flux_ratio_err"])
    assert abs(ratio - _true_flux_ratio(pair)) < 4 * err
    truth = _true_ujy(pair.sim.truth.mag)
    flux, fluxerr = float(out["flux"]), float(out["fluxerr"])  # type: ignore[arg-type]
    assert abs(flux - truth) < 4 * fluxerr + 0.01 * truth


def _clean_noise_ratio(sub: object, sim: SimulatedFrame) -> float:
    """std of difference / predicted sigma over the subtracted region, away from the target,
    masked pixels and the simulated defects (whose residuals are not noise)."""
    from scipy.ndimage import maximum_filter

    from skyphot.pipeline.state import SubtractionProducts

    assert isinstance(sub, SubtractionProducts)
    x0, y0 = sub.origin
    ny, nx = sub.difference.shape
    region = (slice(y0, y0 + ny), slice(x0, x0 + nx))
    d = sim.defects
    defects = (d.cosmic_ray_mask | d.saturated_mask).copy()
    if d.bad_column_x is not None:
        defects[:, d.bad_column_x] = True
    near_defect = maximum_filter(defects.astype(np.uint8), size=25)[region] > 0
    yy, xx = np.indices((ny, nx))
    t = sim.truth
    far = np.hypot(xx + x0 - t.x, yy + y0 - t.y) > 30
    sel = far & ~sub.bad & ~near_defect
    return float(np.std(sub.difference[sel] / np.sqrt(sub.variance[sel])))


def test_difference_noise_is_predicted_with_a_rotated_finer_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from skyphot.pipeline.stages import subtraction as stage

    # template pixels 0.4" (frame 0.6"), rotated, seeing broader than the frame's: its
    # kernel passes the high frequencies where resampling changed its noise most
    tp = TemplateParams(pixel_scale=0.4, rotation_deg=35.0, fwhm=7.0, shape=(1000, 1250),
                        zero_point=30.0)
    p = _pair(tmp_path, seed=5, template=tp)
    t = p.sim.truth
    config = MeasureConfig.model_validate({
        "target": {"ra": t.ra, "dec": t.dec}, "catalog": {"path": str(p.catalog)},
        "subtraction": {"template": str(p.template)},
    })
    state = FrameState(image_path=str(p.science), config=config)
    for s in recipe_for(config):
        state = s.run(state)
    assert state.subtraction is not None
    ratio = _clean_noise_ratio(state.subtraction, p.sim)
    # ~1e5 pixels: sampling error << 1%; residuals of stars add a little
    assert 0.95 < ratio < 1.06
    # the same subtraction with the template noise taken as white mispredicts it
    white = np.ones((1, 1))
    monkeypatch.setattr(stage, "resampled_noise_acf", lambda *a, **k: white)
    pre = replace(state, target=state.subtraction.science_target, subtraction=None)
    again = stage.SubtractTemplate().run(pre)
    assert again.subtraction is not None
    assert _clean_noise_ratio(again.subtraction, p.sim) > 1.1
