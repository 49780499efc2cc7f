"""Load benchmark: a real `skyphot serve` on loopback under concurrent uploads.

Starts the server in a subprocess (fresh data directory, 2 analysis workers, the real engine;
and again with the Celery queue and a `skyphot worker` when SKYPHOT_TEST_REDIS_URL is set, on
a fresh PostgreSQL database when SKYPHOT_TEST_POSTGRES_URL is set too), simulates small
frames with their reference catalogs (every ``--bad-every``-th without a WCS: it must fail
with a reason), then a second process uploads them, at most ``--concurrency`` at a time,
while this process samples page and API latency and watches the light curve. Reports jobs per
minute, time from upload start to the point on the light curve, page latency during the load,
and checks that every job ended succeeded or failed-with-reason, none was lost and no point
was duplicated.

    .venv/bin/python benchmarks/load.py                 # writes benchmarks/load.md
    .venv/bin/python benchmarks/load.py --uploads 8 --out /tmp/load.md

The numbers in load.md are measured by this script; never edit them by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MAX_UPLOADS = 500
TERMINAL = ("succeeded", "failed")


# --- frames -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    image: str
    catalog: str
    color: float
    bad: bool  # simulated without a WCS: must fail with a reason


def make_frames(directory: Path, count: int, *, shape: tuple[int, int],
                bad_every: int) -> tuple[list[Frame], tuple[float, float]]:
    """Simulated frames of one target (same pixel position, so the same sky position), and
    the target's (ra, dec) in degrees."""
    from skyphot.testing import SimulationParams, simulate_frame

    frames = []
    target = (0.0, 0.0)
    for i in range(count):
        bad = bad_every > 0 and i % bad_every == bad_every - 1
        params = SimulationParams(shape=shape, target_mag=17.0 + 0.5 * ((i % 7) / 6),
                                  target_xy=(shape[1] / 2, shape[0] / 2), include_wcs=not bad,
                                  date_obs=f"2024-03-{1 + i // 24:02d}T{i % 24:02d}:00:00.000")
        sim = simulate_frame(params, seed=1000 + i)
        paths = sim.write(directory, stem=f"frame{i:03d}")
        assert sim.truth is not None
        target = (float(sim.truth.ra), float(sim.truth.dec))
        frames.append(Frame(str(paths.image), str(paths.catalog), float(sim.truth.color), bad))
    return frames, target


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    token: str
    password: str
    queue: str
    processes: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def start_server(data_dir: Path, *, workers: int, redis_url: str | None,
                 database_url: str | None = None, timeout: float = 90.0) -> Server:
    """`skyphot serve` (and a `skyphot worker` for Celery) on a free loopback port."""
    import httpx

    data_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"workers": workers, "job_poll_interval": 0.2}
    if database_url:
        config["database_url"] = database_url
    if redis_url:
        config |= {"queue": "celery", "broker_url": redis_url,
                   "celery_queue": f"load-{os.getpid()}", "worker_concurrency": workers}
    (data_dir / "config.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n"
                                                  for k, v in config.items()))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPHOT_")}
    log = data_dir / "serve.log"
    commands = [[sys.executable, "-m", "skyphot.cli", "serve", "--port", str(port),
                 "--data-dir", str(data_dir)]]
    logs = [log]
    if redis_url:
        commands.append([sys.executable, "-m", "skyphot.cli", "worker",
                         "--data-dir", str(data_dir)])
        logs.append(data_dir / "worker.log")
    processes = []
    for command, path in zip(commands, logs, strict=True):
        with path.open("wb") as out:
            processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                              env=env))
    server = Server(f"http://127.0.0.1:{port}", "", "", "celery" if redis_url else "embedded",
                    processes, logs)
    deadline = time.monotonic() + timeout
    try:
        while True:
            text = log.read_text(errors="replace")
            token = re.search(r"API token: (\S+)", text)
            password = re.search(r"log in as: admin / (\S+)", text)
            if token and password:
                server.token, server.password = token.group(1), password.group(1)
                try:
                    if httpx.get(server.url + "/login", timeout=5).status_code == 200:
                        return server
                except httpx.TransportError:
                    pass
            if processes[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"skyphot serve did not start; its output:\n{text[-3000:]}")
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise


# --- the second process: uploads ---------------------------------------------------------------


def submit(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Upload every frame of the manifest, ``concurrency`` at a time (runs in its own process)."""
    from skyphot.client.api import ApiClient, FilePart, MultipartBody, ServerError

    client = ApiClient(manifest["url"], manifest["token"], timeout=60)
    path = client.path("sources", manifest["source"], "image_analysis")
    deadline = time.monotonic() + manifest["max_seconds"]

    def one(frame: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"file": Path(frame["image"]).name, "started": time.time()}
        if time.monotonic() > deadline:
            return row | {"error": "not sent: the time bound passed"}
        body = MultipartBody({"target_color": f"{frame['color']:.4f}"},
                             [FilePart("file", Path(frame["image"])),
                              FilePart("catalog_file", Path(frame["catalog"]))])
        try:
            reply = client.upload(path, body)
        except ServerError as err:
            return row | {"error": str(err)}
        row |= {"accepted": time.time(), "status": reply.status}
        if reply.status == 202:
            row["job_id"] = reply.body["job_id"]
        else:
            row["error"] = reply.message
        return row

    with ThreadPoolExecutor(max_workers=manifest["concurrency"]) as pool:
        return list(pool.map(one, manifest["frames"]))


# --- this process: sampling and bookkeeping ---------------------------------------------------


@dataclass
class Sample:
    kind: str
    at: float  # Unix s
    seconds: float
    status: int


@dataclass
class Sampler:
    """Page and API latency, and when each job's point first appears on the light curve."""

    url: str
    token: str
    password: str
    source: str
    samples: list[Sample] = field(default_factory=list)
    point_seen: dict[int, float] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        import httpx

        page = httpx.Client(base_url=self.url, timeout=30)
        api = httpx.Client(base_url=self.url, timeout=30,
                           headers={"Authorization": f"token {self.token}"})
        page.post("/login", data={"username": "admin", "password": self.password})
        try:
            while not self.stop.is_set():
                targets = [("page", page, f"/source/{self.source}"),
                           ("api photometry", api, f"/api/sources/{self.source}/photometry"),
                           ("api jobs", api, f"/api/sources/{self.source}/jobs")]
                for kind, client, path in targets:
                    start = time.perf_counter()
                    try:
                        response = client.get(path)
                    except httpx.HTTPError as err:
                        self.errors.append(f"{kind}: {err}")
                        continue
                    self.samples.append(Sample(kind, time.time(), time.perf_counter() - start,
                                               response.status_code))
                    if kind == "api photometry" and response.status_code == 200:
                        now = time.time()
                        self.points = response.json()
                        for point in self.points:
                            if point.get("job_id") is not None:
                                self.point_seen.setdefault(point["job_id"], now)
                self.stop.wait(0.1)
        finally:
            page.close()
            api.close()


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0-1) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _utc(text: str | None) -> float | None:
    if not text:
        return None
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


@dataclass
class LoadResult:
    """Everything measured, and the verdict."""

    params: dict[str, Any]
    uploads: list[dict[str, Any]]
    jobs: dict[int, dict[str, Any]]
    points: list[dict[str, Any]]
    point_seen: dict[int, float]
    samples: list[Sample]
    idle_samples: list[Sample]
    sampler_errors: list[str]
    wall_s: float

    @property
    def accepted(self) -> list[dict[str, Any]]:
        return [u for u in self.uploads if "job_id" in u]

    def jobs_in(self, state: str) -> list[dict[str, Any]]:
        return [j for j in self.jobs.values() if j.get("state") == state]

    @property
    def lost(self) -> list[int]:
        """Accepted jobs that never ended."""
        return [u["job_id"] for u in self.accepted
                if self.jobs.get(u["job_id"], {}).get("state") not in TERMINAL]

    @property
    def failed_without_reason(self) -> list[int]:
        return [j["id"] for j in self.jobs_in("failed") if not (j.get("message") or "").strip()]

    @property
    def point_problems(self) -> list[str]:
        """Succeeded jobs without exactly one point, points of no succeeded job."""
        succeeded = {j["id"] for j in self.jobs_in("succeeded")}
        per_job: dict[int, int] = {}
        for point in self.points:
            per_job[point.get("job_id")] = per_job.get(point.get("job_id"), 0) + 1
        problems = [f"job {j} has {per_job.get(j, 0)} points" for j in sorted(succeeded)
                    if per_job.get(j, 0) != 1]
        problems += [f"point of job {j} whose job did not succeed" for j in per_job
                     if j not in succeeded]
        return problems

    @property
    def ok(self) -> bool:
        return (not self.lost and not self.failed_without_reason and not self.point_problems
                and len(self.accepted) == len(self.uploads))

    def latency_to_point(self) -> list[float]:
        started = {u["job_id"]: u["started"] for u in self.accepted}
        return [self.point_seen[j] - started[j] for j in started if j in self.point_seen]

    def throughput_per_min(self) -> float:
        created = [_utc(j.get("created_at")) for j in self.jobs.values()]
        finished = [_utc(j.get("finished_at")) for j in self.jobs.values()
                    if j.get("state") in TERMINAL]
        begin = min((c for c in created if c is not None), default=None)
        end = max((f for f in finished if f is not None), default=None)
        if begin is None or end is None or end <= begin:
            return float("nan")
        return 60.0 * len(finished) / (end - begin)

    def service_times(self) -> list[float]:
        out = []
        for job in self.jobs.values():
            start, end = _utc(job.get("started_at")), _utc(job.get("finished_at"))
            if start is not None and end is not None:
                out.append(end - start)
        return out

    def load_window(self) -> tuple[float, float]:
        begin = min(u["started"] for u in self.uploads)
        ends = list(self.point_seen.values()) + [
            t for j in self.jobs.values() if (t := _utc(j.get("finished_at"))) is not None]
        return begin, max(ends, default=begin)

    def loaded_samples(self, kind: str | None = None) -> list[float]:
        begin, end = self.load_window()
        return [s.seconds for s in self.samples
                if begin <= s.at <= end and (kind is None or s.kind == kind)]


def wait_for_jobs(url: str, token: str, job_ids: list[int], deadline: float) -> dict[int, dict]:
    """Poll every job until all ended or the deadline passed; their last known rows."""
    import httpx

    jobs: dict[int, dict[str, Any]] = {}
    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": f"token {token}"}) as client:
        while True:
            for job_id in job_ids:
                if jobs.get(job_id, {}).get("state") in TERMINAL:
                    continue
                response = client.get(f"/api/jobs/{job_id}")
                if response.status_code == 200:
                    jobs[job_id] = response.json()
            if all(jobs.get(j, {}).get("state") in TERMINAL for j in job_ids):
                return jobs
            if time.monotonic() > deadline:
                return jobs
            time.sleep(0.5)


@contextmanager
def fresh_database(admin_url: str | None) -> Iterator[str | None]:
    """A new empty PostgreSQL database on the server of ``admin_url`` (a role that may create
    databases), dropped afterwards; None (SQLite) without a URL."""
    if not admin_url:
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"skyphot_load_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def run_load(*, uploads: int = 40, concurrency: int = 4, workers: int = 2,
             shape: tuple[int, int] = (512, 512), bad_every: int = 10,
             max_seconds: float = 600.0, workdir: Path | None = None,
             redis_url: str | None = None, postgres_url: str | None = None) -> LoadResult:
    """Run the whole benchmark once (bounded by ``uploads`` and ``max_seconds``).

    ``redis_url``: use the Celery queue on that broker; ``postgres_url``: run on a fresh
    PostgreSQL database made through that (admin) URL instead of SQLite.
    """
    import httpx

    if not 1 <= uploads <= MAX_UPLOADS:
        raise ValueError(f"uploads must be between 1 and {MAX_UPLOADS}")
    started = time.monotonic()
    deadline = started + max_seconds
    own_dir = workdir is None
    base = Path(tempfile.mkdtemp(prefix="skyphot-load-")) if workdir is None else workdir
    stack = ExitStack()
    try:
        frames, (ra, dec) = make_frames(base / "frames", uploads, shape=shape,
                                        bad_every=bad_every)
        database = stack.enter_context(fresh_database(postgres_url))
        server = start_server(base / "data", workers=workers, redis_url=redis_url,
                              database_url=database)
        try:
            headers = {"Authorization": f"token {server.token}"}
            response = httpx.post(server.url + "/api/sources", headers=headers, timeout=30,
                                  json={"id": "load-target", "ra": ra, "dec": dec})
            response.raise_for_status()
            sampler = Sampler(server.url, server.token, server.password, "load-target")
            thread = threading.Thread(target=sampler.run, daemon=True)
            thread.start()
            time.sleep(2.0)  # idle latency first
            idle = list(sampler.samples)
            manifest = {"url": server.url, "token": server.token, "source": "load-target",
                        "concurrency": concurrency,
                        "max_seconds": max(1.0, deadline - time.monotonic()),
                        "frames": [f.__dict__ for f in frames]}
            manifest_path = base / "manifest.json"
            manifest_path.write_text(json.dumps(manifest))
            manifest_path.chmod(0o600)
            submitter = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "submit", str(manifest_path)],
                capture_output=True, text=True, timeout=max(5.0, deadline - time.monotonic()))
            if submitter.returncode != 0:
                raise RuntimeError(f"the submitting process failed:\n{submitter.stderr[-3000:]}")
            rows: list[dict[str, Any]] = json.loads(submitter.stdout)
            job_ids = [r["job_id"] for r in rows if "job_id" in r]
            jobs = wait_for_jobs(server.url, server.token, job_ids, deadline)
            time.sleep(0.5)  # one more look at the light curve after the last job
            sampler.stop.set()
            thread.join(30)
            final = httpx.get(f"{server.url}/api/sources/load-target/photometry",
                              headers=headers, timeout=30).json()
        finally:
            server.stop()
    finally:
        stack.close()
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)
    params = {"uploads": uploads, "concurrency": concurrency, "workers": workers,
              "shape": list(shape), "bad_every": bad_every, "max_seconds": max_seconds,
              "queue": server.queue, "database": "PostgreSQL" if postgres_url else "SQLite"}
    return LoadResult(params, rows, jobs, final, sampler.point_seen,
                      sampler.samples, idle, sampler.errors, time.monotonic() - started)


# --- report -----------------------------------------------------------------------------------


def _fmt(values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    if not values:
        return "–"
    p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
    return (f"{p50 * scale:.2f} / {p95 * scale:.2f} / {max(values) * scale:.2f} {unit} "
            f"(n={len(values)})")


def header() -> list[str]:
    """The top of load.md."""
    return [
        "# Load benchmark",
        "",
        "Measured by `benchmarks/load.py` on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC ({platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}); do not edit by hand: "
        "re-run the script (`.venv/bin/python benchmarks/load.py`; with "
        "SKYPHOT_TEST_REDIS_URL and SKYPHOT_TEST_POSTGRES_URL set it also runs on Celery and "
        "PostgreSQL).",
        "",
        "Upload → point is measured from the start of the upload to the first time the point "
        "is seen on the light curve by the sampling loop (every ~0.1 s plus its requests); "
        "throughput is jobs ended per minute between the first job's creation and the last "
        "job's end (server clock). A burst of uploads queues up, so upload → point grows with "
        "a job's place in the queue; the analysis time per job is the worker's own time.",
        "",
    ]


def render(result: LoadResult) -> str:
    """The Markdown section of one run."""
    p = result.params
    failed = result.jobs_in("failed")
    reasons: dict[str, int] = {}
    for job in failed:
        reason = (job.get("message") or "").strip()
        reasons[reason] = reasons.get(reason, 0) + 1
    accepted = result.accepted
    upload_times = [u["accepted"] - u["started"] for u in accepted]
    bad = sum(1 for i in range(p["uploads"]) if p["bad_every"] and
              i % p["bad_every"] == p["bad_every"] - 1)
    queue = (f"Celery queue, one `skyphot worker` running {p['workers']} jobs at a time"
             if p["queue"] == "celery" else f"embedded queue, {p['workers']} worker processes")
    lines = [
        f"## {p['queue'].capitalize()} queue, {p['database']}",
        "",
        f"A real `skyphot serve` on loopback (fresh data directory, {p['database']}, {queue}, "
        f"the real engine). A second process uploads {p['uploads']} simulated "
        f"{p['shape'][1]}x{p['shape'][0]} frames, each with its reference catalog, at most "
        f"{p['concurrency']} at a time; {bad} of them {'has' if bad == 1 else 'have'} no WCS "
        "and must fail with a reason. "
        "Meanwhile this process loads the source page (logged in), the light curve "
        "(`GET /api/sources/{id}/photometry`) and its jobs (`GET /api/sources/{id}/jobs`) in "
        "a loop, "
        "which also tells when each point appears on the light curve.",
        "",
        "| measured | value |",
        "| --- | --- |",
        f"| uploads accepted | {len(accepted)} / {len(result.uploads)} |",
        f"| jobs succeeded | {len(result.jobs_in('succeeded'))} |",
        f"| jobs failed with a reason | {len(failed) - len(result.failed_without_reason)} |",
        f"| jobs failed without a reason | {len(result.failed_without_reason)} |",
        f"| jobs lost (never ended) | {len(result.lost)} |",
        f"| points on the light curve | {len(result.points)} "
        f"({'one per succeeded job' if not result.point_problems else '; '.join(result.point_problems)}) |",
        f"| throughput | {result.throughput_per_min():.1f} jobs/min |",
        "| upload start → point on the light curve, p50 / p95 / max | "
        f"{_fmt(result.latency_to_point())} |",
        f"| analysis time per job (worker), p50 / p95 / max | {_fmt(result.service_times())} |",
        f"| upload request (202 answer), p50 / p95 / max | {_fmt(upload_times)} |",
        "| page latency during the load, p50 / p95 / max | "
        f"{_fmt(result.loaded_samples('page'), 'ms', 1000)} |",
        "| API latency during the load, p50 / p95 / max | "
        f"{_fmt(result.loaded_samples('api photometry') + result.loaded_samples('api jobs'), 'ms', 1000)} |",
        "| page latency idle (before the load), p50 / p95 / max | "
        f"{_fmt([s.seconds for s in result.idle_samples if s.kind == 'page'], 'ms', 1000)} |",
        f"| wall time of the run (frames, server start, load) | {result.wall_s:.1f} s |",
        f"| verdict | {'every job ended, none lost, no duplicate' if result.ok else 'FAILED'} |",
        "",
    ]
    errors = [s for s in result.samples if s.status >= 400]
    if errors or result.sampler_errors:
        lines += [f"Sampling errors: {len(errors)} HTTP errors, "
                  f"{len(result.sampler_errors)} transport errors.", ""]
    if reasons:
        lines += ["Failure reasons:", ""]
        lines += [f"- {count} × {reason}" for reason, count in sorted(reasons.items())]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["submit"]:
        manifest = json.loads(Path(args_list[1]).read_text())
        print(json.dumps(submit(manifest)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=100, help=f"frames (1-{MAX_UPLOADS})")
    parser.add_argument("--concurrency", type=int, default=4, help="uploads in flight")
    parser.add_argument("--workers", type=int, default=2, help="analysis workers")
    parser.add_argument("--size", type=int, default=512, help="frame side, px")
    parser.add_argument("--bad-every", type=int, default=10,
                        help="every n-th frame has no WCS (0: none)")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="bound on the run")
    parser.add_argument("--out", type=Path, default=HERE / "load.md", help="report file")
    args = parser.parse_args(args_list)
    setups: list[tuple[str | None, str | None]] = [(None, None)]
    if os.environ.get("SKYPHOT_TEST_REDIS_URL"):
        setups.append((os.environ["SKYPHOT_TEST_REDIS_URL"],
                       os.environ.get("SKYPHOT_TEST_POSTGRES_URL")))
    sections, ok = [], True
    for redis_url, postgres_url in setups:
        result = run_load(uploads=args.uploads, concurrency=args.concurrency,
                          workers=args.workers, shape=(args.size, args.size),
                          bad_every=args.bad_every, max_seconds=args.max_seconds,
                          redis_url=redis_url, postgres_url=postgres_url)
        sections.append(render(result))
        ok = ok and result.ok
    report = "\n".join(header()) + "\n" + "\n".join(sections)
    args.out.write_text(report)
    print(report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
