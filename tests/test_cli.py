"""The ``skyphot`` command: JSON contract, exit codes, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits
from astropy.table import Table

from skyphot import __version__
from skyphot.catalogs.columns import parse_columns
from skyphot.cli import (
    EXIT_ANALYSIS,
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    exit_code_for,
    main,
    parse_target_color,
)
from skyphot.errors import (
    CalibrationError,
    ConfigError,
    FrameReadError,
    StageError,
)

JSON_KEYS = {
    "mag",
    "magerr",
    "limiting_mag",
    "limit_nsigma",
    "detected",
    "snr",
    "mjd",
    "filter",
    "zero_point",
    "zero_point_err",
    "color_term",
    "fwhm_px",
    "n_calib",
    "timings",
}


def _args(frame, *extra: str) -> list[str]:  # type: ignore[no-untyped-def]
    truth = frame.sim.truth
    return [
        "measure",
        str(frame.image),
        "--ra",
        repr(truth.ra),
        "--dec",
        repr(truth.dec),
        "--catalog",
        str(frame.catalog),
        *extra,
    ]


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "skyphot.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"skyphot {__version__}"


def test_measure_json_contract_in_a_real_process(small_frame) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "skyphot.cli",
            *_args(small_frame, "--json", "--target-color", "g-r=0.6"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert set(data) >= JSON_KEYS
    assert data["detected"] is True
    assert data["filter"] == "r"
    assert "total" in data["timings"]
    assert data["limit_nsigma"] == 5
    assert "calibrate" in proc.stderr  # progress goes to stderr


def test_plot_option_writes_png(small_frame, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "p.png"
    assert main(_args(small_frame, "--plot", str(out))) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "±" in capsys.readouterr().out


def test_non_detection_has_null_mag(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from skyphot.testing import SimulationParams, simulate_frame

    sim = simulate_frame(SimulationParams(shape=(500, 700), target_mag=26.0), seed=2)
    paths = sim.write(tmp_path)
    code = main(
        [
            "measure",
            str(paths.image),
            "--ra",
            repr(sim.truth.ra),
            "--dec",
            repr(sim.truth.dec),
            "--catalog",
            str(paths.catalog),
            "--json",
            "--nsigma",
            "3",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["detected"] is False
    assert data["mag"] is None and data["magerr"] is None
    assert data["limit_nsigma"] == 3


def test_summary_prints_the_notes(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from skyphot.testing import SimulationParams, simulate_frame

    sim = simulate_frame(SimulationParams(shape=(300, 400), target_mag=17.0, n_stars=60), seed=3)
    paths = sim.write(tmp_path)
    argv = ["measure", str(paths.image), "--ra", repr(sim.truth.ra), "--dec",
            repr(sim.truth.dec), "--catalog", str(paths.catalog), "--spatial-order", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "SPATIAL_ORDER_LOWERED" in out
    assert "  note: spatial order lowered from 3 to" in out


def _fails(argv: list[str], capsys, code: int, *fragments: str) -> str:  # type: ignore[no-untyped-def]
    assert main(argv) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert err, "an error message is expected on stderr"
    message = err[-1]
    assert message.startswith("skyphot: error: ")
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    return message


def test_not_fits(small_frame, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "notes.fits"
    bad.write_text("this is a text file, not an image\n" * 20)
    argv = _args(small_frame)
    argv[1] = str(bad)
    _fails(argv, capsys, EXIT_BAD_INPUT, "read:", "notes.fits", "fits")


def test_truncated(small_frame, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cut = tmp_path / "cut.fits"
    cut.write_bytes(small_frame.image.read_bytes()[: 2880 * 40])
    argv = _args(small_frame)
    argv[1] = str(cut)
    _fails(argv, capsys, EXIT_BAD_INPUT, "read:", "truncated")


def test_empty_file(small_frame, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    argv = _args(small_frame)
    argv[1] = str(empty)
    _fails(argv, capsys, EXIT_BAD_INPUT, "read:", "empty")


def test_no_image_data(small_frame, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    table_only = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"a": [1, 2]}))]).writeto(table_only)
    argv = _args(small_frame)
    argv[1] = str(table_only)
    _fails(argv, capsys, EXIT_BAD_INPUT, "read:", "image")


def test_no_wcs(small_frame, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    nowcs = tmp_path / "nowcs.fits"
    header = fits.Header()
    for key in ("DATE-OBS", "EXPTIME", "FILTER", "GAIN"):
        header[key] = small_frame.sim.header[key]
    fits.PrimaryHDU(small_frame.sim.data, header=header).writeto(nowcs)
    argv = _args(small_frame)
    argv[1] = str(nowcs)
    _fails(argv, capsys, EXIT_BAD_INPUT, "header:", "wcs")


def test_target_off_the_frame(small_frame, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = _args(small_frame)
    argv[argv.index("--dec") + 1] = repr(small_frame.sim.truth.dec + 2.0)
    _fails(argv, capsys, EXIT_BAD_INPUT, "header:", "outside")


def test_catalog_without_usable_columns(small_frame, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cat = tmp_path / "cat.csv"
    cat.write_text("alpha,beta,gamma\n1,2,3\n4,5,6\n")
    argv = _args(small_frame)
    argv[argv.index("--catalog") + 1] = str(cat)
    _fails(argv, capsys, EXIT_BAD_INPUT, "catalog:", "cat.csv")


def test_too_few_matched_stars(small_frame, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    table = Table.read(small_frame.catalog)
    table.sort("r")
    few = tmp_path / "few.ecsv"
    table[:3].write(few)
    argv = _args(small_frame)
    argv[argv.index("--catalog") + 1] = str(few)
    _fails(argv, capsys, EXIT_ANALYSIS, "astrometry:")


def test_unknown_filter(small_frame, capsys) -> None:  # type: ignore[no-untyped-def]
    _fails(_args(small_frame, "--filter", "Halpha-narrow"), capsys, EXIT_BAD_INPUT, "filter")


def test_invalid_nsigma(small_frame, capsys) -> None:  # type: ignore[no-untyped-def]
    # 3 or 5 only, as in the web form and the API: a usage error (exit 2)
    with pytest.raises(SystemExit) as done:
        main(_args(small_frame, "--nsigma", "0.2"))
    assert done.value.code == 2
    assert "--nsigma: invalid choice: 0.2 (choose from 3.0, 5.0)" in capsys.readouterr().err


def test_malformed_target_color(small_frame, capsys) -> None:  # type: ignore[no-untyped-def]
    _fails(_args(small_frame, "--target-color", "red"), capsys, EXIT_BAD_INPUT, "g-r=0.3")


def test_parsers() -> None:
    assert parse_target_color("g-r=0.3") == ("g", "r", 0.3)
    assert parse_target_color(" B - V = -0.12 ") == ("B", "V", -0.12)
    assert parse_columns("ra=RA_deg, r=rPSF") == {"ra": "RA_deg", "r": "rPSF"}
    with pytest.raises(ConfigError, match="NAME=COLUMN"):
        parse_columns("ra")


def test_exit_code_mapping() -> None:
    assert exit_code_for(StageError("read", FrameReadError("x"))) == EXIT_BAD_INPUT
    assert exit_code_for(StageError("calibrate", CalibrationError("x"))) == EXIT_ANALYSIS
    assert exit_code_for(StageError("psf", KeyError("x"))) == EXIT_INTERNAL
    assert exit_code_for(ConfigError("x")) == EXIT_BAD_INPUT


def test_simulate_writes_a_frame_and_reports_its_truth(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = ["simulate", str(tmp_path), "--seed", "3", "--shape", "300", "400",
            "--target-mag", "19.5", "--dtype", "uint16", "--compress", "fz", "--json"]
    assert main(argv) == 0
    truth = json.loads(capsys.readouterr().out)
    image = Path(truth["image"])
    assert image.name.endswith(".fits.fz") and image.is_file()
    assert Path(truth["catalog"]).is_file()
    assert truth["target_mag"] == 19.5
    assert truth["ideal_limit_5sigma"] > 19.5
    with fits.open(image) as hdul:
        assert hdul[1].data.shape == (300, 400)
