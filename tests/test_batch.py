"""`skyphot batch` against a real server (uvicorn on loopback, two worker processes).

Frames carrying STUBMAG are measured by the web tests' stub engine (the answer is the header
keyword); a simulated frame without it goes to the real engine, so one upload of the batch is
measured for real and compared with the simulation's truth.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.io import fits

# The web tests' helpers, and this module itself for the spawned workers (its engine below).
sys.path.insert(0, str(Path(__file__).resolve().parent / "web"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from webtest_helpers import (
    add_users,
    drop_test_databases,
    fits_bytes,
    free_port,
    live_server,
    make_settings,
)

from skyphot.client.batch import BatchOptions, main, run_batch
from skyphot.client.files import check_file, find_fits_files
from skyphot.jobs.queue import EmbeddedQueue
from skyphot.pipeline.result import PhotometryResult
from skyphot.web.app import create_app

MAX_BODY_MB = 1.0  # the server's max_body_size in these tests
TARGET_XY = (128.0, 128.0)


def measure_dispatch(image: str | Path, config: Any, **kwargs: Any) -> PhotometryResult:
    """The worker's engine: the stub for frames with STUBMAG, the real engine otherwise."""
    if "STUBMAG" in fits.getheader(image):
        from stub_engine import measure as stub
        return stub(image, config, **kwargs)
    from skyphot.pipeline.api import measure
    return measure(image, config, **kwargs)


@dataclass
class Server:
    url: str
    token: str
    headers: dict[str, str]
    new_source: Callable[[float, float], str]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = make_settings(tmp_path_factory.mktemp("batch"), workers=2,
                             max_body_size=MAX_BODY_MB)
    app = create_app(settings, queue=EmbeddedQueue(settings,
                                                   engine="test_batch:measure_dispatch"))
    _, alice, _ = add_users(app)
    with live_server(app) as url, httpx.Client(base_url=url, headers=alice) as client:
        count = [0]

        def new_source(ra: float = 150.1, dec: float = 2.2) -> str:
            count[0] += 1
            name = f"src{count[0]}"
            r = client.post("/api/sources", json={"id": name, "ra": ra, "dec": dec})
            assert r.status_code == 201, r.text
            return name

        yield Server(url, alice["Authorization"].split()[1], alice, new_source)
    drop_test_databases()  # with SKYPHOT_TEST_POSTGRES_URL the instance had its own database


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def base_args(server: Server, source: str, spec: Path | str, *extra: str) -> list[str]:
    return [str(spec), "--source", source, "--url", server.url, "--token", server.token,
            "--poll-interval", "0.1", "--timeout", "120", *extra]


def write_stub(path: Path, **kwargs: Any) -> Path:
    path.write_bytes(fits_bytes(**kwargs))
    return path


# --- the mixed batch ---------------------------------------------------------------------------


def test_mixed_batch_rejects_every_bad_file_and_measures_every_good_one(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skyphot.testing import SimulationParams, simulate_frame

    sim = simulate_frame(SimulationParams(shape=(256, 256), target_mag=17.0,
                                          target_xy=TARGET_XY), seed=4)
    truth = sim.truth
    assert truth is not None
    source = server.new_source(truth.ra, truth.dec)
    frames = tmp_path / "night"
    frames.mkdir()
    paths = sim.write(tmp_path / "sim", stem="real")
    Path(paths.image).rename(frames / "real.fits")
    stub_mags = {"good1.fits": 17.25, "good2.fit": 18.5, "good3.fits.gz": 19.75}
    for i, (name, mag) in enumerate(stub_mags.items()):
        data = fits_bytes(mag=mag, seed=i)
        (frames / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    write_stub(frames / "limit.fits", mag=-1.0, seed=7)  # a non-detection: an upper limit
    write_stub(frames / "calfail.fits", fail=True, seed=8)
    (frames / "notes.fits").write_text("observing log, not an image\n")
    (frames / "empty.fits").write_bytes(b"")
    whole = fits_bytes(seed=9, shape=(100, 100))
    (frames / "truncated.fits").write_bytes(whole[:6000])
    scrambled = bytearray(whole)
    scrambled[80:400] = np.random.default_rng(1).integers(0, 256, 320, dtype=np.uint8).tobytes()
    (frames / "corrupt.fits").write_bytes(bytes(scrambled))
    (frames / "cut.fits.gz").write_bytes(gzip.compress(whole)[:-200])
    header_only = io.BytesIO()
    fits.PrimaryHDU(header=fits.Header([("DATE-OBS", "2024-03-01T02:00:00")])).writeto(
        header_only)
    (frames / "noimage.fits").write_bytes(header_only.getvalue())
    write_stub(frames / "huge.fits", seed=10, shape=(700, 700))  # 1.96 MB > 1 MB
    (frames / "readme.txt").write_text("not picked up: not a FITS name\n")

    code, out, err = run_main(base_args(
        server, source, frames, "--catalog-file", str(paths.catalog), "--target-color",
        f"{truth.color}", "--concurrency", "3", "--json",
        # A wrong client-side limit: the server's own 413 must still reject the huge file.
        "--max-size", "100"), capsys)
    report = json.loads(out)
    by_name = {Path(f["file"]).name: f for f in report["files"]}
    assert code == 1 and report["exit_code"] == 1 and not report["ok"]
    assert "readme.txt" not in by_name and len(by_name) == 13

    rejected = {
        "notes.fits": ("check", "not a FITS file: it does not start with 'SIMPLE  ='"),
        "empty.fits": ("check", "the file is empty (0 bytes)"),
        "truncated.fits": ("check", "the file is truncated: HDU 0 declares 40000 bytes of data "
                                    "but only 3120 are present"),
        "corrupt.fits": ("check", "the FITS header is malformed: HDU 0 has no valid integer "
                                  "BITPIX (missing)"),
        "cut.fits.gz": ("check", "the gzip stream is damaged"),
        "huge.fits": ("upload", "the server refused the upload (HTTP 413): the upload is larger "
                                "than the limit of 1 MB (max_body_size)"),
        # the server checks the header as it receives the file: no job for a file no
        # setting can make usable (issue 10, item 5)
        "noimage.fits": ("upload", "no image data in any HDU"),
    }
    for name, (stage, reason) in rejected.items():
        outcome = by_name[name]
        assert (outcome["state"], outcome["stage"], outcome["job_id"]) == ("rejected", stage,
                                                                          None), outcome
        assert reason in outcome["reason"], outcome
    assert by_name["huge.fits"]["http_status"] == 413
    assert by_name["noimage.fits"]["http_status"] == 400
    failed = {"calfail.fits": "only 2 reference stars matched (5 needed)"}
    for name, reason in failed.items():
        outcome = by_name[name]
        assert (outcome["state"], outcome["stage"]) == ("failed", "analysis"), outcome
        assert reason in outcome["reason"] and outcome["job_id"] is not None

    for name, mag in stub_mags.items():
        outcome = by_name[name]
        assert outcome["state"] == "succeeded", outcome
        assert outcome["mag"] == pytest.approx(mag, abs=1e-9) and outcome["magerr"] > 0
    limit = by_name["limit.fits"]
    assert limit["state"] == "succeeded" and limit["mag"] is None
    assert limit["limiting_mag"] == pytest.approx(21.5) and limit["limit_sigma"] == 5
    real = by_name["real.fits"]
    assert real["state"] == "succeeded", real
    assert abs(real["mag"] - truth.mag) < 4 * real["magerr"] + 0.01, (real, truth.mag)

    counts = report["counts"]
    assert (counts["succeeded"], counts["failed"], counts["rejected"]) == (5, 1, 7)
    points = httpx.get(f"{server.url}/api/sources/{source}/photometry",
                       headers=server.headers).json()
    succeeded_jobs = {f["job_id"] for f in report["files"] if f["state"] == "succeeded"}
    assert sorted(p["job_id"] for p in points) == sorted(succeeded_jobs)
    jobs = httpx.get(f"{server.url}/api/sources/{source}/jobs", headers=server.headers).json()
    assert len(jobs) == 6  # nothing rejected became a job

    # Progress: one line per event when stderr is not a terminal.
    assert "] rejected " in err and "notes.fits: not a FITS file" in err
    assert "] succeeded " in err and "] failed " in err and "[13/13]" in err
    assert err.count("uploaded ") == 6


# --- outcomes and output -----------------------------------------------------------------------


def test_all_good_glob_exits_zero_with_a_text_summary(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = server.new_source(150.1, 2.2)
    (tmp_path / "a").mkdir()
    write_stub(tmp_path / "a" / "f1.fits", mag=16.5, seed=1)
    write_stub(tmp_path / "a" / "f2.fts", mag=16.75, seed=2)
    write_stub(tmp_path / "other.fits", mag=15.0, seed=3)
    code, out, _ = run_main(base_args(server, source, str(tmp_path / "a" / "*")), capsys)
    assert code == 0, out
    assert "2 files: 2 succeeded, 0 failed, 0 rejected" in out
    assert "r = 16.500 ± 0.021" in out and "r = 16.750 ± 0.021" in out
    assert "other.fits" not in out


def test_progress_bar_on_a_terminal(server: Server, tmp_path: Path) -> None:
    source = server.new_source(150.1, 2.2)
    # More jobs than one polling round asks about (8 + 2 in turn): every one is still seen.
    for i in range(11):
        write_stub(tmp_path / f"f{i:02d}.fits", mag=17 + i / 10, seed=i)
    (tmp_path / "bad.fits").write_text("nope")
    stream = io.StringIO()
    report = run_batch(str(tmp_path), BatchOptions(source=source, token=server.token,
                                                   url=server.url, poll_interval=0.1,
                                                   concurrency=1),
                       stderr=stream, tty=True)
    text = stream.getvalue()
    assert report.exit_code == 1
    assert [f.mag for f in report.files[1:]] == pytest.approx([17 + i / 10 for i in range(11)])
    assert "\r[" in text and "] 12/12 done | 11 uploaded | 11 ok | 1 rejected" in text
    assert "rejected " in text and "bad.fits: not a FITS file" in text
    assert text.endswith("\n")


def test_no_wait_returns_after_the_uploads(server: Server, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    source = server.new_source(150.1, 2.2)
    write_stub(tmp_path / "f.fits", seed=1, busy=0.5)
    code, out, _ = run_main(base_args(server, source, tmp_path, "--no-wait", "--json"), capsys)
    report = json.loads(out)
    (outcome,) = report["files"]
    assert code == 0 and report["waited"] is False
    assert outcome["state"] in ("queued", "running") and outcome["job_id"] is not None


def test_timeout_leaves_jobs_unfinished_with_exit_6(server: Server, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    source = server.new_source(150.1, 2.2)
    write_stub(tmp_path / "slow.fits", seed=1, busy=1.5)
    code, out, _ = run_main(base_args(server, source, tmp_path, "--timeout", "0.3"), capsys)
    assert code == 6
    assert "1 unfinished" in out and "stopped waiting (--timeout)" in out


def test_limit_known_beforehand_rejects_without_uploading(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = server.new_source(150.1, 2.2)
    write_stub(tmp_path / "big.fits", seed=1, shape=(300, 300))  # 0.36 MB
    code, out, _ = run_main(base_args(server, source, tmp_path, "--max-size", "0.1", "--json"),
                            capsys)
    (outcome,) = json.loads(out)["files"]
    assert code == 1 and outcome["stage"] == "check"
    assert "is larger than the server's upload limit of 0.1 MB (max_body_size)" in outcome[
        "reason"]
    assert httpx.get(f"{server.url}/api/sources/{source}/jobs",
                     headers=server.headers).json() == []


def test_limit_from_the_server_info_rejects_without_uploading(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = server.new_source(150.1, 2.2)
    write_stub(tmp_path / "huge.fits", seed=10, shape=(700, 700))  # 1.96 MB > the 1 MB limit
    code, out, _ = run_main(base_args(server, source, tmp_path, "--json"), capsys)
    (outcome,) = json.loads(out)["files"]
    assert code == 1 and outcome["stage"] == "check"
    assert "is larger than the server's upload limit of 1 MB (max_body_size)" in outcome["reason"]
    assert httpx.get(f"{server.url}/api/sources/{source}/jobs",
                     headers=server.headers).json() == []


def test_server_validation_error_is_reported(server: Server, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    source = server.new_source(150.1, 2.2)
    write_stub(tmp_path / "f.fits", seed=1)
    catalog = tmp_path / "refs.xyz"
    catalog.write_text("ra,dec,r\n")
    code, out, _ = run_main(base_args(server, source, tmp_path / "f.fits", "--catalog-file",
                                      str(catalog), "--json"), capsys)
    (outcome,) = json.loads(out)["files"]
    assert code == 1 and outcome["http_status"] == 422
    assert outcome["reason"].startswith("the server refused the upload (HTTP 422): "
                                        "catalog_file: 'refs.xyz' has an unsupported type")


# --- whole-batch errors ------------------------------------------------------------------------


def test_refused_token(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = server.new_source(150.1, 2.2)
    write_stub(tmp_path / "f.fits", seed=1)
    args = base_args(server, source, tmp_path, "--json")
    args[args.index("--token") + 1] = "not-a-token"
    code, out, err = run_main(args, capsys)
    assert code == 5
    assert (f"skyphot batch: error: the server at {server.url} refused the API token "
            "(HTTP 401: the API token is not valid") in err
    assert "set SKYPHOT_TOKEN" in err
    assert json.loads(out) == {"ok": False, "exit_code": 5, "error": err.split("error: ", 1)[1]
                               .strip()}
    assert httpx.get(f"{server.url}/api/sources/{source}/jobs",
                     headers=server.headers).json() == []


def test_unknown_source(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_stub(tmp_path / "f.fits", seed=1)
    code, _, err = run_main(base_args(server, "no-such-source", tmp_path), capsys)
    assert code == 5
    assert "source 'no-such-source' does not exist on" in err and "HTTP 404" in err


def test_unreachable_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_stub(tmp_path / "f.fits", seed=1)
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run_main([str(tmp_path), "--source", "s", "--url", url, "--token", "t"],
                            capsys)
    assert code == 5
    assert f"cannot reach the skyphot server at {url} (Connection refused)" in err


def test_missing_token(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKYPHOT_TOKEN", raising=False)
    code, _, err = run_main([str(tmp_path), "--source", "s"], capsys)
    assert code == 2
    assert "skyphot batch: error: no API token: pass --token or set SKYPHOT_TOKEN" in err


def test_token_from_environment(server: Server, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    source = server.new_source(150.1, 2.2)
    write_stub(tmp_path / "f.fits", seed=1, mag=14.0)
    monkeypatch.setenv("SKYPHOT_TOKEN", server.token)
    monkeypatch.setenv("SKYPHOT_URL", server.url)
    code, out, _ = run_main([str(tmp_path), "--source", source, "--poll-interval", "0.1"],
                            capsys)
    assert code == 0 and "r = 14.000" in out


def test_nothing_to_upload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = run_main([str(tmp_path), "--source", "s", "--token", "t"], capsys)
    assert code == 3
    assert f"no FITS files in directory {tmp_path} (looked for names ending in .fits.fz" in err
    code, _, err = run_main([str(tmp_path / "*.fits"), "--source", "s", "--token", "t"], capsys)
    assert code == 3 and "no FITS files in pattern" in err


def test_missing_catalog_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_stub(tmp_path / "f.fits", seed=1)
    code, _, err = run_main([str(tmp_path), "--source", "s", "--token", "t",
                             "--catalog-file", str(tmp_path / "none.ecsv")], capsys)
    assert code == 3 and f"catalog file {tmp_path / 'none.ecsv'} does not exist" in err


# --- file discovery and checks -----------------------------------------------------------------


def test_find_fits_files_directory_glob_and_file(tmp_path: Path) -> None:
    for name in ("b.fits", "a.FIT", "c.fits.fz", "d.fits.gz", "e.fts", "x.txt", "y.gz"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "z.fits").write_bytes(b"")
    names = [p.name for p in find_fits_files(str(tmp_path))]
    assert names == ["a.FIT", "b.fits", "c.fits.fz", "d.fits.gz", "e.fts"]
    assert [p.name for p in find_fits_files(str(tmp_path / "**" / "*.fits"))] == [
        "b.fits", "z.fits"]
    assert find_fits_files(str(tmp_path / "b.fits")) == [tmp_path / "b.fits"]


def test_check_file_accepts_whole_frames_of_every_kind(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(100.0, 5.0, (64, 80)).astype(np.float32)
    fits.PrimaryHDU(data).writeto(tmp_path / "plain.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data)]).writeto(tmp_path / "tiled.fits.fz")
    (tmp_path / "zipped.fits.gz").write_bytes(gzip.compress((tmp_path / "plain.fits").read_bytes()))
    unpadded = (tmp_path / "plain.fits").read_bytes()[:2880 + data.nbytes]
    (tmp_path / "unpadded.fits").write_bytes(unpadded)
    for name in ("plain.fits", "tiled.fits.fz", "zipped.fits.gz", "unpadded.fits"):
        assert check_file(tmp_path / name) is None, name
    assert check_file(tmp_path / "plain.fits", max_bytes=1000) is not None


def test_check_file_finds_cut_extensions_and_bad_headers(tmp_path: Path) -> None:
    data = np.zeros((50, 50), np.float32)
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data)]).writeto(buffer)
    whole = buffer.getvalue()
    (tmp_path / "cut.fits").write_bytes(whole[:2880 * 2 + 1000])
    assert check_file(tmp_path / "cut.fits") == (
        "the file is truncated: HDU 1 declares 10000 bytes of data but only 1000 are present; "
        "copy or download it again")
    (tmp_path / "headcut.fits").write_bytes(whole[:2880 + 100])
    assert check_file(tmp_path / "headcut.fits") == (
        "the header of HDU 1 does not end (no END card before the end of the file): the file "
        "is truncated or corrupt; copy it again")
    bad = whole.replace(b"BITPIX  = " + b"-32".rjust(20), b"BITPIX  = " + b"-31".rjust(20), 1)
    (tmp_path / "bitpix.fits").write_bytes(bad)
    assert check_file(tmp_path / "bitpix.fits") == (
        "the FITS header is malformed: HDU 1 has BITPIX = -31, not one FITS allows; the file is "
        "corrupt")
    (tmp_path / "text.fits.gz").write_bytes(gzip.compress(b"hello"))
    assert check_file(tmp_path / "text.fits.gz") == (
        "not a FITS file: it does not start with 'SIMPLE  =' (the first bytes are b'hello'); "
        "upload the FITS image itself")


def test_check_file_on_the_real_frames(real_data: Path) -> None:
    frames = [p for p in real_data.iterdir() if p.name.lower().endswith((".fits", ".fit.gz"))]
    assert frames
    for path in frames:
        assert check_file(path) is None, path
