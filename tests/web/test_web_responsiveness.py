"""While several analyses keep both worker processes busy, pages and the API still answer
quickly: the analysis never runs in the server process."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
from webtest_helpers import STUB_ENGINE, add_users, fits_bytes, live_server, make_settings

from skyphot.jobs.queue import EmbeddedQueue
from skyphot.web.app import create_app


def test_pages_answer_while_analyses_run(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, workers=2, worker_nice=5)
    app = create_app(settings, queue=EmbeddedQueue(settings, engine=STUB_ENGINE))
    _, alice, _ = add_users(app)
    with live_server(app) as url, httpx.Client(base_url=url, headers=alice) as client:
        client.post("/api/sources", json={"id": "s1", "ra": 1, "dec": 1})
        ids = [client.post("/api/sources/s1/image_analysis",
                           files={"file": (f"f{i}.fits", fits_bytes(busy=2.5, seed=i))}
                           ).json()["job_id"] for i in range(4)]
        page = httpx.Client(base_url=url)
        page.post("/login", data={"username": "alice", "password": "alice-pass"})
        latencies: list[float] = []
        busy_seen = False
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            for path, c in (("/source/s1", page), ("/api/sources/s1/photometry", client),
                            (f"/api/jobs/{ids[0]}", client)):
                start = time.perf_counter()
                r = c.get(path)
                latencies.append(time.perf_counter() - start)
                assert r.status_code == 200
            jobs = [client.get(f"/api/jobs/{i}").json()["state"] for i in ids]
            busy_seen = busy_seen or jobs.count("running") == 2
            time.sleep(0.05)
        page.close()
        assert busy_seen, "the workers never ran two jobs at once"
        latencies.sort()
        p50 = statistics.median(latencies)
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print(f"\nlatency under load: n={len(latencies)} p50={p50 * 1000:.1f} ms "
              f"p95={p95 * 1000:.1f} ms max={latencies[-1] * 1000:.1f} ms")
        assert p95 < 1.0
