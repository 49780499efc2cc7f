"""Issue 8's "wide" case, small: a non-square uint16 frame with BZERO, cubic distortion the
header WCS lacks, a PSF 25 % broader in the corners, and the target near an edge.

Tolerances are 4 sigma of the reported errors (false failure ~6e-5 per assertion); the
benchmark (`benchmarks/run.py`) runs the full-size case over many seeds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from astropy.io import fits

from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig
from skyphot.testing import SimulationParams, simulate_frame
from skyphot.testing.bias import scene_bias


@pytest.mark.parametrize(("seed", "target_xy"), [(11, (450.0, 45.0)), (12, (60.0, 300.0))])
def test_wide_frame_with_target_near_an_edge(
    tmp_path: Path, seed: int, target_xy: tuple[float, float]
) -> None:
    params = SimulationParams(
        shape=(520, 900), n_stars=500, target_mag=19.0, dtype="uint16", distortion=3.0,
        fwhm_gradient=0.25, target_xy=target_xy,
    )
    sim = simulate_frame(params, seed=seed)
    paths = sim.write(tmp_path, stem=f"wide{seed}")
    header = fits.getheader(paths.image)
    assert header["BITPIX"] == 16 and header["BZERO"] == 32768
    truth = sim.truth
    config = MeasureConfig.model_validate({
        "target": {"ra": truth.ra, "dec": truth.dec}, "catalog": {"path": str(paths.catalog)},
        "target_color": truth.color,
    })
    result = measure(paths.image, config)
    assert result.detected and result.mag is not None and result.magerr is not None
    assert abs(result.mag - truth.mag) < 4 * result.magerr
    assert abs(result.zero_point - truth.zero_point_at_target) < 4 * result.zero_point_err
    assert abs(result.limiting_mag - truth.ideal_limit(5.0)) < 0.05
    assert abs(result.x - truth.x) < 0.3 and abs(result.y - truth.y) < 0.3
    # The PSF model follows the broadening: the FWHM at the target is the true one.
    assert result.fwhm_px == pytest.approx(truth.fwhm, rel=0.05)


def test_a_wide_frames_bias_over_noise_draws_is_within_its_sigma(tmp_path: Path) -> None:
    """One scene under 6 noise draws: its mean flux error (the frame's systematic bias)
    is within 3 of its standard errors of zero and within sigma + 0.01 mag, and the draws
    scatter as their reported errors say (pull std 0.5-1.6 for 6 draws)."""
    params = SimulationParams(
        shape=(520, 900), n_stars=500, target_mag=19.5, dtype="uint16", distortion=3.0,
        fwhm_gradient=0.25, target_xy=(450.0, 45.0),
    )
    errors, sigmas = [], []
    for k in range(6):
        sim = simulate_frame(params, seed=11, noise_seed=k)
        paths = sim.write(tmp_path, stem=f"draw{k}")
        truth = sim.truth
        config = MeasureConfig.model_validate({
            "target": {"ra": truth.ra, "dec": truth.dec},
            "catalog": {"path": str(paths.catalog)}, "target_color": truth.color,
        })
        result = measure(paths.image, config)
        true_ujy = 10 ** (-0.4 * (truth.mag - 23.9))
        errors.append(result.flux - true_ujy)
        sigmas.append(result.fluxerr)
    bias = scene_bias(errors, sigmas, true_flux=true_ujy)
    assert abs(bias.bias_flux) < 3 * bias.bias_flux_stderr
    assert bias.within_sigma
    assert 0.5 < bias.pull_std < 1.6
