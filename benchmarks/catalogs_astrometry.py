"""Catalog cache and blind astrometry: how fast a repeat visit is, how often blind solving works.

Writes ``benchmarks/catalogs_astrometry.md`` and ``.json``. Everything runs on this machine:
the online catalog is the local VizieR stand-in (``skyphot.testing.vizier``), the fields
are simulated. Numbers are measured by this script; never edit them by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord

from skyphot import __version__
from skyphot.catalogs.cache import CatalogCache
from skyphot.catalogs.cached import CachedProvider
from skyphot.catalogs.vizier import PS1Provider
from skyphot.errors import StageError
from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig
from skyphot.testing import SimulationParams, simulate_frame
from skyphot.testing.vizier import serve_vizier, votable_document

HERE = Path(__file__).resolve().parent
PS1_FIELDS = [
    ("RAJ2000", "double", "deg"),
    ("DEJ2000", "double", "deg"),
    ("gmag", "float", "mag"),
    ("e_gmag", "float", "mag"),
    ("rmag", "float", "mag"),
    ("e_rmag", "float", "mag"),
]


def cache_rows(n_stars: int, repeats: int) -> list[dict[str, object]]:
    """Miss (fetch from the local service + store) and hit times of a 0.3 deg cone."""
    rng = np.random.default_rng(1)
    r = 0.5 * np.sqrt(rng.uniform(0, 1, n_stars))
    t = rng.uniform(0, 2 * np.pi, n_stars)
    rows = [
        [150 + a * np.cos(b), 2 + a * np.sin(b), 17.0, 0.01, 16.6, 0.01]
        for a, b in zip(r, t, strict=True)
    ]
    out = []
    with serve_vizier() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.body = votable_document("II/349/ps1", PS1_FIELDS, rows)
        misses, hits = [], []
        for k in range(repeats):
            cache = CatalogCache(Path(tmp) / f"c{k}")
            provider = CachedProvider(PS1Provider(server=fake.url, timeout=10, retries=1), cache)
            center = SkyCoord(150.0, 2.0, unit="deg")
            t0 = time.perf_counter()
            provider.query(center, 0.3, ("g", "r"))
            misses.append(time.perf_counter() - t0)
            before = fake.count
            t0 = time.perf_counter()
            provider.query(SkyCoord(150.05, 2.0, unit="deg"), 0.2, ("g", "r"))
            hits.append(time.perf_counter() - t0)
            assert fake.count == before, "a cache hit must not reach the service"
        out.append(
            {
                "stars in 0.5 deg": n_stars,
                "miss median s": statistics.median(misses),
                "hit median s": statistics.median(hits),
                "hit max s": max(hits),
            }
        )
    return out


def blind_rows(frames: int) -> list[dict[str, object]]:
    """Blind solving of simulated wide fields without WCS, and of a header WCS 4' off."""
    cases = {
        "no WCS, 1024x1024 @ 2.0\"/px (34')": dict(
            shape=(1024, 1024), pixel_scale=2.0, include_wcs=False
        ),
        "no WCS, 800x1200 @ 1.2\"/px (24'x16')": dict(
            shape=(800, 1200), pixel_scale=1.2, include_wcs=False
        ),
        'header WCS 240" off, 800x1200 @ 1.2"/px': dict(
            shape=(800, 1200), pixel_scale=1.2, wcs_offset_arcsec=240.0, target_xy=(600.0, 400.0)
        ),
    }
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, kwargs in cases.items():
            ok, times, totals, reasons = 0, [], [], []
            for seed in range(frames):
                params = SimulationParams(target_mag=18.0, n_stars=1500, **kwargs)  # type: ignore[arg-type]
                sim = simulate_frame(params, seed=seed)
                paths = sim.write(Path(tmp), stem=f"b{seed}")
                config = MeasureConfig.model_validate(
                    {
                        "target": {"ra": sim.truth.ra, "dec": sim.truth.dec},
                        "catalog": {"path": str(paths.catalog)},
                        "astrometry": {"pixel_scale_arcsec": params.pixel_scale},
                    }
                )
                try:
                    result = measure(paths.image, config)
                except StageError as err:
                    reasons.append(str(err)[:80])
                    continue
                good = (
                    result.astrometry_method == "astrometry.net"
                    and abs(result.x - sim.truth.x) < 0.5
                )
                ok += int(good)
                times.append(result.timings["astrometry"])
                totals.append(result.timings["total"])
            out.append(
                {
                    "case": label,
                    "frames": frames,
                    "solved": ok,
                    "astrometry median s": statistics.median(times) if times else float("nan"),
                    "astrometry max s": max(times) if times else float("nan"),
                    "whole frame median s": statistics.median(totals) if totals else float("nan"),
                    "failures": reasons,
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=10, help="simulated fields per case")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    measure(*_warmup())  # imports out of the timings
    cache = [row for n in (2000, 20000) for row in cache_rows(n, repeats=5)]
    blind = blind_rows(args.frames)
    lines = [
        "# Catalog cache and blind astrometry",
        "",
        f"Measured by `benchmarks/catalogs_astrometry.py` on {time.strftime('%Y-%m-%d')}, skyphot "
        f"{__version__}. The online catalog is the local VizieR stand-in on 127.0.0.1, so a miss "
        "here is the parsing and storing cost without the network's latency. Do not edit by hand.",
        "",
        "## Cache (a 0.3 deg cone: first visit vs repeat visit)",
        "",
        "| stars in the served 0.5 deg field | miss, median [s] | hit, median [s] | hit, max [s] |",
        "|---|---|---|---|",
    ]
    for r in cache:
        lines.append(
            f"| {r['stars in 0.5 deg']} | {r['miss median s']:.3f} | {r['hit median s']:.4f} | {r['hit max s']:.4f} |"
        )
    lines += [
        "",
        "## Blind solving (astrometry.net with index files built from the field's catalog)",
        "",
        "| case | frames | solved | astrometry stage, median / max [s] | whole measurement, median [s] |",
        "|---|---|---|---|---|",
    ]
    for r in blind:
        lines.append(
            f"| {r['case']} | {r['frames']} | {r['solved']} | {r['astrometry median s']:.2f} / {r['astrometry max s']:.2f} | {r['whole frame median s']:.2f} |"
        )
    lines.append("")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "catalogs_astrometry.md").write_text("\n".join(lines))
    (args.out / "catalogs_astrometry.json").write_text(
        json.dumps({"cache": cache, "blind": blind}, indent=1)
    )
    print("\n".join(lines))


def _warmup() -> tuple[Path, MeasureConfig]:
    tmp = Path(tempfile.mkdtemp())
    sim = simulate_frame(SimulationParams(shape=(400, 400), target_mag=18.0), seed=0)
    paths = sim.write(tmp)
    return paths.image, MeasureConfig.model_validate(
        {
            "target": {"ra": sim.truth.ra, "dec": sim.truth.dec},
            "catalog": {"path": str(paths.catalog)},
        }
    )


if __name__ == "__main__":
    main()
