"""Finding and running the external astronomy programs behind the optional adapters.

Every adapter goes through ``run_tool``: an argument list (never a shell), a private working
directory that is removed afterwards, a wall-clock limit, and an ``ExternalToolError`` that
names the program, its exit status and the end of what it printed when anything goes wrong.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from skyphot.errors import ExternalToolError, ToolNotFoundError

# Tool -> executable names to look for on PATH, in order of preference.
TOOL_NAMES: Mapping[str, tuple[str, ...]] = {
    "source-extractor": ("source-extractor", "sex"),
    "psfex": ("psfex",),
    "scamp": ("scamp",),
    "swarp": ("SWarp", "swarp"),
    "solve-field": ("solve-field",),
    "build-astrometry-index": ("build-astrometry-index",),
    "hotpants": ("hotpants",),
}

# Tool -> the Debian package that installs it.
DEBIAN_PACKAGES: Mapping[str, str] = {
    "source-extractor": "source-extractor",
    "psfex": "psfex",
    "scamp": "scamp",
    "swarp": "swarp",
    "solve-field": "astrometry.net",
    "build-astrometry-index": "astrometry.net",
}

# Tools no Debian package installs: how to get them instead.
OTHER_INSTALL: Mapping[str, str] = {
    "hotpants": "build it from its source (github.com/acbecker/hotpants) and put it on PATH",
}

_STDERR_TAIL_LINES = 12
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class ToolRun:
    """What one finished run of an external program left behind."""

    tool: str
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # wall-clock run time


def _check_tool_name(tool: str) -> None:
    if tool not in TOOL_NAMES:
        known = ", ".join(sorted(TOOL_NAMES))
        raise ValueError(f"unknown external tool {tool!r}; known tools: {known}")


def _install_hint(tool: str) -> str:
    if tool in OTHER_INSTALL:
        return OTHER_INSTALL[tool]
    return f"install it with `apt-get install {DEBIAN_PACKAGES[tool]}` (Debian/Ubuntu)"


def find_tool(tool: str, executable: str | Path | None = None) -> Path:
    """The executable of ``tool``: ``executable`` when given, else the first known name on PATH.

    ``executable`` may be a path or a bare command name. Raises ``ToolNotFoundError`` naming
    the Debian package that installs the program.
    """
    _check_tool_name(tool)
    if executable is not None:
        configured = str(executable)
        found = shutil.which(configured)
        if found is None:
            raise ToolNotFoundError(
                f"{tool}: the configured executable {configured!r} does not exist or is not "
                f"executable; fix the configured path, or {_install_hint(tool)}"
            )
        return Path(found)
    for name in TOOL_NAMES[tool]:
        found = shutil.which(name)
        if found is not None:
            return Path(found)
    names = " or ".join(repr(n) for n in TOOL_NAMES[tool])
    raise ToolNotFoundError(
        f"{tool} is not installed (no {names} on PATH); {_install_hint(tool)}, "
        "or give the path to the executable"
    )


def available(tool: str, executable: str | Path | None = None) -> bool:
    """Whether ``tool`` can be run (see ``find_tool``); only the option needing it is lost."""
    try:
        find_tool(tool, executable)
    except ToolNotFoundError:
        return False
    return True


@contextmanager
def tool_workdir(tool: str) -> Iterator[Path]:
    """A private, empty working directory, removed with everything in it on exit."""
    with tempfile.TemporaryDirectory(prefix=f"skyphot-{tool}-") as name:
        yield Path(name)


def _tail(text: str, lines: int = _STDERR_TAIL_LINES) -> str:
    # The AstrOmatic tools draw progress with terminal escapes; keep only the words.
    plain = _ANSI_ESCAPE.sub("", text).replace("\r", "\n")
    kept = [line.rstrip() for line in plain.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) if kept else "(nothing printed)"


def _kill_group(process: subprocess.Popen[str]) -> None:
    # The tools start helpers of their own (solve-field runs astrometry-engine), so the
    # whole process group goes, or a helper would keep running and hold the pipes open.
    with suppress(ProcessLookupError):  # it ended by itself meanwhile
        os.killpg(process.pid, signal.SIGKILL)


def run_tool(
    tool: str,
    args: Sequence[str | Path],
    *,
    workdir: Path,
    timeout: float,
    executable: str | Path | None = None,
    check: bool = True,
) -> ToolRun:
    """Run ``tool`` with ``args`` in ``workdir``; ``timeout`` is wall-clock seconds.

    Raises ``ToolNotFoundError`` when the program is missing, ``ExternalToolError`` when it
    cannot start, runs out of time, or (with ``check``) exits non-zero; the message names
    the tool, the exit status or time limit, and the last lines it printed on stderr.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    binary = find_tool(tool, executable)
    argv = [str(binary), *(str(a) for a in args)]
    start = time.perf_counter()
    try:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise ExternalToolError(
            f"{tool}: could not start {binary} ({exc.strerror or exc}); check that it is a "
            f"working executable, or reinstall it: {_install_hint(tool)}"
        ) from exc
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(process)
        stdout, stderr = process.communicate()
        raise ExternalToolError(
            f"{tool} did not finish within the time limit of {timeout:g} s and was stopped; "
            f"allow more time or give it less work. Last output:\n{_tail(stderr or stdout)}"
        ) from exc
    finally:
        if process.poll() is None:  # an exception other than the timeout interrupted us
            _kill_group(process)
            process.wait()
    seconds = time.perf_counter() - start
    if check and process.returncode != 0:
        status = (
            f"was killed by signal {-process.returncode}"
            if process.returncode < 0
            else f"exited with code {process.returncode}"
        )
        raise ExternalToolError(
            f"{tool} {status}. Last lines of its error output:\n{_tail(stderr or stdout)}"
        )
    return ToolRun(
        tool=tool,
        args=tuple(argv),
        returncode=process.returncode,
        stdout=stdout,
        stderr=stderr,
        seconds=seconds,
    )


def write_config(path: Path, settings: Mapping[str, object]) -> Path:
    """Write a ``KEY value`` configuration file as the AstrOmatic tools read it."""
    lines = []
    for key, value in settings.items():
        if isinstance(value, bool):
            text = "Y" if value else "N"
        elif isinstance(value, (list, tuple)):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        lines.append(f"{key:<20} {text}")
    path.write_text("\n".join(lines) + "\n")
    return path
