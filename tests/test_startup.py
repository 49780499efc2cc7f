"""Start-up cost: `skyphot measure` imports only what measuring needs (issue 8, item 7).

Guards against imports coming back, not timings: each module listed cost 0.05-0.75 s of
import time before it was made lazy or replaced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skyphot.testing import SimulationParams, simulate_frame

# Measuring needs none of these.
_NOT_FOR_MEASURE = (
    "scipy",  # NumPy stand-ins in core (neighbours, stats, masking); subtraction imports it
    "sqlalchemy", "alembic", "fastapi", "skyphot.db.session",  # the web application
    "pyarrow", "pandas", "astropy_healpix", "astroquery", "requests",  # catalog cache/service
    "skyphot.catalogs.cache", "skyphot.catalogs.service", "skyphot.catalogs.vizier",
    "pydantic_settings", "skyphot.settings",  # web and worker settings
    "skyphot.pipeline.stages.subtraction", "skyphot.templates.service",  # --template only
    "matplotlib",  # --plot only
    # the other subcommands' parsers: only `skyphot --help` builds them all
    "skyphot.catalogs.commands", "skyphot.templates", "skyphot.client", "skyphot.web",
    "skyphot.jobs",
)
# Printing help needs nothing numerical.
_NOT_FOR_HELP = ("numpy", "astropy", "pydantic", "scipy", "yaml", "skyphot.pipeline.config")

# Records every outgoing connection the code under test attempts (and refuses it).
_NO_NETWORK = """
import socket
attempts = []
def _refuse(self, address):
    attempts.append(repr(address))
    raise OSError("no network in this test")
socket.socket.connect = _refuse
"""


def _run(code: str) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter; its modules and refused connections."""
    report = "\nimport json, sys\nprint(json.dumps({'modules': sorted(sys.modules), " \
             "'attempts': attempts}))"
    out = subprocess.run(
        [sys.executable, "-c", _NO_NETWORK + code + report],
        capture_output=True, text=True, check=True, timeout=300,
    )
    loaded: dict[str, list[str]] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def _offenders(modules: list[str], banned: tuple[str, ...]) -> list[str]:
    """Loaded modules that are, or are inside, a banned package or module."""
    return sorted(m for m in modules if any(m == b or m.startswith(b + ".") for b in banned))


def test_building_the_cli_and_the_pipeline_imports_nothing_measuring_does_not_use() -> None:
    loaded = _run(
        "import skyphot.cli\nskyphot.cli.build_parser('measure')\nimport skyphot.pipeline.api"
    )
    assert "skyphot.pipeline.api" in loaded["modules"]
    assert not _offenders(loaded["modules"], _NOT_FOR_MEASURE)


def test_measure_help_imports_nothing_numerical() -> None:
    loaded = _run(
        "import contextlib, io\nimport skyphot.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()) as text:\n"
        "    try:\n        skyphot.cli.main(['measure', '--help'])\n"
        "    except SystemExit:\n        pass\n"
        "assert '--catalog' in text.getvalue()\n"
    )
    assert "skyphot.cli" in loaded["modules"]
    assert not _offenders(loaded["modules"], _NOT_FOR_HELP)


@pytest.mark.parametrize("system", ["icrs", "fk4"])
def test_a_measure_run_imports_only_what_it_uses_and_never_goes_online(
    tmp_path: Path, system: str
) -> None:
    # FK4 B1950 with an observation epoch: the sky transformations involve times, which
    # must not make astropy fetch IERS or leap-second tables
    sim = simulate_frame(
        SimulationParams(shape=(300, 400), target_mag=17.0, wcs_frame=system),  # type: ignore[arg-type]
        seed=5,
    )
    paths = sim.write(tmp_path)
    argv = ["-q", "measure", str(paths.image), "--ra", repr(sim.truth.ra), "--dec",
            repr(sim.truth.dec), "--catalog", str(paths.catalog), "--json"]
    loaded = _run(
        "import contextlib, io, json\nimport skyphot.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()) as text:\n"
        f"    code = skyphot.cli.main({argv!r})\n"
        "assert code == 0, code\n"
        "assert json.loads(text.getvalue())['mag'] is not None\n"
    )
    assert "skyphot.core.psf" in loaded["modules"]  # it did measure
    assert not _offenders(loaded["modules"], _NOT_FOR_MEASURE)
    assert loaded["attempts"] == []


def test_importing_skyphot_leaves_the_garbage_collector_alone() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import gc, skyphot.cli, skyphot.pipeline.api\n"
         "print(gc.isenabled(), gc.get_freeze_count())"],
        capture_output=True, text=True, check=True, timeout=300,
    )
    assert out.stdout.split() == ["True", "0"]


def test_the_program_imports_with_the_collector_off_then_freezes(tmp_path: Path) -> None:
    # entry() ends with os._exit for one-shot commands: the spy reports just before it
    code = f"""
import gc, json, os, sys
import skyphot.cli
seen = {{}}
real_freeze, real_exit = gc.freeze, os._exit
def freeze():
    seen.update(enabled=gc.isenabled(), testing="skyphot.testing" in sys.modules)
    real_freeze()
def leave(code):
    seen.update(code=code, frozen=gc.get_freeze_count(), enabled_after=gc.isenabled())
    sys.stderr.write(json.dumps(seen))
    real_exit(code)
gc.freeze, os._exit = freeze, leave
sys.argv = ["skyphot", "-q", "simulate", {str(tmp_path)!r}, "--shape", "64", "96", "--json"]
skyphot.cli.entry()
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    seen = json.loads(out.stderr)
    assert seen == {"enabled": False, "testing": True, "code": 0,
                    "frozen": seen["frozen"], "enabled_after": True}
    assert seen["frozen"] > 10_000
    assert json.loads(out.stdout)["image"].startswith(str(tmp_path))


def test_column_recognition_compiles_each_name_pattern_once_for_every_band(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One regex per band and pattern was ~360 compilations, ~10 ms of every fresh process
    import re

    from astropy.table import Table

    from skyphot.catalogs import columns

    compiled: list[str] = []
    real_compile = re.compile

    def counting(pattern: str, flags: int = 0) -> re.Pattern[str]:
        if "(?i:" in pattern:  # a column-name pattern (warning filters compile too)
            compiled.append(pattern)
        return real_compile(pattern, flags)

    monkeypatch.setattr(re, "compile", counting)
    columns._slot_regexes.cache_clear()
    table = Table({"RAJ2000": [1.0, 2.0], "DEJ2000": [3.0, 4.0], "gmag": [15.0, 16.0],
                   "e_gmag": [0.01, 0.02], "rmag": [14.0, 15.5], "e_rmag": [0.01, 0.02],
                   "Ksmag": [12.0, 13.0], "phot_bp_mean_mag": [15.2, 16.1]})
    found = columns.recognise_columns(table)
    assert found.mags == {"g": "gmag", "r": "rmag", "K": "Ksmag", "BP": "phot_bp_mean_mag"}
    assert found.errs == {"g": "e_gmag", "r": "e_rmag"}
    n_patterns = len(columns._MAG_PATTERNS) + len(columns._ERR_PATTERNS) + len(
        columns._ERR_FROM_NAME)
    assert len(compiled) <= n_patterns + len(columns._GAIA_NAMES)


def _threads_after_importing_for(command: str, env: dict[str, str]) -> tuple[int, bool]:
    """Threads of a fresh interpreter after the program's imports for ``command``, and
    whether OPENBLAS_NUM_THREADS is left set."""
    code = (
        "import os, skyphot.cli\n"
        f"skyphot.cli._import_then_freeze({command!r})\n"
        "import numpy\n"
        "print(len(os.listdir('/proc/self/task')), 'OPENBLAS_NUM_THREADS' in os.environ)"
    )
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300, env={**clean, **env})
    threads, left_set = out.stdout.split()
    return int(threads), left_set == "True"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_a_one_shot_command_loads_blas_without_a_thread_pool_unless_asked() -> None:
    assert _threads_after_importing_for("measure", {}) == (1, False)
    # the user's choice wins (and stays in the environment)
    threads, left_set = _threads_after_importing_for("measure", {"OPENBLAS_NUM_THREADS": "2"})
    assert (threads, left_set) == (2, True)
    # long-running commands keep OpenBLAS's default (as numpy alone would have it)
    default = subprocess.run(
        [sys.executable, "-c", "import os, numpy; print(len(os.listdir('/proc/self/task')))"],
        capture_output=True, text=True, check=True, timeout=300,
        env={k: v for k, v in os.environ.items()
             if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")},
    )
    assert _threads_after_importing_for("serve", {}) == (int(default.stdout), False)
