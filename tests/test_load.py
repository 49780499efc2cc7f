"""A small bounded load through `benchmarks/load.py`: a real `skyphot serve` (2 worker
processes, real engine) and 8 concurrent uploads from a second process. Nothing may be lost:
every job ends succeeded or failed with a reason, and each succeeded job has exactly one point
on the light curve. Latency is checked only loosely (shared 2-core machines)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

LOAD_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "load.py"


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("skyphot_load_benchmark", LOAD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bounded_load_loses_nothing(tmp_path: Path) -> None:
    bench = load_module()
    result = bench.run_load(uploads=8, concurrency=4, workers=2, shape=(384, 384), bad_every=4,
                            max_seconds=150, workdir=tmp_path,
                            redis_url=os.environ.get("SKYPHOT_TEST_REDIS_URL"))

    assert len(result.accepted) == 8, result.uploads
    assert result.lost == [], f"jobs never ended: {result.lost}"
    assert result.failed_without_reason == []
    assert result.point_problems == []
    assert result.ok
    by_file = {u["file"]: result.jobs[u["job_id"]] for u in result.accepted}
    for name, job in by_file.items():
        index = int(name.removeprefix("frame").removesuffix(".fits"))
        if index % 4 == 3:  # simulated without a WCS
            assert job["state"] == "failed" and "no usable celestial WCS" in job["message"], job
        else:
            assert job["state"] == "succeeded" or job["message"], job
    succeeded = result.jobs_in("succeeded")
    assert succeeded, "no frame was measured"
    assert len(result.latency_to_point()) == len(succeeded)
    latencies = result.latency_to_point()
    assert min(latencies) > 0 and max(latencies) < 150
    assert result.throughput_per_min() > 1.0
    page = result.loaded_samples("page")
    assert page and bench.percentile(page, 0.95) < 2.0, "pages stalled under the load"

    report = bench.render(result)
    assert "| jobs lost (never ended) | 0 |" in report
    assert "| verdict | every job ended, none lost, no duplicate |" in report
    assert "no usable celestial WCS" in report


def test_percentile_interpolates() -> None:
    bench = load_module()
    assert bench.percentile([3.0, 1.0, 2.0, 4.0], 0.5) == pytest.approx(2.5)
    assert bench.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)
    assert bench.percentile([7.0], 0.95) == 7.0
