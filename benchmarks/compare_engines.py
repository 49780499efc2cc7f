"""The built-in engine and the STDPipe engine side by side, on the same simulated frames.

Every frame is simulated once and measured by both engines (``engine: skyphot`` and
``engine: stdpipe``) with the same configuration and the target's true colour. Writes
``benchmarks/engines.md``: per engine and depth the bias against the truth, the pull
distribution, the 5-sigma limit against the ideal PSF-fit limit, failures and seconds per
frame. Needs the ``stdpipe`` extra and the Debian ``source-extractor`` and ``psfex`` tools.

    .venv/bin/python benchmarks/compare_engines.py --frames 8

Numbers in the table are measured by this script on the machine that ran it; never edit
them by hand.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from skyphot import __version__
from skyphot.errors import SkyphotError
from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig
from skyphot.testing import SimulatedPaths, SimulationParams, Truth, simulate_frame

HERE = Path(__file__).resolve().parent
ENGINES = ("skyphot", "stdpipe")
DEPTHS = {"bright (18)": 18.0, "medium (20)": 20.0, "faint (21.5)": 21.5}
# Field-star density of the main benchmark (benchmarks/run.py): 3000 per 2048x2048 frame.
STARS_PER_PIXEL = 3000 / 2048**2


@dataclass
class Row:
    engine: str
    seed: int
    truth_mag: float
    ideal_limit: float
    wall_s: float
    mag: float | None = None
    magerr: float | None = None
    limiting_mag: float | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def simulate(
    seed: int, mag: float, shape: tuple[int, int], workdir: Path
) -> tuple[SimulatedPaths, Truth]:
    params = SimulationParams(
        shape=shape,
        n_stars=max(50, round(STARS_PER_PIXEL * shape[0] * shape[1])),
        target_mag=mag,
    )
    sim = simulate_frame(params, seed=seed)
    if sim.truth is None:
        raise RuntimeError("the simulation has no target; set target_mag")
    return sim.write(workdir, stem=f"f{seed}"), sim.truth


def run_engine(engine: str, seed: int, paths: SimulatedPaths, truth: Truth) -> Row:
    config = MeasureConfig.model_validate(
        {
            "engine": engine,
            "target": {"ra": truth.ra, "dec": truth.dec},
            "catalog": {"path": str(paths.catalog)},
            "target_color": truth.color,
        }
    )
    row = Row(
        engine=engine,
        seed=seed,
        truth_mag=truth.mag,
        wall_s=float("nan"),
        ideal_limit=truth.ideal_limit(config.nsigma),
    )
    t0 = time.perf_counter()
    try:
        result = measure(paths.image, config)
    except SkyphotError as err:  # a failed frame is a result of the benchmark, not a crash
        row.wall_s = time.perf_counter() - t0
        row.error = str(err)
        return row
    row.wall_s = time.perf_counter() - t0
    row.mag, row.magerr = result.mag, result.magerr
    row.limiting_mag = result.limiting_mag
    row.timings = dict(result.timings)
    return row


def _fmt(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "–"


def summarise(rows: list[Row]) -> dict[str, float]:
    ok = [r for r in rows if r.error is None]
    det = [r for r in ok if r.mag is not None and r.magerr is not None]
    diffs = [r.mag - r.truth_mag for r in det if r.mag is not None]
    pulls = [
        (r.mag - r.truth_mag) / r.magerr for r in det if r.mag is not None and r.magerr is not None
    ]
    limits = [r.limiting_mag - r.ideal_limit for r in ok if r.limiting_mag is not None]
    nan = float("nan")
    return {
        "frames": len(rows),
        "failed": len(rows) - len(ok),
        "detected": len(det),
        "bias": statistics.fmean(diffs) if diffs else nan,
        "bias_stderr": statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else nan,
        "median_err": statistics.median(r.magerr for r in det if r.magerr) if det else nan,
        "pull_mean": statistics.fmean(pulls) if pulls else nan,
        "pull_std": statistics.stdev(pulls) if len(pulls) > 1 else nan,
        "limit_mean": statistics.fmean(limits) if limits else nan,
        "limit_min": min(limits) if limits else nan,
        "limit_max": max(limits) if limits else nan,
        "wall_median": statistics.median(r.wall_s for r in ok) if ok else nan,
    }


def markdown(
    summary: dict[tuple[str, str], dict[str, float]],
    timing: list[Row],
    failures: list[Row],
    meta: dict[str, str],
) -> str:
    out = [
        "# Built-in engine vs STDPipe engine",
        "",
        f"Measured by `benchmarks/compare_engines.py` on {meta['date']} ({meta['machine']}), "
        f"skyphot {meta['version']}, STDPipe {meta['stdpipe']}, frames {meta['shape']} px, "
        f"{meta['frames']} seeds per depth; both engines measure the same files with the "
        "target's true colour. Do not edit by hand: re-run the script.",
        "",
        "bias = mean(measured − true mag) over detections; pull = (measured − true) / magerr; "
        "limit − ideal = 5σ limiting magnitude minus the ideal PSF-fit limit of the simulated "
        "frame (positive: deeper than ideal); seconds = median wall time of `measure()` per "
        "frame (imports excluded).",
        "",
        "| engine | depth | frames | failed | detected | bias [mag] | ±stderr | median σ "
        "| pull mean | pull std | limit − ideal: mean [min, max] | s/frame |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (engine, depth), s in summary.items():
        out.append(
            f"| {engine} | {depth} | {s['frames']:.0f} | {s['failed']:.0f} | {s['detected']:.0f} "
            f"| {_fmt(s['bias'], '+.4f')} | {_fmt(s['bias_stderr'], '.4f')} "
            f"| {_fmt(s['median_err'], '.4f')} | {_fmt(s['pull_mean'], '+.2f')} "
            f"| {_fmt(s['pull_std'], '.2f')} | {_fmt(s['limit_mean'], '+.3f')} "
            f"[{_fmt(s['limit_min'], '+.3f')}, {_fmt(s['limit_max'], '+.3f')}] "
            f"| {_fmt(s['wall_median'], '.2f')} |"
        )
    stages: list[str] = []
    for r in timing:
        stages += [k for k in r.timings if k != "total" and k not in stages]
    out += [
        "",
        f"## Seconds per stage on a {meta['timing_shape']} frame (median of "
        f"{meta['timing_runs']} runs)",
        "",
        "| stage | " + " | ".join(ENGINES) + " |",
        "|---|" + "---|" * len(ENGINES),
    ]
    for stage in [*stages, "total"]:
        cells = []
        for engine in ENGINES:
            values = [r.timings[stage] for r in timing if r.engine == engine and stage in r.timings]
            cells.append(_fmt(statistics.median(values), ".3f") if values else "–")
        out.append(f"| {stage} | " + " | ".join(cells) + " |")
    if failures:
        out += ["", "## Failed frames", ""]
        out += [f"- {r.engine}, seed {r.seed}, target {r.truth_mag:g}: {r.error}" for r in failures]
    out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=8, help="seeds per depth")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=2,
        default=(1024, 1024),
        metavar=("NY", "NX"),
        help="frame size of the accuracy runs",
    )
    parser.add_argument(
        "--timing-shape",
        type=int,
        nargs=2,
        default=(2048, 2048),
        metavar=("NY", "NX"),
        help="frame size of the per-stage timing",
    )
    parser.add_argument("--timing-runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "engines.md")
    args = parser.parse_args()
    shape = (args.shape[0], args.shape[1])
    timing_shape = (args.timing_shape[0], args.timing_shape[1])
    rows: dict[tuple[str, str], list[Row]] = {(e, d): [] for d in DEPTHS for e in ENGINES}
    timing: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="skyphot-engines-") as tmp:
        workdir = Path(tmp)
        paths, truth = simulate(999, 19.0, shape, workdir)
        for engine in ENGINES:  # imports (STDPipe takes seconds) and caches, not timed
            run_engine(engine, 999, paths, truth)
        for depth, mag in DEPTHS.items():
            for seed in range(args.frames):
                paths, truth = simulate(seed, mag, shape, workdir)
                for engine in ENGINES:
                    row = run_engine(engine, seed, paths, truth)
                    rows[(engine, depth)].append(row)
                    print(
                        f"{engine:8s} {depth:14s} seed {seed:3d}: mag {row.mag} "
                        f"truth {row.truth_mag:.2f} err {row.magerr} {row.wall_s:.2f} s"
                        + (f" FAILED: {row.error}" if row.error else ""),
                        flush=True,
                    )
        for run in range(args.timing_runs):
            paths, truth = simulate(500 + run, 19.0, timing_shape, workdir)
            for engine in ENGINES:
                row = run_engine(engine, 500 + run, paths, truth)
                timing.append(row)
                print(f"timing {engine:8s} {timing_shape}: {row.wall_s:.2f} s", flush=True)
    from importlib.metadata import version

    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "version": __version__,
        "stdpipe": version("stdpipe"),
        "shape": f"{shape[1]}x{shape[0]}",
        "timing_shape": f"{timing_shape[1]}x{timing_shape[0]}",
        "timing_runs": str(args.timing_runs),
        "frames": str(args.frames),
    }
    summary = {key: summarise(r) for key, r in rows.items()}
    failures = [r for rr in rows.values() for r in rr if r.error] + [r for r in timing if r.error]
    text = markdown(summary, timing, failures, meta)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
