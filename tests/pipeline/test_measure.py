"""End-to-end accuracy on simulated frames with known truth.

Tolerances come from the errors the engine reports: a measurement is accepted when it is
within 4 sigma of the truth (the chance of a false failure is ~6e-5 per assertion).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skyphot.core.masking import MaskBits
from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.recipe import recipe_for
from skyphot.pipeline.report import build_result
from skyphot.pipeline.result import QualityFlag
from skyphot.pipeline.runner import run_stages
from skyphot.pipeline.state import FrameState
from skyphot.testing import SimulationParams, simulate_frame


def _config(sim: object, catalog: Path, **extra: object) -> MeasureConfig:
    truth = sim.truth  # type: ignore[attr-defined]
    data = {"target": {"ra": truth.ra, "dec": truth.dec}, "catalog": {"path": str(catalog)}}
    data.update(extra)
    return MeasureConfig.model_validate(data)


def _measure_sim(tmp_path: Path, params: SimulationParams, seed: int, **extra: object):  # type: ignore[no-untyped-def]
    sim = simulate_frame(params, seed=seed)
    paths = sim.write(tmp_path, stem=f"sim{seed}")
    return sim, measure(paths.image, _config(sim, paths.catalog, **extra))


def test_detected_target_matches_truth(small_frame) -> None:  # type: ignore[no-untyped-def]
    truth = small_frame.sim.truth
    result = measure(
        small_frame.image, _config(small_frame.sim, small_frame.catalog, target_color=truth.color)
    )
    assert result.detected
    assert result.mag is not None and result.magerr is not None
    assert abs(result.mag - truth.mag) < 4 * result.magerr
    # a lone point source has the PSF's shape: its fit's chi-square is the stars'
    assert "PROFILE_MISMATCH" not in result.flag_names
    assert result.psf_chi2 is not None and result.psf_chi2_expected is not None
    assert abs(result.psf_chi2 - result.psf_chi2_expected) < 0.5
    # The zero point is for total fluxes (aperture-corrected), like the simulator's.
    assert abs(result.zero_point - truth.zero_point_at_target) < 4 * result.zero_point_err
    # the zero-point fit's REML error model is reported (its scale never below 1)
    assert result.calib_error_scale >= 1.0 and result.calib_intrinsic_scatter >= 0.0
    # The depth is the PSF-fit depth from background and read noise alone.
    assert abs(result.limiting_mag - truth.ideal_limit(5.0)) < 0.05
    assert result.color_source == "given"
    assert result.target_color == pytest.approx(truth.color)
    assert result.n_calib >= 10
    assert result.astrometry_rms_arcsec < 0.3
    assert abs(result.x - truth.x) < 0.3 and abs(result.y - truth.y) < 0.3
    assert result.mjd == pytest.approx(truth.mjd_mid, abs=1e-7)
    # Flux in µJy agrees with the magnitude.
    assert result.flux == pytest.approx(10 ** (-0.4 * (result.mag - 23.9)), rel=1e-6)
    assert set(result.timings) >= {"read", "header", "calibrate", "target", "total"}


def test_colour_term_is_applied_to_the_target(tmp_path: Path) -> None:
    """A red target measured with and without its colour: only the given colour is right."""
    params = SimulationParams(shape=(600, 800), target_mag=18.0, target_color=1.5, color_term=0.15)
    sim = simulate_frame(params, seed=3)
    paths = sim.write(tmp_path, stem="red")
    given = measure(paths.image, _config(sim, paths.catalog, target_color=1.5))
    assumed = measure(paths.image, _config(sim, paths.catalog))
    assert given.mag is not None and given.magerr is not None and assumed.mag is not None
    assert abs(given.mag - sim.truth.mag) < 4 * given.magerr
    assert given.color_term == pytest.approx(0.15, abs=4 * (given.color_term_err or 1))
    assert assumed.color_source == "calibrators_median"
    assert "COLOR_ASSUMED" in assumed.flag_names
    # The assumed (median) colour is ~0.6 bluer, so the difference is the colour term times that.
    expected_shift = given.color_term * (1.5 - (assumed.target_color or 0.0))  # type: ignore[operator]
    assert given.mag - assumed.mag == pytest.approx(expected_shift, abs=0.01)


def test_faint_target_gives_an_upper_limit(tmp_path: Path) -> None:
    params = SimulationParams(shape=(600, 800), target_mag=25.5)
    sim, result = _measure_sim(tmp_path, params, seed=5)
    assert not result.detected
    assert result.mag is None and result.magerr is None
    assert result.snr < 5
    assert abs(result.limiting_mag - sim.truth.ideal_limit(5.0)) < 0.15
    assert result.limit_nsigma == 5


def test_three_sigma_limit_is_deeper_by_the_sigma_ratio(tmp_path: Path) -> None:
    params = SimulationParams(shape=(600, 800), target_mag=25.5)
    sim = simulate_frame(params, seed=5)
    paths = sim.write(tmp_path)
    five = measure(paths.image, _config(sim, paths.catalog))
    three = measure(paths.image, _config(sim, paths.catalog, nsigma=3.0))
    assert three.limiting_mag - five.limiting_mag == pytest.approx(
        2.5 * math.log10(5 / 3), abs=1e-6
    )


def test_target_near_the_edge_is_measured_and_flagged(tmp_path: Path) -> None:
    params = SimulationParams(shape=(600, 800), target_mag=17.5, target_xy=(3.0, 300.0))
    sim, result = _measure_sim(tmp_path, params, seed=7, target_color=0.6)
    assert "TARGET_NEAR_EDGE" in result.flag_names or "TARGET_MASKED_PIXELS" in result.flag_names
    assert result.mag is not None and result.magerr is not None
    assert abs(result.mag - sim.truth.mag) < 4 * result.magerr + 0.02


def test_saturated_neighbour_does_not_bias_the_target(tmp_path: Path) -> None:
    params = SimulationParams(
        shape=(600, 800), target_mag=18.0, target_xy=(400.0, 300.0), saturated_neighbour_px=25.0
    )
    sim, result = _measure_sim(tmp_path, params, seed=9, target_color=0.6)
    assert result.mag is not None and result.magerr is not None
    assert abs(result.mag - sim.truth.mag) < 4 * result.magerr + 0.02


@pytest.mark.parametrize("compression", ["fz", "gz"])
def test_compressed_frames_give_the_same_answer(
    small_frame, tmp_path: Path, compression: str
) -> None:  # type: ignore[no-untyped-def]
    paths = small_frame.sim.write(tmp_path, stem="c", compression=compression)
    plain = measure(small_frame.image, _config(small_frame.sim, small_frame.catalog))
    packed = measure(paths.image, _config(small_frame.sim, paths.catalog))
    assert packed.mag == pytest.approx(plain.mag, abs=1e-4)


def test_quality_flags_are_consistent(small_frame) -> None:  # type: ignore[no-untyped-def]
    result = measure(small_frame.image, _config(small_frame.sim, small_frame.catalog))
    assert sorted(result.flag_names) == sorted(
        f.name for f in QualityFlag if f & result.flags and f.name
    )
    assert result.config.catalog.path == str(small_frame.catalog)


def test_diagnostics_png_is_written(small_frame, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "diag" / "d.png"
    measure(small_frame.image, _config(small_frame.sim, small_frame.catalog), diagnostics=out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000


@pytest.mark.parametrize(
    ("seed", "target_mag", "peak", "distance"),
    [(3, 24.5, 10.0, 12.0), (4, 24.5, 10.0, 12.0), (5, 20.5, 0.3, 8.75), (6, 20.5, 0.3, 8.75)],
    ids=["saturated-3", "saturated-4", "bright-5", "bright-6"],
)
def test_a_bright_neighbours_wing_is_subtracted_not_measured(
    tmp_path: Path, seed: int, target_mag: float, peak: float, distance: float
) -> None:
    """A target 2.5-3.5 FWHM from a saturated star, or from a bright one 6 mag brighter:
    the star's wing in the fit circle used to be taken for the target's light (a false
    detection of an undetectable target); it is now fitted, subtracted, flagged and noted,
    and the target's flux agrees with the truth within its error (which holds the
    subtraction's, probed around the star)."""
    params = SimulationParams(
        shape=(600, 800), target_mag=target_mag, target_xy=(400.0, 300.0),
        saturated_neighbour_px=distance, neighbour_peak=peak,
    )
    sim, result = _measure_sim(tmp_path, params, seed=seed, target_color=0.6)
    assert "NEIGHBOURS_SUBTRACTED" in result.flag_names
    assert any("neighbour" in n and "subtracted" in n for n in result.notes)
    true_ujy = 10 ** (-0.4 * (sim.truth.mag - 23.9))
    if target_mag > 24:
        assert not result.detected
    assert abs(result.flux - true_ujy) < 3 * result.fluxerr


@pytest.mark.parametrize(
    ("seed", "peak", "distance"),
    [(0, 0.003, 3.5), (1, 0.003, 3.5), (0, 0.05, 5.25), (2, 0.05, 5.25)],
    ids=["merged-0", "merged-1", "bright-0", "bright-2"],
)
def test_a_star_within_two_fwhm_is_fitted_with_the_target(
    tmp_path: Path, seed: int, peak: float, distance: float
) -> None:
    """A 20th-magnitude target 1 FWHM from a star as bright (merged into one detection, or
    undetected with it), or 1.5 FWHM from one 17 times brighter: measured alone it took
    the star's light (pulls of +4 to +38); the star is now fitted together with it,
    subtracted, flagged and noted, and the target's flux agrees with the truth."""
    params = SimulationParams(
        shape=(600, 800), target_mag=20.0, target_xy=(400.0, 300.0),
        saturated_neighbour_px=distance, neighbour_peak=peak,
    )
    sim, result = _measure_sim(tmp_path, params, seed=seed, target_color=0.6)
    assert {"BLENDED", "NEIGHBOURS_SUBTRACTED"} <= set(result.flag_names)
    assert any("within 2 FWHM, fitted together with the target" in n for n in result.notes)
    true_ujy = 10 ** (-0.4 * (sim.truth.mag - 23.9))
    assert abs(result.flux - true_ujy) < 3 * result.fluxerr


@pytest.mark.parametrize("seed", [0, 1])
def test_a_pair_closer_than_the_fwhm_is_flagged_as_not_the_psfs_shape(
    tmp_path: Path, seed: int
) -> None:
    """A star as bright as the 20th-magnitude target 0.5 FWHM from it is not separated (the
    flux takes both, +12 to +14 sigma); the fit's chi-square, 2.5 where the frame's stars of
    that S/N give 1.0 +- 0.17, says so with a flag and a note."""
    params = SimulationParams(
        shape=(600, 800), target_mag=20.0, target_xy=(400.0, 300.0),
        saturated_neighbour_px=1.75, neighbour_peak=0.003,
    )
    _, result = _measure_sim(tmp_path, params, seed=seed, target_color=0.6)
    assert "PROFILE_MISMATCH" in result.flag_names
    assert result.psf_chi2 is not None and result.psf_chi2_expected is not None
    assert result.psf_chi2 > result.psf_chi2_expected + 1.0
    assert any(n.startswith("the target's light does not have the PSF's shape")
               and "a companion within ~0.75 FWHM" in n for n in result.notes)


def _hit_near_the_target(image: Path, truth: object, electrons: float, gain: float) -> None:
    """Add a 2-px cosmic-ray hit (``electrons`` per pixel) 2.2 px from the target."""
    with fits.open(image, mode="update") as hdul:
        hdu = next(h for h in hdul if h.data is not None)
        data = hdu.data.astype(float)
        col, row = round(truth.x) + 2, round(truth.y) + 1  # type: ignore[attr-defined]
        data[row, col : col + 2] += electrons / gain
        hdu.data = data


@pytest.mark.parametrize("seed", [0, 1])
def test_a_cosmic_ray_hit_on_the_target_is_masked_before_it_is_measured(
    tmp_path: Path, seed: int
) -> None:
    """A 1,000 e- hit 2 px from a 20th-magnitude target (the simulator keeps its own hits
    away from it): measured as it was, the flux came out +5 to +8 sigma too bright with
    nothing but the profile test to say so; the hit is now masked (flag and note) and the
    flux agrees with the truth, with no blended neighbour made of the hit."""
    params = SimulationParams(shape=(600, 800), target_mag=20.0, target_xy=(400.0, 300.0))
    sim = simulate_frame(params, seed=seed)
    paths = sim.write(tmp_path, stem=f"hit{seed}")
    _hit_near_the_target(paths.image, sim.truth, 1000.0, params.gain)
    true_ujy = 10 ** (-0.4 * (sim.truth.mag - 23.9))
    result = measure(paths.image, _config(sim, paths.catalog, target_color=sim.truth.color))
    assert "TARGET_MASKED_PIXELS" in result.flag_names
    assert not {"BLENDED", "PROFILE_MISMATCH"} & set(result.flag_names)
    assert "2 cosmic-ray pixels in the target's fit circle masked before it was measured" \
        in result.notes
    assert abs(result.flux - true_ujy) < 3 * result.fluxerr
    # without the search the hit is in the flux, and the profile test says so
    unmasked = measure(paths.image, _config(sim, paths.catalog, target_color=sim.truth.color,
                                            masking={"target_cosmic_rays": False}))
    assert (unmasked.flux - true_ujy) / unmasked.fluxerr > 4
    assert "PROFILE_MISMATCH" in unmasked.flag_names


def test_the_whole_frame_search_masks_the_simulators_hits_and_drops_their_detections(
    tmp_path: Path,
) -> None:
    """``masking.cosmic_rays``: the simulator's 20 hits are masked (nearly all; a few hits are
    too faint to tell from noise), no detection is left within 2 px of a masked hit, and
    the target is measured as before."""
    params = SimulationParams(shape=(600, 800), target_mag=20.0, target_xy=(400.0, 300.0))
    sim = simulate_frame(params, seed=5)
    paths = sim.write(tmp_path, stem="crs")
    config = _config(sim, paths.catalog, target_color=sim.truth.color,
                     masking={"cosmic_rays": True})
    outcome = run_stages(recipe_for(config), FrameState(image_path=str(paths.image),
                                                        config=config))
    state = outcome.state
    assert state.mask is not None and state.sources is not None
    flagged = (state.mask & np.uint8(MaskBits.COSMIC_RAY)) != 0
    truth = sim.defects.cosmic_ray_mask
    assert np.count_nonzero(flagged & truth) >= 0.8 * np.count_nonzero(truth)
    rows, cols = np.nonzero(flagged)
    for x, y in zip(state.sources.x, state.sources.y, strict=True):
        assert np.min(np.maximum(abs(cols - x), abs(rows - y))) > 1.5
    result = build_result(state, outcome.timings)
    assert abs(result.flux - 10 ** (-0.4 * (sim.truth.mag - 23.9))) < 4 * result.fluxerr


@pytest.mark.parametrize("seed", [8, 9])
def test_cosmic_rays_on_a_sparse_frame_are_no_psf_stars(tmp_path: Path, seed: int) -> None:
    """150 stars and 20 cosmic-ray hits on a small frame: the hits were among the brightest
    isolated "stars" and made a 0.3-0.4 px PSF (FWHM 3.5 px true); they are sharper than
    the frame's typical star, or have no half-maximum width at all, and are left out."""
    params = SimulationParams(
        shape=(400, 500), n_stars=150, target_mag=20.5, target_xy=(250.0, 200.0),
        saturated_neighbour_px=12.25, neighbour_peak=0.3,
    )
    sim, result = _measure_sim(tmp_path, params, seed=seed, target_color=0.5)
    true_fwhm = sim.psf.fwhm_at(250.0, 200.0)
    assert abs(result.fwhm_px / true_fwhm - 1.0) < 0.1
    true_ujy = 10 ** (-0.4 * (sim.truth.mag - 23.9))
    assert abs(result.flux - true_ujy) < 3 * result.fluxerr
