"""``skyphot batch``: upload many frames of one source to a skyphot server, show progress,
wait for the analyses and summarise (text, or one JSON object with ``--json``).

Every file ends in one state: ``succeeded`` (its point is on the light curve), ``failed``
(the analysis ran and says why), ``rejected`` (refused before a job existed: by the
client's checks or by the server, with the reason), or, when not waiting, ``queued`` /
``running``.

Exit codes: 0 every file succeeded (``--no-wait``: every file was accepted); 1 at least one
file was rejected or its job failed; 2 bad command line (e.g. no token); 3 nothing to
upload (no FITS file matches, catalog file unreadable); 5 the server cannot be used
(unreachable, token refused, source unknown); 6 ``--timeout`` passed with jobs unfinished
and none failed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from skyphot.client.api import ApiClient, FilePart, MultipartBody, Reply, ServerError
from skyphot.client.files import check_file, find_fits_files
from skyphot.client.progress import Counts, Progress
from skyphot.errors import InputError

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_NOTHING_TO_DO = 3
EXIT_SERVER = 5
EXIT_TIMEOUT = 6
EXIT_INTERRUPTED = 130

DEFAULT_URL = "http://localhost:5000"
TERMINAL = ("succeeded", "failed", "rejected")
_LIMIT = re.compile(r"limit of ([0-9.]+) MB")


@dataclass
class BatchOptions:
    """What to upload where, and how (times in seconds)."""

    source: str
    token: str
    url: str = DEFAULT_URL
    filter: str | None = None
    catalog: str | None = None
    catalog_file: Path | None = None
    nsigma: float | None = None
    target_color: float | None = None
    wait: bool = True
    concurrency: int = 4  # uploads in flight at once
    timeout: float | None = None  # stop waiting this long after the start; None: never
    poll_interval: float = 1.0
    max_size_mb: float | None = None  # the server's max_body_size, when known
    push_skyportal: bool = False  # push each new point to SkyPortal and wait for its state

    def form_fields(self) -> dict[str, str]:
        """The upload form's fields (besides the files)."""
        values = {"filter": self.filter, "catalog": self.catalog, "nsigma": self.nsigma,
                  "target_color": self.target_color}
        return {k: (f"{v:g}" if isinstance(v, float) else str(v))
                for k, v in values.items() if v is not None}


@dataclass
class FileOutcome:
    """What became of one file. Times are Unix seconds."""

    file: str
    state: str = "pending"  # pending, rejected, queued, running, succeeded, failed
    stage: str | None = None  # where a rejection or failure happened: check, upload, analysis
    reason: str | None = None  # why it was rejected or failed
    job_id: int | None = None
    http_status: int | None = None
    message: str | None = None  # the job's one-line summary (or failure reason)
    photometry_id: int | None = None
    filter: str | None = None
    mag: float | None = None
    magerr: float | None = None
    limiting_mag: float | None = None
    limit_sigma: float | None = None
    skyportal_state: str | None = None  # off, pending, pushed or failed (with --push-skyportal)
    skyportal_id: int | None = None
    skyportal_error: str | None = None
    upload_started_at: float | None = None
    submitted_at: float | None = None  # the server answered 202
    finished_at: float | None = None  # the client saw the final state

    def reject(self, stage: str, reason: str, status: int | None = None) -> None:
        """Refused before a job existed."""
        self.state, self.stage, self.reason, self.http_status = "rejected", stage, reason, status
        self.finished_at = time.time()

    def result_text(self) -> str:
        """The result in words: magnitude, limit, or the reason."""
        if self.state == "succeeded":
            if self.mag is not None and self.magerr is not None:
                return f"{self.filter or '?'} = {self.mag:.3f} ± {self.magerr:.3f}"
            if self.limiting_mag is not None:
                return (f"{self.filter or '?'} > {self.limiting_mag:.2f} "
                        f"({self.limit_sigma or 0:g}σ limit)")
            return self.message or "succeeded"
        if self.state in ("rejected", "failed"):
            return self.reason or "(no reason given)"
        return self.message or ""


@dataclass
class BatchReport:
    """The outcome of a batch."""

    url: str
    source: str
    waited: bool
    files: list[FileOutcome] = field(default_factory=list)
    elapsed_s: float = 0.0
    timed_out: bool = False

    def counts(self) -> Counts:
        """Files by state."""
        states = [f.state for f in self.files]
        return Counts(
            total=len(states), uploaded=sum(f.job_id is not None for f in self.files),
            pending=states.count("pending"), queued=states.count("queued"),
            running=states.count("running"), succeeded=states.count("succeeded"),
            failed=states.count("failed"), rejected=states.count("rejected"),
        )

    @property
    def exit_code(self) -> int:
        """0 all good; 1 something rejected or failed (or a SkyPortal push failed or did not end
        in time); 6 timed out waiting."""
        counts = self.counts()
        if counts.failed or counts.rejected or counts.pending:
            return EXIT_SOME_FAILED
        if any(f.skyportal_state in ("failed", "pending") for f in self.files):
            return EXIT_SOME_FAILED  # --push-skyportal: a point did not reach SkyPortal
        if self.waited and (counts.queued or counts.running):
            return EXIT_TIMEOUT
        return EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        counts = asdict(self.counts())
        return {"url": self.url, "source": self.source, "ok": self.exit_code == EXIT_OK,
                "exit_code": self.exit_code, "waited": self.waited,
                "timed_out": self.timed_out, "elapsed_s": round(self.elapsed_s, 3),
                "counts": counts, "files": [asdict(f) for f in self.files]}

    def summary(self) -> str:
        """A table of the files and a line of totals."""
        width = min(60, max([len(f.file) for f in self.files] + [4]))
        lines = [f"{'file':<{width}}  {'job':>6}  {'state':<9}  result"]
        for f in self.files:
            job = str(f.job_id) if f.job_id is not None else "-"
            text = f.result_text()
            if f.skyportal_state is not None:
                text += (f"  [SkyPortal: {f.skyportal_state}"
                         + (f" id {f.skyportal_id}" if f.skyportal_id is not None else "")
                         + (f": {f.skyportal_error}" if f.skyportal_state == "failed"
                            and f.skyportal_error else "") + "]")
            lines.append(f"{f.file[-width:]:<{width}}  {job:>6}  {f.state:<9}  {text}")
        c = self.counts()
        tail = f"{c.total} files: {c.succeeded} succeeded, {c.failed} failed, {c.rejected} rejected"
        if c.queued or c.running:
            tail += f", {c.queued + c.running} unfinished"
        lines.append(tail + f" ({self.elapsed_s:.1f} s)")
        if self.timed_out:
            lines.append("stopped waiting (--timeout); the unfinished jobs still run on the server")
        return "\n".join(lines)


def _server_limit(client: ApiClient) -> int | None:
    """The server's upload limit in bytes from ``GET /api/info`` (None if it does not say,
    e.g. an older server: the first 413 then teaches it)."""
    reply = client.get("/api/info")
    if reply.ok and isinstance(reply.body, dict):
        size = reply.body.get("max_body_size")
        if isinstance(size, int | float) and size > 0:
            return int(size * 1e6)
    return None


class Batch:
    """One batch run: checks, uploads (at most ``concurrency`` at once), then waits."""

    def __init__(self, client: ApiClient, options: BatchOptions, files: Sequence[Path],
                 progress: Progress) -> None:
        self.client = client
        self.options = options
        self.progress = progress
        self.report = BatchReport(client.url, options.source, options.wait,
                                  [FileOutcome(str(p)) for p in files])
        self._lock = threading.Lock()
        self._max_bytes = (int(options.max_size_mb * 1e6)
                           if options.max_size_mb is not None else _server_limit(client))
        self._poll_cursor = 0
        self._poll_failures = 0

    # --- uploads (worker threads) -------------------------------------------------------------

    def _learn_limit(self, reply: Reply) -> None:
        match = _LIMIT.search(reply.message)
        if match is not None:
            with self._lock:
                self._max_bytes = int(float(match.group(1)) * 1e6)

    def _upload(self, file: str) -> FileOutcome:
        """Check and upload one file (in a worker thread); the outcome is a new object that
        the main thread adopts, so the progress counts only change there."""
        outcome = FileOutcome(file)
        path = Path(file)
        files = [FilePart("file", path)]
        if self.options.catalog_file is not None:
            files.append(FilePart("catalog_file", self.options.catalog_file))
        try:
            body = MultipartBody(self.options.form_fields(), files)
            size = path.stat().st_size
        except OSError as err:
            outcome.reject("check", f"cannot read the file ({err.strerror or err})")
            return outcome
        with self._lock:
            limit = self._max_bytes
        reason = check_file(path, max_bytes=limit, overhead=body.length - size)
        if reason is not None:
            outcome.reject("check", reason)
            return outcome
        outcome.upload_started_at = time.time()
        try:
            reply = self.client.upload(
                self.client.path("sources", self.options.source, "image_analysis"), body)
        except ServerError as err:
            outcome.reject("upload", str(err))
            return outcome
        if reply.status == 202 and isinstance(reply.body, dict) and "job_id" in reply.body:
            outcome.job_id = int(reply.body["job_id"])
            outcome.state = str(reply.body.get("state") or "queued")
            outcome.submitted_at = time.time()
            return outcome
        if reply.status == 413:
            self._learn_limit(reply)
        outcome.reject("upload", f"the server refused the upload (HTTP {reply.status}): "
                                 f"{reply.message}", reply.status)
        return outcome

    # --- waiting (main thread) --------------------------------------------------------------

    def _apply_job(self, outcome: FileOutcome, job: dict[str, Any]) -> None:
        state = str(job.get("state"))
        outcome.message = job.get("message")
        if state in ("succeeded", "failed"):
            outcome.state = state
            outcome.photometry_id = job.get("photometry_id")
            outcome.finished_at = time.time()
            if state == "failed":
                outcome.stage = "analysis"
                outcome.reason = outcome.message or "the job failed without a reason"
        elif state in ("queued", "running"):
            outcome.state = state

    def _poll(self, waiting: list[FileOutcome]) -> list[FileOutcome]:
        """Ask about a bounded share of the unfinished jobs; returns those that ended.

        Queues run jobs oldest first, so the oldest unfinished ones are asked about every
        round and two of the others in turn (a thousand-frame batch costs a few requests per
        round, not a thousand).
        """
        per_round = max(8, 2 * self.options.concurrency)
        chosen, rest = waiting[:per_round], waiting[per_round:]
        if rest:
            self._poll_cursor %= len(rest)
            chosen += rest[self._poll_cursor:self._poll_cursor + 2]
            self._poll_cursor += 2
        ended = []
        for outcome in chosen:
            try:
                reply = self.client.get(self.client.path("jobs", outcome.job_id or 0))
            except ServerError as err:
                self._poll_failures += 1
                if self._poll_failures in (1, 10, 100):
                    self.progress.note(f"waiting: {err} (retrying)")
                break
            self._poll_failures = 0
            if reply.ok and isinstance(reply.body, dict):
                self._apply_job(outcome, reply.body)
            elif reply.status == 404:
                outcome.state, outcome.stage = "failed", "analysis"
                outcome.reason = (f"the server no longer knows job {outcome.job_id} "
                                  f"({reply.message})")
                outcome.finished_at = time.time()
            if outcome.state in TERMINAL:
                ended.append(outcome)
        return ended

    def _event(self, outcome: FileOutcome) -> None:
        name = outcome.file
        if outcome.state == "rejected":
            text = f"rejected {name}: {outcome.reason}"
        elif outcome.state in ("succeeded", "failed"):
            text = f"{outcome.state} {name} (job {outcome.job_id}): {outcome.message or ''}"
        else:
            text = f"uploaded {name} -> job {outcome.job_id}"
        self.progress.event(text.rstrip(": "), self.report.counts(),
                            problem=outcome.state in ("rejected", "failed"))

    def _fill_results(self) -> None:
        """Magnitudes and limits of the succeeded files, from the light curve."""
        wanted = {o.photometry_id: o for o in self.report.files
                  if o.state == "succeeded" and o.photometry_id is not None}
        if not wanted:
            return
        reply = self.client.get(self.client.path("sources", self.options.source, "photometry"))
        if not (reply.ok and isinstance(reply.body, list)):
            self.progress.note(f"could not read the light curve: {reply.message}")
            return
        for point in reply.body:
            outcome = wanted.get(point.get("id"))
            if outcome is not None:
                for key in ("filter", "mag", "magerr", "limiting_mag", "limit_sigma"):
                    setattr(outcome, key, point.get(key))
                portal = point.get("skyportal") or {}
                outcome.skyportal_state = portal.get("state")
                outcome.skyportal_id = portal.get("id")
                outcome.skyportal_error = portal.get("error")

    def _push(self, deadline: float | None) -> None:
        """Ask the server to push every new point, then wait until each is pushed or
        failed (the server retries time-outs and 5xx with back-off)."""
        outcomes = [o for o in self.report.files
                    if o.state == "succeeded" and o.photometry_id is not None]
        for outcome in outcomes:
            reply = self.client.post_json(self.client.path("photometry",
                                                           outcome.photometry_id or 0, "push"))
            if not reply.ok:
                outcome.skyportal_state = "failed"
                outcome.skyportal_error = (f"the server refused the push (HTTP "
                                           f"{reply.status}): {reply.message}")
        waiting = [o for o in outcomes if o.skyportal_state != "failed"]
        while waiting:
            self._fill_results()
            waiting = [o for o in waiting if o.skyportal_state not in ("pushed", "failed")]
            if not waiting or (deadline is not None and time.monotonic() > deadline):
                break
            time.sleep(self.options.poll_interval)
        for outcome in outcomes:
            self.progress.note(f"SkyPortal: {outcome.file}: {outcome.skyportal_state}"
                               + (f" (id {outcome.skyportal_id})"
                                  if outcome.skyportal_id is not None else
                                  f" ({outcome.skyportal_error})" if outcome.skyportal_error
                                  else ""))

    def run(self) -> BatchReport:
        """Upload everything, wait when asked, and return the report."""
        started = time.monotonic()
        deadline = started + self.options.timeout if self.options.timeout is not None else None
        waiting: list[FileOutcome] = []
        executor = ThreadPoolExecutor(max_workers=self.options.concurrency,
                                      thread_name_prefix="skyphot-upload")
        uploads: dict[Future[FileOutcome], FileOutcome] = {
            executor.submit(self._upload, outcome.file): outcome
            for outcome in self.report.files}
        last_poll = 0.0
        try:
            while uploads or (self.options.wait and waiting):
                if uploads:
                    done, _ = wait(uploads, timeout=self.options.poll_interval,
                                   return_when=FIRST_COMPLETED)
                    for future in done:
                        outcome = uploads.pop(future)
                        # _upload reports problems in the outcome; only bugs raise here.
                        vars(outcome).update(vars(future.result()))
                        if outcome.job_id is not None:
                            waiting.append(outcome)
                        self._event(outcome)
                else:
                    time.sleep(max(0.0, last_poll + self.options.poll_interval - time.monotonic()))
                if self.options.wait and waiting and (
                        time.monotonic() - last_poll >= self.options.poll_interval or not uploads):
                    last_poll = time.monotonic()
                    for outcome in self._poll(waiting):
                        waiting.remove(outcome)
                        self._event(outcome)
                self.progress.update(self.report.counts())
                if deadline is not None and time.monotonic() > deadline and not uploads:
                    self.report.timed_out = bool(waiting) and self.options.wait
                    break
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        executor.shutdown(wait=True)
        self.progress.close()
        try:
            self._fill_results()
            if self.options.push_skyportal and self.options.wait:
                self._push(deadline)
        except ServerError as err:
            self.progress.note(f"could not read the light curve: {err}")
        self.report.elapsed_s = time.monotonic() - started
        return self.report


def preflight(client: ApiClient, source: str) -> None:
    """Check the server, the token and the source before uploading anything.

    Raises ``ServerError`` with what to do.
    """
    reply = client.get(client.path("sources", source))
    if reply.ok:
        return
    if reply.status == 401:
        raise ServerError(
            f"the server at {client.url} refused the API token (HTTP 401: {reply.message}); "
            "pass a valid --token or set SKYPHOT_TOKEN (`skyphot admin-token` on the server "
            "prints the admin's; users create theirs on their profile page)"
        )
    if reply.status in (403, 404):
        raise ServerError(
            f"source {source!r} does not exist on {client.url} or is not shared with your "
            f"groups (HTTP {reply.status}: {reply.message}); create it first "
            "(POST /api/sources) or ask its owner to share it"
        )
    raise ServerError(f"the server at {client.url} answered HTTP {reply.status} for source "
                      f"{source!r}: {reply.message}")


def run_batch(spec: str, options: BatchOptions, *, stderr: TextIO | None = None,
              tty: bool | None = None) -> BatchReport:
    """Find the files of ``spec``, check the server, upload and (optionally) wait.

    Raises ``InputError`` when there is nothing to upload and ``ServerError`` when the server
    cannot be used; per-file problems are in the report, never raised.
    """
    files = find_fits_files(spec)
    if options.catalog_file is not None and not options.catalog_file.is_file():
        raise InputError(f"catalog file {options.catalog_file} does not exist or is not a file")
    client = ApiClient(options.url, options.token)
    preflight(client, options.source)
    progress = Progress(stderr or sys.stderr, len(files), tty=tty)
    return Batch(client, options, files, progress).run()


def _options(args: argparse.Namespace) -> BatchOptions:
    return BatchOptions(
        source=args.source, token=args.token or "", url=args.url, filter=args.filter,
        catalog=args.catalog,
        catalog_file=Path(args.catalog_file) if args.catalog_file else None,
        nsigma=args.nsigma, target_color=args.target_color, wait=args.wait,
        concurrency=args.concurrency, timeout=args.timeout, poll_interval=args.poll_interval,
        max_size_mb=args.max_size, push_skyportal=args.push_skyportal,
    )


def run_command(args: argparse.Namespace) -> int:
    """The ``batch`` command: returns the exit status (see the module docstring)."""
    out: TextIO = sys.stdout

    def fail(code: int, message: str) -> int:
        print(f"skyphot batch: error: {message}", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "exit_code": code, "error": message}), file=out)
        return code

    if not args.token:
        return fail(EXIT_USAGE, "no API token: pass --token or set SKYPHOT_TOKEN "
                                "(`skyphot admin-token` on the server prints one)")
    try:
        report = run_batch(args.files, _options(args))
    except InputError as err:
        return fail(EXIT_NOTHING_TO_DO, str(err))
    except ServerError as err:
        return fail(EXIT_SERVER, str(err))
    except KeyboardInterrupt:
        return fail(EXIT_INTERRUPTED, "interrupted; jobs already uploaded keep running on "
                                      "the server")
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary(), file=out)
    return report.exit_code


def _positive_int(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("must be between 1 and 64")
    return value


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``batch`` to the CLI (sets ``handler`` and ``func`` to ``run_command``)."""
    p = subparsers.add_parser(
        "batch", help="upload many frames of a source to a skyphot server",
        description="Upload the FITS frames of a directory or glob to a skyphot server for "
        "analysis, show progress, wait for the jobs and summarise. Exit status: 0 every file "
        "succeeded; 1 some file was rejected or failed; 2 bad command line; 3 nothing to "
        "upload; 5 server unusable (unreachable, token refused, unknown source); 6 timed out.",
    )
    p.add_argument("files", metavar="DIR_OR_GLOB",
                   help="a directory (its .fits/.fit/.fts/.fits.fz/.fits.gz files), a quoted "
                   "glob ('night/**/*.fits') or one file")
    p.add_argument("--source", required=True, help="source id the frames belong to")
    p.add_argument("--url", default=os.environ.get("SKYPHOT_URL", DEFAULT_URL),
                   help=f"server URL (default $SKYPHOT_URL or {DEFAULT_URL})")
    p.add_argument("--token", default=os.environ.get("SKYPHOT_TOKEN"),
                   help="API token (default $SKYPHOT_TOKEN; prefer the variable: "
                   "arguments are visible to other users)")
    p.add_argument("--filter", default=None, help="filter of every frame (default: header)")
    catalog = p.add_mutually_exclusive_group()
    catalog.add_argument("--catalog", default=None, help="reference catalog name (default auto)")
    catalog.add_argument("--catalog-file", default=None,
                         help="reference catalog table (ECSV/CSV/FITS) sent with every frame")
    p.add_argument("--nsigma", type=float, choices=(3.0, 5.0), default=None,
                   help="detection threshold and limit sigma (3 or 5; default 5)")
    p.add_argument("--target-color", type=float, default=None,
                   help="colour of the target (c1-c2, mag) for the colour term")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait for the analyses to end (default) or stop after uploading")
    p.add_argument("--concurrency", type=_positive_int, default=4,
                   help="uploads in flight at once (1-64, default 4)")
    p.add_argument("--timeout", type=float, default=None,
                   help="stop waiting after this many seconds from the start (default: never)")
    p.add_argument("--poll-interval", type=float, default=1.0,
                   help="seconds between job-state checks (default 1)")
    p.add_argument("--max-size", type=float, default=None, metavar="MB",
                   help="the server's max_body_size, to refuse larger files before sending "
                   "(default: the server's, from GET /api/info)")
    p.add_argument("--push-skyportal", action="store_true",
                   help="push each new point to the server's SkyPortal and wait until it is "
                   "pushed or failed (the source must be imported from SkyPortal)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (per file: job id, state, result or reason)")
    p.set_defaults(handler=run_command, func=run_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m skyphot.client.batch``)."""
    parser = argparse.ArgumentParser(prog="skyphot")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["batch", *(sys.argv[1:] if argv is None else argv)])
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
