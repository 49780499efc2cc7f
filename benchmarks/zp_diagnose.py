"""Where does the zero point's error against the simulator's truth come from?

Per simulated frame, the zero point at the target is a weighted linear fit of the
calibration stars' ``t_i = cat_i - inst_i``, so ``ZP - truth = sum_i h_i (t_i - zp_true_i)``
with the fit's hat weights ``h_i`` (they sum to 1). Each star's term splits exactly into

* ``cat``: the catalog's own noise, ``cat_i - true_i``;
* ``psf``: the PSF-fit flux against the truth once on the true total-flux scale,
  ``-2.5 log10(F_psf k_true / F_true)`` (photon noise, neighbours, centring);
* ``apcorr``: the fitted aperture correction against its truth for the frame's fitted PSF
  model and the simulator's true PSF, ``-2.5 log10(k_fit / k_true)``;

* ``color``: the colour term times the catalog colours' noise;

(ZP - truth = cat - psf - apcorr - color). ``k_true`` at a position is computed without noise: the
true unit PSF, fitted by the pipeline's template (fitted model less its annulus mean) after
the true PSF's own annulus mean is removed, exactly as the pipeline measures a lone star.

Writes one JSON line per frame and prints the means and pulls of each part. Frames are
small by default (fast); the effect is per star, so it reproduces on them.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from skyphot.core.photometry import encircled_energy, ring_level
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.recipe import recipe_for
from skyphot.pipeline.report import build_result
from skyphot.pipeline.runner import run_stages
from skyphot.pipeline.state import FrameState, need
from skyphot.testing import SimulationParams, simulate_frame
from skyphot.testing.psf import MoffatField

sys.path.insert(0, str(Path(__file__).resolve().parent))
# run.py beside this script defines the benchmark's own wide case
from run import wide_case

MAG = 2.5 / math.log(10.0)


def true_apcorr(
    model: object, truth: MoffatField, x: np.ndarray, y: np.ndarray, tx: np.ndarray,
    ty: np.ndarray, radius: float, annulus: tuple[float, float],
) -> np.ndarray:
    """k_true = F_true / F_psf for noiseless lone stars at true (tx, ty) measured at (x, y)."""
    size = 2 * int(np.ceil(radius + 0.5)) + 1
    stamps, x0, y0 = model.render_many(x, y, size)  # type: ignore[attr-defined]
    ring_fit = ring_level(model, x, y, annulus)  # type: ignore[arg-type]
    ring_true = ring_level(truth, tx, ty, annulus)
    out = np.empty(x.size)
    offs = np.arange(size)
    for i in range(x.size):
        true_stamp = _true_stamp(truth, float(tx[i]), float(ty[i]), int(x0[i]), int(y0[i]), size)
        dx = x0[i] + offs - x[i]
        dy = y0[i] + offs - y[i]
        inside = dy[:, None] ** 2 + dx[None, :] ** 2 <= radius**2
        p = np.where(inside, stamps[i] - ring_fit[i], 0.0)
        d = np.where(inside, true_stamp - ring_true[i], 0.0)
        out[i] = float(np.sum(p * p) / np.sum(p * d))
    return out


def _true_stamp(truth: MoffatField, tx: float, ty: float, x0: int, y0: int,
                size: int) -> np.ndarray:
    big = size + 8
    stamp, sx0, sy0 = truth.render(tx, ty, big)
    return stamp[y0 - sy0 : y0 - sy0 + size, x0 - sx0 : x0 - sx0 + size]


def analyse(seed: int, params: SimulationParams, workdir: Path) -> dict[str, float]:
    sim = simulate_frame(params, seed=seed)
    paths = sim.write(workdir, stem=f"f{seed}")
    truth = sim.truth
    config = MeasureConfig.model_validate({
        "target": {"ra": truth.ra, "dec": truth.dec},
        "catalog": {"path": str(paths.catalog)},
        "target_color": truth.color,
    })
    outcome = run_stages(recipe_for(config), FrameState(image_path=str(paths.image),
                                                        config=config))
    state = outcome.state
    result = build_result(state, outcome.timings)
    stars = need(state.calib_stars, "stars")
    fit = need(state.zero_point, "zp")
    apc = need(state.aperture_correction, "apcorr")
    psf = need(state.psf, "psf")
    fwhm = need(state.fwhm, "fwhm")
    phot_cfg = config.photometry
    radius = phot_cfg.psf_radius_fwhm * fwhm
    annulus = (phot_cfg.annulus_fwhm[0] * fwhm, phot_cfg.annulus_fwhm[1] * fwhm)

    # truth of each calibration star: nearest true star in the catalog
    st = sim.stars[np.asarray(sim.stars["in_catalog"])]
    tree = cKDTree(np.column_stack([st["x"], st["y"]]))
    dist, j = tree.query(np.column_stack([stars.x, stars.y]))
    true_mag = np.asarray(st[params.bands[1]])[j]
    true_x, true_y = np.asarray(st["x"])[j], np.asarray(st["y"])[j]
    col = np.asarray(st["color"])[j]
    col_cat = stars.color if stars.color is not None else col
    f_true = sim.photometry.flux_adu(true_mag, col, true_x, true_y)
    zp_true = sim.photometry.zero_point_at(true_x, true_y, col)

    k_true = true_apcorr(psf, sim.psf, stars.x, stars.y, true_x, true_y, radius, annulus)
    k_fit = apc.factor_at(stars.x, stars.y)
    flux_total = 10 ** (-0.4 * stars.inst_mag)  # F_psf * k_fit
    f_psf = flux_total / k_fit
    d_cat = stars.cat_mag - true_mag
    d_psf = -2.5 * np.log10(f_psf * k_true / f_true)
    d_ap = -2.5 * np.log10(k_fit / k_true)
    # the colour term applied to the catalog's noisy colours
    d_col = params.color_term * (col_cat - col)

    # hat weights of the final fit at the target
    used = fit.used
    var = np.maximum(stars.inst_err**2 + stars.cat_err**2, 1e-8)[used]
    w = 1.0 / (fit.error_scale * var + fit.intrinsic_scatter**2)
    color = stars.color if stars.color is not None else np.zeros(stars.x.size)
    rows = np.array([fit._row(float(a), float(b), float(c))
                     for a, b, c in zip(stars.x[used], stars.y[used], color[used], strict=True)])
    row_t = fit._row(truth.x, truth.y, truth.color)
    h = (row_t @ fit.covariance @ rows.T) * w
    t = stars.cat_mag[used] - stars.inst_mag[used] - zp_true[used] - d_col[used]
    zp_fit_err = float(fit.predict(truth.x, truth.y, truth.color)[0]
                       - truth.zero_point_at_target)

    # apcorr at the target against its truth
    kt_target = true_apcorr(psf, sim.psf, np.array([truth.x]), np.array([truth.y]),
                            np.array([truth.x]), np.array([truth.y]), radius, annulus)[0]
    kf_target = float(apc.factor_at(np.array([truth.x]), np.array([truth.y]))[0])
    # What the aperture correction extrapolates: the model's encircled energy in its
    # aperture (less its annulus wing term) against the true PSF's.
    r_ap = annulus[0]
    area = math.pi * r_ap**2
    txy = (np.array([truth.x]), np.array([truth.y]))
    ee_model = encircled_energy(psf, truth.x, truth.y, r_ap) - area * float(
        ring_level(psf, *txy, annulus)[0])
    ee_true = encircled_energy(sim.psf, truth.x, truth.y, r_ap) - area * float(
        ring_level(sim.psf, *txy, annulus)[0])
    return {
        "seed": seed,
        "zp_minus_truth": result.zero_point - truth.zero_point_at_target,
        "zero_point_err": result.zero_point_err,
        "zp_fit_err": float(fit.predict(truth.x, truth.y, truth.color)[1]),
        "apcorr_err_mag": apc.mag_err_at(truth.x, truth.y),
        "linear_check": float(h @ t) - zp_fit_err,
        "sum_h": float(h.sum()),
        "cat": float(h @ d_cat[used]),
        "psf": float(h @ d_psf[used]),
        "apcorr": float(h @ d_ap[used]),
        "color": float(h @ d_col[used]),
        "apcorr_target": -2.5 * math.log10(kf_target / kt_target),
        "apcorr_truth_mag_target": -2.5 * math.log10(kt_target),
        "wing_model_minus_true": -2.5 * math.log10(ee_true / ee_model),
        "beta": float(getattr(psf, "beta", math.nan)),
        "apcorr_n": apc.n_used,
        "apcorr_order": apc.order,
        "n_used": int(used.sum()),
        "n_clipped": int((~used).sum()),
        "scatter": fit.intrinsic_scatter,
        "error_scale": fit.error_scale,
        "apcorr_scatter": apc.scatter,
        "apcorr_error_scale": apc.error_scale,
        "color_term_err": float(fit.color_term - params.color_term) if fit.color_term else 0.0,
        "mean_d_psf_unweighted": float(np.mean(d_psf[used])),
        "median_d_psf": float(np.median(d_psf[used])),
        "match_dist_max": float(dist.max()),
        "target_x": truth.x, "target_y": truth.y,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--shape", type=int, nargs=2, default=(1024, 1024))
    parser.add_argument("--wide", action="store_true", help="25 %% PSF broadening to corners")
    parser.add_argument("--edge", action="store_true",
                        help="run.py's wide case exactly (uint16, target 60-100 px from an "
                        "edge; its seeds start at 4000); use with --shape 1536 2560")
    parser.add_argument("--out", type=Path, default=None, help="JSON lines file")
    args = parser.parse_args()
    ny, nx = args.shape
    fixed = SimulationParams(shape=(ny, nx), n_stars=int(3000 * ny * nx / 2048**2),
                             target_mag=20.0,
                             **({"fwhm_gradient": 0.25, "distortion": 3.0} if args.wide else {}))
    params_for = wide_case(20.0, (ny, nx)) if args.edge else (lambda seed: fixed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.frames):
            row = analyse(seed, params_for(seed), Path(tmp))
            rows.append(row)
            print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v)
                              for k, v in row.items()}), flush=True)
            if args.out is not None:
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
            for p in Path(tmp).iterdir():
                p.unlink()
    n = len(rows)
    for key in ("zp_minus_truth", "cat", "psf", "apcorr", "color", "apcorr_target"):
        vals = [r[key] for r in rows]
        print(f"{key:16s} mean {statistics.fmean(vals):+.5f} ± "
              f"{statistics.stdev(vals) / math.sqrt(n):.5f}  std {statistics.stdev(vals):.5f}")
    pulls = [r["zp_minus_truth"] / r["zero_point_err"] for r in rows]
    ap_pulls = [r["apcorr_target"] / r["apcorr_err_mag"] for r in rows]
    # the rest of ZP - truth (cat - psf - color and the apcorr's variation over the stars)
    # against the fit's own error
    fit_pulls = [(r["zp_minus_truth"] + r["apcorr_target"]) / r["zp_fit_err"] for r in rows]
    print(f"ZP pull mean {statistics.fmean(pulls):+.2f} std {statistics.stdev(pulls):.2f}; "
          f"apcorr pull mean {statistics.fmean(ap_pulls):+.2f} std {statistics.stdev(ap_pulls):.2f}; "
          f"fit pull mean {statistics.fmean(fit_pulls):+.2f} std {statistics.stdev(fit_pulls):.2f}")


if __name__ == "__main__":
    main()
