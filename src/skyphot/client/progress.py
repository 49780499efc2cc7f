"""Progress of a batch on stderr: a bar redrawn with ``\\r`` on a terminal, one plain line
per event otherwise (logs, CI, pipes)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Counts:
    """Files of a batch by where they are (each file in exactly one of the last six)."""

    total: int
    uploaded: int  # accepted by the server (have a job)
    pending: int  # not yet checked/uploaded
    queued: int
    running: int
    succeeded: int
    failed: int  # the job ended failed
    rejected: int  # refused before a job existed (by the client's checks or the server)

    @property
    def done(self) -> int:
        """Files whose outcome is final."""
        return self.succeeded + self.failed + self.rejected


class Progress:
    """Writes progress to ``stream``; ``tty`` None: ask the stream."""

    def __init__(self, stream: TextIO, total: int, *, tty: bool | None = None,
                 width: int = 24) -> None:
        self.stream = stream
        self.total = total
        self.tty = stream.isatty() if tty is None else tty
        self.width = width
        # A bar wider than the terminal wraps, and "\r" can no longer redraw it.
        self.columns = shutil.get_terminal_size((100, 24)).columns - 1
        self._line = ""

    def bar(self, counts: Counts) -> str:
        """The one-line bar for ``counts``."""
        filled = round(self.width * counts.done / counts.total) if counts.total else self.width
        parts = [f"{counts.done}/{counts.total} done", f"{counts.uploaded} uploaded",
                 f"{counts.succeeded} ok"]
        parts += [f"{n} {name}" for n, name in ((counts.failed, "failed"),
                                                 (counts.rejected, "rejected"),
                                                 (counts.running, "running"),
                                                 (counts.queued, "queued")) if n]
        line = f"[{'#' * filled}{'-' * (self.width - filled)}] " + " | ".join(parts)
        return line[:self.columns] if self.tty else line

    def _clear(self) -> None:
        if self._line:
            self.stream.write("\r" + " " * len(self._line) + "\r")

    def event(self, text: str, counts: Counts, *, problem: bool = False) -> None:
        """One thing happened to one file (uploaded, rejected, finished). On a terminal only
        problems get a line of their own; the bar shows the rest."""
        if self.tty:
            self._clear()
            if problem:
                self.stream.write(text + "\n")
            self._line = self.bar(counts)
            self.stream.write(self._line)
        else:
            self.stream.write(f"[{counts.done}/{counts.total}] {text}\n")
        self.stream.flush()

    def update(self, counts: Counts) -> None:
        """Redraw the bar (terminal only; plain output has a line per event already)."""
        if not self.tty:
            return
        line = self.bar(counts)
        if line != self._line:
            self._clear()
            self._line = line
            self.stream.write(line)
            self.stream.flush()

    def note(self, text: str) -> None:
        """A message that is not about one file (e.g. the server is unreachable for now)."""
        if self.tty:
            self._clear()
            self.stream.write(text + "\n" + self._line)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty and self._line:
            self.stream.write("\n")
            self.stream.flush()
            self._line = ""
