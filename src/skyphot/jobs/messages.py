"""Failure messages in the words of the web pages: what is wrong with the user's file or
settings, without server paths, library internals or command-line option names.

The engine's messages are written for the command line (``--catalog FILE``); a job's user
works with the upload form, so the options become form fields here, in one place.
"""

from __future__ import annotations

import re

from skyphot.errors import FrameReadError, SkyphotError, StageError, root_cause

# CLI wording -> the form's wording. Longer patterns first (they contain shorter ones).
_FORM_WORDS: tuple[tuple[str, str], ...] = (
    (r"give a template file or import one \(skyphot template import\)",
     "upload a template file with the frame"),
    (r" ?\(skyphot template import\)", ""),
    (r"give a template file", "upload a template file with the frame"),
    (r"\(?`skyphot catalog import FILE --name NAME`\)?", "(ask the administrator to import "
                                                          "the catalog)"),
    (r"`skyphot catalog prefetch`", "a catalog prefetch on the server"),
    (r"\(CLI: --catalog-columns [^)]*\)", ""),
    (r"\(--pixel-scale ARCSEC\)", "(the form's pixel scale field)"),
    (r"\((?:or )?--band\)", "(the filter field)"),
    (r"--catalog-columns", "the catalog file's column names"),
    (r"--catalog FILE", "a catalog file (the form's catalog file field)"),
    (r"--pixel-scale ARCSEC", "the pixel scale (the form's pixel scale field)"),
    (r"--pixel-scale", "the pixel scale field"),
    (r"--target-color", "the target colour field"),
    (r"--read-noise", "the instrument's read noise"),
    (r"--exptime", "a mid-exposure observation time (the form's time field)"),
    (r"--catalog", "the reference catalog field"),
    (r"--nsigma", "the detection threshold"),
    (r"--filter", "the filter field"),
    (r"--color", "the target colour field"),
    (r"--gain", "the gain field"),
    (r"--saturation", "the saturation field"),
    (r"--band", "the filter field"),
    (r"--mjd", "the observation time field"),
    (r"calibration\.band", "the filter"),
)

# Library internals that mean the file itself is damaged.
_DAMAGED = re.compile(
    r"buffer is too small|truncated|cannot reshape|unexpected end|EOFError|"
    r"Header missing END card|Empty or corrupt FITS|not a valid FITS|checksum",
    re.IGNORECASE,
)
# Absolute paths (POSIX, two parts or more), with or without quotes; not units like e-/ADU.
_PATH = re.compile(r"(?<![\w.\-])'?/(?:[^\s'\",;:()/]+/)+[^\s'\",;:()/]*'?")


def form_language(text: str) -> str:
    """``text`` with command-line option names replaced by the form's fields."""
    for pattern, replacement in _FORM_WORDS:
        text = re.sub(pattern, replacement, text)
    return re.sub(r"\s{2,}", " ", text).strip()


def hide_paths(text: str, *, stored: str, filename: str) -> str:
    """``text`` naming the upload by its file name and no other server path."""
    text = text.replace(stored, filename)

    def short(match: re.Match[str]) -> str:
        name = match.group(0).strip("'").rstrip("/").rsplit("/", 1)[-1]
        return repr(name) if name else "a server file"

    return _PATH.sub(short, text)


def user_message(error: BaseException, *, stored: str, filename: str) -> str:
    """One line for the user: what is wrong and what to do, in the form's language."""
    cause = root_cause(error) if isinstance(error, SkyphotError) else error
    raw = str(cause)
    if not isinstance(cause, SkyphotError):
        if _DAMAGED.search(raw) or isinstance(cause, (EOFError, OSError)):
            return (f"{filename!r} is damaged or incomplete (its data end before the header "
                    "says they should); upload the complete file again")
        return (f"the analysis of {filename!r} stopped on an unexpected problem "
                f"({type(cause).__name__}); the administrator can see the details in the job "
                "log")
    if isinstance(cause, FrameReadError) and _DAMAGED.search(raw):
        return (f"{filename!r} is damaged or incomplete (its data end before the header says "
                "they should); upload the complete file again")
    text = form_language(hide_paths(raw, stored=stored, filename=filename))
    if isinstance(error, StageError) and not text.startswith(error.stage):
        return f"{error.stage}: {text}"
    return text


def is_retryable(error: BaseException) -> bool:
    """Whether retrying, possibly with changed settings, can help.

    A file that is not FITS, is damaged or has no image cannot change on a retry; missing
    header values, catalogs, astrometry and calibration can (new time, filter, catalog,
    pixel scale), and so can outages and internal errors.
    """
    cause = root_cause(error) if isinstance(error, SkyphotError) else error
    if isinstance(cause, FrameReadError):
        return False
    if not isinstance(cause, SkyphotError):
        return not _DAMAGED.search(str(cause))
    return True
