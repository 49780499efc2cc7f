"""Accuracy and speed of the engine on simulated frames with known truth.

Writes ``benchmarks/results.md`` (the table the README links) and ``benchmarks/results.json``.
Run with ``make bench`` (or ``python benchmarks/run.py --help``). Numbers in the table are
measured by this script on the machine that ran it; never edit them by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from skyphot import __version__
from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig
from skyphot.testing import SimulationParams, simulate_frame

HERE = Path(__file__).resolve().parent


@dataclass
class FrameRow:
    seed: int
    depth: str
    truth_mag: float
    mag: float | None
    magerr: float | None
    detected: bool
    snr: float
    flux_pull: float
    limiting_mag: float
    ideal_limit: float
    zp_error: float
    zp_err: float
    astrometry_rms: float
    n_calib: int
    wall_s: float
    timings: dict[str, float]


def run_frame(
    seed: int, depth: str, target_mag: float, shape: tuple[int, int], workdir: Path
) -> FrameRow:
    params = SimulationParams(
        shape=shape, n_stars=int(3000 * shape[0] * shape[1] / 2048**2), target_mag=target_mag
    )
    sim = simulate_frame(params, seed=seed)
    paths = sim.write(workdir, stem=f"{depth}_{seed}")
    truth = sim.truth
    config = MeasureConfig.model_validate(
        {
            "target": {"ra": truth.ra, "dec": truth.dec},
            "catalog": {"path": str(paths.catalog)},
            "target_color": truth.color,
        }
    )
    t0 = time.perf_counter()
    result = measure(paths.image, config)
    wall = time.perf_counter() - t0
    return FrameRow(
        seed=seed,
        depth=depth,
        truth_mag=truth.mag,
        mag=result.mag,
        magerr=result.magerr,
        detected=result.detected,
        snr=result.snr,
        flux_pull=(result.flux - 10 ** (-0.4 * (truth.mag - 23.9))) / result.fluxerr,
        limiting_mag=result.limiting_mag,
        ideal_limit=truth.ideal_limit(result.limit_nsigma),
        zp_error=result.zero_point - truth.zero_point_at_target,
        zp_err=result.zero_point_err,
        astrometry_rms=result.astrometry_rms_arcsec,
        n_calib=result.n_calib,
        wall_s=wall,
        timings=dict(result.timings),
    )


def summarise(rows: list[FrameRow]) -> dict[str, object]:
    detected = [r for r in rows if r.detected and r.mag is not None and r.magerr is not None]
    pulls = [(r.mag - r.truth_mag) / r.magerr for r in detected]  # type: ignore[operator]
    diffs = [r.mag - r.truth_mag for r in detected]  # type: ignore[operator]
    errs = [r.magerr for r in detected]
    limit_offsets = [r.limiting_mag - r.ideal_limit for r in rows]
    flux_pulls = [r.flux_pull for r in rows]
    abs_pulls = sorted(abs(p) for p in pulls)
    zp_pulls = [r.zp_error / r.zp_err for r in rows if r.zp_err > 0]
    stages = sorted({k for r in rows for k in r.timings})
    return {
        "frames": len(rows),
        "detected": len(detected),
        "bias_mag": statistics.fmean(diffs) if diffs else float("nan"),
        "bias_stderr": (statistics.stdev(diffs) / len(diffs) ** 0.5)
        if len(diffs) > 1
        else float("nan"),
        "median_magerr": statistics.median(errs) if errs else float("nan"),
        "pull_mean": statistics.fmean(pulls) if pulls else float("nan"),
        "pull_std": statistics.stdev(pulls) if len(pulls) > 1 else float("nan"),
        "abs_pull_median": statistics.median(abs_pulls) if abs_pulls else float("nan"),
        "abs_pull_p95": abs_pulls[int(0.95 * (len(abs_pulls) - 1))] if abs_pulls else float("nan"),
        "flux_pull_mean": statistics.fmean(flux_pulls),
        "flux_pull_std": statistics.stdev(flux_pulls) if len(flux_pulls) > 1 else float("nan"),
        "limit_offset_mean": statistics.fmean(limit_offsets),
        "limit_offset_min": min(limit_offsets),
        "limit_offset_max": max(limit_offsets),
        "zp_pull_std": statistics.stdev(zp_pulls) if len(zp_pulls) > 1 else float("nan"),
        "astrometry_rms_median": statistics.median(r.astrometry_rms for r in rows),
        "n_calib_median": statistics.median(r.n_calib for r in rows),
        "wall_median_s": statistics.median(r.wall_s for r in rows),
        "wall_max_s": max(r.wall_s for r in rows),
        "stage_median_s": {
            s: statistics.median(r.timings.get(s, 0.0) for r in rows) for s in stages
        },
    }


def markdown(summary: dict[str, dict[str, object]], meta: dict[str, object]) -> str:
    out = [
        "# Benchmark results",
        "",
        f"Measured by `benchmarks/run.py` on {meta['date']} ({meta['machine']}), skyphot "
        f"{meta['version']}, frames {meta['shape'][1]}x{meta['shape'][0]} px, "  # type: ignore[index]
        f"{meta['frames']} seeds per depth. Do not edit by hand: re-run `make bench`.",
        "",
        "Targets (issue 2): bias within 1σ+0.01 mag; pull std 0.8–1.25; 5σ limit within 0.15 mag "
        "of the ideal PSF-fit limit; whole pipeline ≤ 1.0 s per 2048x2048 frame.",
        "",
        "Pulls are (mag − truth)/magerr over the detected targets (for honest Gaussian errors "
        "the median |pull| is 0.67 and its 95th percentile 1.96). The flux pull "
        "(flux − truth)/fluxerr uses every frame, detected or not, so it is free of the "
        "selection bias of faint detections. ZP pulls compare with the simulator's zero point, "
        "which for PSF photometry differs by a common flux-scale factor that cancels in the "
        "target's magnitude.",
        "",
        "| depth | frames | detected | bias [mag] | ±stderr | median σ | pull mean | pull std "
        "| median / p95 of abs(pull) | flux pull mean / std "
        '| limit − ideal: mean [min, max] | ZP pull std | astrom. rms ["] | N calib | wall median / max [s] |',
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for depth, s in summary.items():
        out.append(
            f"| {depth} | {s['frames']} | {s['detected']} | {s['bias_mag']:+.4f} | {s['bias_stderr']:.4f} "
            f"| {s['median_magerr']:.4f} | {s['pull_mean']:+.2f} | {s['pull_std']:.2f} "
            f"| {s['abs_pull_median']:.2f} / {s['abs_pull_p95']:.2f} "
            f"| {s['flux_pull_mean']:+.2f} / {s['flux_pull_std']:.2f} "
            f"| {s['limit_offset_mean']:+.3f} [{s['limit_offset_min']:+.3f}, {s['limit_offset_max']:+.3f}] "
            f"| {s['zp_pull_std']:.2f} | {s['astrometry_rms_median']:.3f} | {s['n_calib_median']:.0f} "
            f"| {s['wall_median_s']:.3f} / {s['wall_max_s']:.3f} |"
        )
    out += [
        "",
        "## Seconds per stage (median over all frames)",
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    all_stages: dict[str, list[float]] = {}
    for s in summary.values():
        for k, v in s["stage_median_s"].items():  # type: ignore[attr-defined]
            all_stages.setdefault(k, []).append(v)
    for k, v in sorted(all_stages.items(), key=lambda kv: -statistics.median(kv[1])):
        out.append(f"| {k} | {statistics.median(v):.4f} |")
    out += [
        "",
        "For comparison, the issue quotes the reference recipe of the system this replaces "
        "(STDPipe with SExtractor/SCAMP/PSFEx) at 3–4.5 s per such frame, with limits ~0.35 mag "
        "shallower than ideal and the colour term ignored for the target; it is not re-run here.",
        "",
    ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=20, help="seeds per depth")
    parser.add_argument("--shape", type=int, nargs=2, default=(2048, 2048), metavar=("NY", "NX"))
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    shape = (args.shape[0], args.shape[1])
    depths = {
        "bright (18)": 18.0,
        "medium (20)": 20.0,
        "faint (21.0)": 21.0,
        "below limit (24.5)": 24.5,
    }
    rows: dict[str, list[FrameRow]] = {d: [] for d in depths}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        run_frame(999, "warmup", 19.0, shape, workdir)  # imports and caches out of the timings
        for k, (depth, mag) in enumerate(depths.items()):
            # Distinct seeds per depth: the same seed would repeat the noise at the target.
            for seed in range(1000 * k, 1000 * k + args.frames):
                row = run_frame(seed, depth, mag, shape, workdir)
                rows[depth].append(row)
                print(
                    f"{depth:20s} seed {seed:3d}: mag {row.mag} truth {row.truth_mag:.3f} "
                    f"limit-ideal {row.limiting_mag - row.ideal_limit:+.3f} {row.wall_s:.3f} s",
                    flush=True,
                )
                for p in workdir.iterdir():
                    p.unlink()
    summary = {d: summarise(r) for d, r in rows.items()}
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{__import__('os').cpu_count()} cores",
        "version": __version__,
        "shape": list(shape),
        "frames": args.frames,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "summary": summary,
                "rows": {d: [asdict(r) for r in rr] for d, rr in rows.items()},
            },
            indent=1,
            default=lambda o: float(o) if isinstance(o, np.floating) else str(o),
        )
    )
    (args.out / "results.md").write_text(markdown(summary, meta))
    print(markdown(summary, meta))


if __name__ == "__main__":
    main()
