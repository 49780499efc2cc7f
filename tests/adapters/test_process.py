"""The shared runner: finding programs, failures, time limits, clean-up.

These tests use tiny shell scripts as stand-ins for the tools, so they run everywhere.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS

from skyphot.adapters._process import (
    available,
    find_tool,
    run_tool,
    tool_workdir,
)
from skyphot.adapters.astrometry_net import build_index, find_index_files, solve_field
from skyphot.adapters.psfex import fit_psf_psfex
from skyphot.adapters.scamp import refine_wcs_scamp
from skyphot.adapters.sextractor import detect_sources_sextractor
from skyphot.adapters.swarp import resample
from skyphot.core.detection import SourceList
from skyphot.errors import ExternalToolError, ToolNotFoundError


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def _empty_sources() -> SourceList:
    z = np.zeros(0)
    return SourceList(x=z, y=z, flux=z, fluxerr=z, a=z, b=z, theta=z, flag=z, peak=z, npix=z)


def test_configured_path_that_does_not_exist_names_the_package(tmp_path: Path) -> None:
    bogus = tmp_path / "no-such-sextractor"
    with pytest.raises(ToolNotFoundError) as info:
        find_tool("source-extractor", bogus)
    message = str(info.value)
    assert str(bogus) in message
    assert "apt-get install source-extractor" in message
    assert not available("source-extractor", bogus)


def test_missing_from_path_names_every_package(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: nothing is found
    expected = {
        "source-extractor": "apt-get install source-extractor",
        "psfex": "apt-get install psfex",
        "scamp": "apt-get install scamp",
        "swarp": "apt-get install swarp",
        "solve-field": "apt-get install astrometry.net",
        "build-astrometry-index": "apt-get install astrometry.net",
    }
    for tool, hint in expected.items():
        assert not available(tool)
        with pytest.raises(ToolNotFoundError, match=re.escape(hint)):
            find_tool(tool)


def test_second_known_name_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _script(tmp_path / "sex", "exit 0")  # the older name of source-extractor
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_tool("source-extractor") == tmp_path / "sex"
    assert available("source-extractor")


def test_file_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "scamp"
    plain.write_text("not a program")
    with pytest.raises(ToolNotFoundError, match="not executable"):
        find_tool("scamp", plain)


def test_unknown_tool_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown external tool 'sextractor'"):
        find_tool("sextractor")


def test_success_returns_output_and_runs_in_workdir(tmp_path: Path) -> None:
    tool = _script(tmp_path / "fake", 'echo "out $1"; echo "err" >&2; pwd')
    with tool_workdir("scamp") as workdir:
        run = run_tool("scamp", ["arg"], workdir=workdir, timeout=10, executable=tool)
    assert run.returncode == 0
    assert run.stdout.splitlines()[0] == "out arg"
    assert Path(run.stdout.splitlines()[1]).resolve() == workdir.resolve()
    assert run.stderr.strip() == "err"


def test_nonzero_exit_names_tool_code_and_stderr_tail(tmp_path: Path) -> None:
    lines = "; ".join(f"echo line{i} >&2" for i in range(30))
    tool = _script(tmp_path / "fake", f"{lines}; exit 3")
    with tool_workdir("psfex") as workdir, pytest.raises(ExternalToolError) as info:
        run_tool("psfex", [], workdir=workdir, timeout=10, executable=tool)
    message = str(info.value)
    assert message.startswith("psfex exited with code 3")
    assert "line29" in message  # the last lines are kept ...
    assert "line0\n" not in message  # ... not all of them


def test_terminal_escapes_are_removed_from_the_message(tmp_path: Path) -> None:
    escapes = r"printf '\033[1M> \033[1Aworking\r> ERROR: bad\n' >&2; exit 1"
    tool = _script(tmp_path / "fake", escapes)
    with tool_workdir("scamp") as workdir, pytest.raises(ExternalToolError) as info:
        run_tool("scamp", [], workdir=workdir, timeout=10, executable=tool)
    assert str(info.value).endswith("> working\n> ERROR: bad")


def test_timeout_stops_the_tool_and_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "still-running"
    # The child outlives its parent unless the whole process group is killed.
    tool = _script(tmp_path / "slow", f'echo started >&2; (sleep 2; touch "{marker}") & wait')
    start = time.perf_counter()
    with tool_workdir("solve-field") as workdir, pytest.raises(ExternalToolError) as info:
        run_tool("solve-field", [], workdir=workdir, timeout=0.5, executable=tool)
    assert time.perf_counter() - start < 1.8  # did not wait for the child
    message = str(info.value)
    assert "solve-field did not finish within the time limit of 0.5 s" in message
    assert "started" in message
    time.sleep(2.3)
    assert not marker.exists()


def test_workdir_is_removed_also_after_a_failure(tmp_path: Path) -> None:
    tool = _script(tmp_path / "fake", "touch leftover; exit 1")
    with pytest.raises(ExternalToolError), tool_workdir("swarp") as workdir:
        run_tool("swarp", [], workdir=workdir, timeout=10, executable=tool)
    assert not workdir.exists()


def test_program_that_cannot_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_bytes(b"\x7fELF garbage")
    broken.chmod(0o755)
    with tool_workdir("scamp") as workdir, pytest.raises(ExternalToolError,
                                                          match="scamp: could not start"):
        run_tool("scamp", [], workdir=workdir, timeout=10, executable=broken)


def test_adapter_reports_a_failing_tool_with_its_stderr(tmp_path: Path) -> None:
    tool = _script(tmp_path / "fake-sex", 'echo "> ERROR: cannot open image.fits" >&2; exit 2')
    with pytest.raises(ExternalToolError) as info:
        detect_sources_sextractor(np.zeros((32, 32)), rms=1.0, executable=tool)
    assert "source-extractor exited with code 2" in str(info.value)
    assert "cannot open image.fits" in str(info.value)


def test_adapter_reports_a_timeout(tmp_path: Path) -> None:
    tool = _script(tmp_path / "slow-sex", "exec sleep 30")
    with pytest.raises(ExternalToolError, match=r"did not finish within the time limit of 0\.3 s"):
        detect_sources_sextractor(np.zeros((32, 32)), rms=1.0, timeout=0.3, executable=tool)


def test_every_adapter_refuses_a_bogus_configured_path(tmp_path: Path) -> None:
    bogus = tmp_path / "missing"
    image = np.zeros((32, 32))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    calls = {
        "source-extractor": lambda: detect_sources_sextractor(image, executable=bogus),
        "psfex": lambda: fit_psf_psfex(image, psfex=bogus),
        "scamp": lambda: refine_wcs_scamp(
            _empty_sources(), wcs=wcs, reference=None, shape=(32, 32),  # type: ignore[arg-type]
            executable=bogus),
        "swarp": lambda: resample(image, wcs, target_wcs=wcs, shape=(32, 32), executable=bogus),
        "astrometry.net": lambda: solve_field(image, executable=bogus),
    }
    for package, call in calls.items():
        with pytest.raises(ToolNotFoundError, match=re.escape(f"apt-get install {package}")):
            call()
    with pytest.raises(ToolNotFoundError, match=r"apt-get install astrometry\.net"):
        build_index(np.zeros(20), np.zeros(20), np.zeros(20), out_dir=tmp_path,
                    presets=[0], executable=bogus)


def test_no_index_files_says_how_to_get_them(tmp_path: Path) -> None:
    (tmp_path / "notes.fits").write_text("not FITS")
    with pytest.raises(ToolNotFoundError) as info:
        find_index_files(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "apt-get install astrometry-data-tycho2" in message
    assert "build_index" in message


def test_no_shell_is_involved(tmp_path: Path) -> None:
    # An argument full of shell syntax reaches the program verbatim.
    tool = _script(tmp_path / "echo-args", 'printf "%s" "$1"')
    tricky = "$(touch pwned); `id` | ; > out"
    with tool_workdir("scamp") as workdir:
        run = run_tool("scamp", [tricky], workdir=workdir, timeout=10, executable=tool)
        assert run.stdout == tricky
        assert os.listdir(workdir) == []
