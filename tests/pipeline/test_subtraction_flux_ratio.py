"""The template/science flux ratio of the subtraction against the simulator's truth, on
nearly noise-free frames (high gain) whose PSFs vary across the field."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from skyphot.core.detection import SourceList
from skyphot.core.psf import MoffatPSF
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.recipe import recipe_for
from skyphot.pipeline.stages.subtraction import _refine_flux_ratio
from skyphot.pipeline.state import FrameState
from skyphot.testing import SimulationParams, simulate_frame
from skyphot.testing.template import TemplateParams, simulate_template

# e-/ADU: the noise is ~10 times below the default frames' (the ratio's error ~0.02%)
_GAIN = 150.0


@pytest.mark.parametrize("template_fwhm", [2.4, 5.0], ids=["sharper", "broader"])
def test_flux_ratio_is_unbiased_where_the_psfs_vary_across_the_window(
    tmp_path: Path, template_fwhm: float
) -> None:
    """Stars away from the target have both PSFs other than the target's: their residuals
    in the first difference grow with the distance (as the FWHM does, quadratically) and,
    left in, biased the fitted ratio at the target by 0.4-2% on this frame (0.2-0.4% on the
    2048 px benchmark frames); times a host 10-20 times the transient, a few 0.01 mag."""
    sim = simulate_frame(
        # a flat zero point: the true ratio is the same everywhere, only the PSFs vary
        SimulationParams(shape=(1024, 1024), n_stars=800, fwhm_gradient=0.15, zp_gradient=0.0,
                         gain=_GAIN, target_mag=19.5, target_xy=(520.0, 505.0)),
        seed=21,
    )
    tp = TemplateParams(fwhm=template_fwhm, pixel_scale=0.5, rotation_deg=25.0,
                        shape=(1300, 1300), pointing_offset_arcsec=(10.0, -8.0),
                        zero_point=30.0, gain=_GAIN)
    tmpl = simulate_template(sim, tp, seed=22)
    paths = sim.write(tmp_path, stem="science")
    tpath = tmpl.write(tmp_path, stem="template").image
    t = sim.truth
    config = MeasureConfig.model_validate({
        "target": {"ra": t.ra, "dec": t.dec}, "catalog": {"path": str(paths.catalog)},
        "subtraction": {"template": str(tpath)},
    })
    state = FrameState(image_path=str(paths.image), config=config)
    for stage in recipe_for(config):
        state = stage.run(state)
    sub = state.subtraction
    assert sub is not None
    assert "first difference image" in sub.flux_ratio_source
    tx, ty = tmpl.true_wcs.all_world2pix(np.array([t.ra]), np.array([t.dec]), 0)
    zp_t = float(tmpl.photometry.zero_point_at(float(tx[0]), float(ty[0]), t.color))
    true_ratio = 10 ** (0.4 * (zp_t - t.zero_point_at_target))
    # before the star residuals were modelled: +2.3% (sharper), -0.4% (broader); now ~0.1%
    assert abs(sub.flux_ratio / true_ratio - 1.0) < 0.002


def _stars_rendered(psf: MoffatPSF, xs: np.ndarray, ys: np.ndarray, flux: np.ndarray,
                    shape: tuple[int, int], size: int) -> np.ndarray:
    image = np.zeros(shape)
    for x, y, f in zip(xs, ys, flux, strict=True):
        stamp, x0, y0 = psf.render(float(x), float(y), size)
        image[y0:y0 + size, x0:x0 + size] += f * stamp
    return image


def test_flux_ratio_ignores_an_error_in_a_psf_models_shape() -> None:
    """The science PSF model a little too broad in its core (Moffat beta 2.94 fitted where
    the stars have 3.0, as noisy benchmark frames gave): each static star leaves a residual
    of zero total flux whose PSF-fit flux is +0.35% of its own, which biased the ratio by
    -0.3% to -0.5%. Measured in a wide aperture the residual holds no flux and the ratio is
    right to the encircled-energy difference (< 0.1%)."""
    shape = (512, 512)
    fwhm_n, fwhm_r, rho = 3.5, 2.3, 8.0
    size = 2 * math.ceil(6.0 * fwhm_n) + 1
    g = np.linspace(60.0, 450.0, 8)
    xs, ys = (a.ravel() + 0.3 for a in np.meshgrid(g, g))
    far = np.hypot(xs - 256.0, ys - 256.0) > 60.0  # clear of the "target"
    xs, ys = xs[far], ys[far]
    flux = np.full(xs.size, 2e5)
    true_n = MoffatPSF.constant(fwhm_n, beta=3.0)
    true_r = MoffatPSF.constant(fwhm_r, beta=3.0)
    model_n = MoffatPSF.constant(fwhm_n, beta=2.94)
    sci = _stars_rendered(true_n, xs, ys, flux, shape, size)
    ref = rho * _stars_rendered(true_r, xs, ys, flux, shape, size)
    rng = np.random.default_rng(3)
    sci += rng.normal(0.0, 1.0, shape)
    ref += rng.normal(0.0, 1.0, shape)
    var = np.ones(shape)
    psf_n, _, _ = model_n.render(256.0, 256.0, size)
    psf_r, _, _ = true_r.render(256.0, 256.0, size)
    n = xs.size
    sources = SourceList(
        x=xs, y=ys, flux=flux, fluxerr=np.ones(n), a=np.full(n, 1.5), b=np.full(n, 1.5),
        theta=np.zeros(n), flag=np.zeros(n, dtype=np.int16), peak=flux / 30.0,
        npix=np.full(n, 30),
    )
    refined = _refine_flux_ratio(
        sci, ref, var, var, np.zeros(shape, dtype=bool), psf_n / psf_n.sum(),
        psf_r / psf_r.sum(), rho * 1.01, sources=sources, origin=(0, 0), target=(256.0, 256.0),
        fwhm=fwhm_n, gain=1e6, window=512,
    )
    assert refined is not None
    ratio, ln_err, _ = refined
    assert ln_err < 5e-4  # precise enough for the bound below to test the bias
    assert abs(ratio / rho - 1.0) < 1e-3
