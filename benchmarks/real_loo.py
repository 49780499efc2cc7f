"""Leave-one-out on real frames against Tycho-2 VT: scatter versus the reported errors.

Writes ``benchmarks/real_loo.md``. Each Tycho-2 star on the frame is measured as the target
with itself removed from the calibration catalog. Needs ``../shared/data/real`` and, for the
wide field, the Debian package astrometry-data-tycho2-08 (its index file is decoded offline).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

from astropy.table import Table

from skyphot import __version__
from skyphot.testing.leave_one_out import LeftOut, leave_one_out, stars_on_frame
from skyphot.testing.tycho_index import DEFAULT_INDEX, tycho2_cone

HERE = Path(__file__).resolve().parent
REAL = HERE.parent.parent / "shared" / "data" / "real"
TYCHO_VT_ERR = 0.05


def _summary(name: str, rows: list[LeftOut]) -> list[str]:
    done = [r for r in rows if r.mag is not None and r.magerr is not None]
    diffs = [r.mag - r.cat_mag for r in done]  # type: ignore[operator]
    pulls = [r.pull for r in done]
    errs = [math.hypot(r.magerr, r.cat_err) for r in done]  # type: ignore[arg-type]
    mad = 1.4826 * statistics.median(abs(d - statistics.median(diffs)) for d in diffs)
    out = [
        f"## {name}",
        "",
        f"{len(rows)} Tycho-2 stars on the frame, {len(done)} measured. Mean difference "
        f"{statistics.fmean(diffs):+.3f} mag, rms {math.sqrt(statistics.fmean(d * d for d in diffs)):.3f} "
        f"mag, robust (MAD) scatter {mad:.3f} mag; median combined error sqrt(magerr² + "
        f"{TYCHO_VT_ERR}²) {statistics.median(errs):.3f} mag. Pull std "
        f"{statistics.stdev(pulls):.2f}, median |pull| {statistics.median(abs(p) for p in pulls):.2f} "
        f"(0.67 for honest Gaussian errors), {sum(abs(p) < 1 for p in pulls)} of {len(pulls)} "
        f"within 1σ, {sum(abs(p) < 2 for p in pulls)} within 2σ.",
        "",
        "| RA | Dec | x | y | VT | mag | magerr | pull | flags |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mag = "—" if r.mag is None else f"{r.mag:.3f}"
        err = "—" if r.magerr is None else f"{r.magerr:.3f}"
        out.append(
            f"| {r.ra:.5f} | {r.dec:.5f} | {r.x:.1f} | {r.y:.1f} | {r.cat_mag:.3f} | {mag} "
            f"| {err} | {r.pull:+.2f} | {', '.join(r.flags)} |"
        )
    return [*out, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--real", type=Path, default=REAL, help="real-data directory")
    parser.add_argument("--out", type=Path, default=HERE / "real_loo.md")
    args = parser.parse_args()
    lines = [
        "# Leave-one-out on real frames",
        "",
        f"Measured by `benchmarks/real_loo.py` on {time.strftime('%Y-%m-%d')}, skyphot "
        f"{__version__}. Tycho-2 VT errors are taken as {TYCHO_VT_ERR} mag (the files carry "
        "none). magerr includes the calibration's intrinsic scatter, which on these frames "
        "(a non-linear 1951 plate; a simulator's rendering of real star positions) is "
        "0.3-0.7 mag. Do not edit by hand.",
        "",
    ]
    m67 = Table.read(args.real / "m67_tycho2_vt.ecsv")
    plate = args.real / "M6707HH.fits"
    rows = leave_one_out(
        plate, m67, "VT", rows=stars_on_frame(plate, m67, margin_px=20), cat_err=TYCHO_VT_ERR,
        settings={"calibration": {"band": "VT"}, "header": {"mjd": 33000.0, "exptime": 3000}},
    )
    lines += _summary("M67 plate (M6707HH.fits) against m67_tycho2_vt.ecsv", rows)
    if DEFAULT_INDEX.is_file():
        wide = args.real / "stellarsolver_randomsky_SIMULATED.fits"
        cat = tycho2_cone(DEFAULT_INDEX, 21.643, 69.2522, 0.8)
        rows = leave_one_out(
            wide, cat, "VT", rows=stars_on_frame(wide, cat, margin_px=20),
            cat_err=TYCHO_VT_ERR, settings={"calibration": {"band": "VT"}},
        )
        lines += _summary(
            "Wide field (stellarsolver_randomsky_SIMULATED.fits, 57'x46') against Tycho-2 "
            f"decoded from {DEFAULT_INDEX.name}", rows,
        )
        lines += [
            "Note: this frame is from a CCD simulator that renders real catalog stars; it is "
            "the only wide frame here whose field the installed Tycho-2 index covers.",
            "",
        ]
    else:
        lines += [f"Wide field skipped: {DEFAULT_INDEX} is not installed.", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
