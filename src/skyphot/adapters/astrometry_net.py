"""Blind astrometry with astrometry.net (Debian package ``astrometry.net``), offline.

``solve_field`` finds the WCS of a frame from its pixels or a list of detections with local
index files (Debian's ``astrometry-data-*`` packages, or files made by ``build_index`` from
any star list, e.g. an observatory's own catalog or the truth of a simulated field).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skyphot.adapters._process import find_tool, run_tool, tool_workdir
from skyphot.core.detection import SourceList
from skyphot.errors import AstrometryError, CatalogError, InputError, ToolNotFoundError

DEFAULT_INDEX_DIR = Path("/usr/share/astrometry")  # where Debian's index packages install
_RAD_TO_ARCMIN = 180.0 / math.pi * 60.0
# Preset P of build-astrometry-index makes quads of 2.0..2.8 arcmin times sqrt(2)**P.
_PRESET_QUAD_ARCMIN = (2.0, 2.8)
_MAX_PRESET = 19


@dataclass(frozen=True)
class IndexFile:
    """One astrometry.net index file and the quad sizes it covers (arcmin)."""

    path: Path
    scale_low_arcmin: float
    scale_high_arcmin: float


def find_index_files(index_dir: str | Path | Sequence[str | Path] | None = None) -> list[IndexFile]:
    """The astrometry.net index files in ``index_dir`` (default: Debian's location).

    Raises ``ToolNotFoundError`` when there are none, saying how to get some.
    """
    dirs = _index_dirs(index_dir)
    found: list[IndexFile] = []
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.fits")):
            try:
                header = fits.getheader(path)
            except OSError:
                continue  # not FITS: astrometry.net skips it too
            if "SCALE_L" in header and "SCALE_U" in header:
                found.append(IndexFile(
                    path=path,
                    scale_low_arcmin=float(header["SCALE_L"]) * _RAD_TO_ARCMIN,
                    scale_high_arcmin=float(header["SCALE_U"]) * _RAD_TO_ARCMIN,
                ))
    if not found:
        where = ", ".join(str(d) for d in dirs)
        raise ToolNotFoundError(
            f"no astrometry.net index files in {where}; install index files matching your "
            "field size (Debian: `apt-get install astrometry-data-tycho2` for fields wider "
            "than about 20 arcmin), or build them from a star list with "
            "skyphot.adapters.astrometry_net.build_index"
        )
    return found


def _index_dirs(index_dir: str | Path | Sequence[str | Path] | None) -> list[Path]:
    if index_dir is None:
        return [DEFAULT_INDEX_DIR]
    if isinstance(index_dir, (str, Path)):
        return [Path(index_dir)]
    return [Path(d) for d in index_dir]


def _write_xylist(path: Path, x: np.ndarray, y: np.ndarray, flux: np.ndarray) -> None:
    order = np.argsort(-flux, kind="stable")
    table = Table(
        {
            # astrometry.net x,y lists use FITS (1-based) pixel coordinates.
            "X": (x[order] + 1.0).astype(np.float64),
            "Y": (y[order] + 1.0).astype(np.float64),
            "FLUX": flux[order].astype(np.float64),
        }
    )
    table.write(path, format="fits")


def _sources_xy(
    sources: SourceList | tuple[np.ndarray, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(sources, SourceList):
        return (np.asarray(sources.x, float), np.asarray(sources.y, float),
                np.asarray(sources.flux, float))
    if len(sources) not in (2, 3):
        raise InputError("give the sources as a SourceList or as (x, y) or (x, y, flux) arrays")
    x = np.asarray(sources[0], dtype=np.float64)
    y = np.asarray(sources[1], dtype=np.float64)
    # Without fluxes the caller's order is kept: it is taken as brightest first.
    flux = (np.asarray(sources[2], dtype=np.float64) if len(sources) == 3
            else np.arange(x.size, 0, -1, dtype=np.float64))
    if not x.shape == y.shape == flux.shape or x.ndim != 1:
        raise InputError("x, y (and flux) must be 1-D arrays of the same length")
    return x, y, flux


def _arcmin(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _coverage(files: Sequence[IndexFile]) -> str:
    low = min(f.scale_low_arcmin for f in files)
    high = max(f.scale_high_arcmin for f in files)
    return f"{_arcmin(low)}–{_arcmin(high)} arcmin"


def solve_field(
    data_or_sources: np.ndarray | SourceList | tuple[np.ndarray, ...],
    *,
    shape: tuple[int, int] | None = None,
    index_dir: str | Path | Sequence[str | Path] | None = None,
    scale_low: float | None = None,
    scale_high: float | None = None,
    ra: float | None = None,
    dec: float | None = None,
    radius: float | None = None,
    timeout: float = 60.0,
    max_sources: int = 200,
    tweak_order: int = 2,
    downsample: int | None = None,
    executable: str | Path | None = None,
) -> WCS:
    """Blind-solve a frame with astrometry.net; returns its WCS (0-based pixels in astropy).

    ``data_or_sources``: the image (2-D array; astrometry.net finds the stars), or detections
    as a ``SourceList`` or ``(x, y[, flux])`` arrays in 0-based pixels, with ``shape`` (ny, nx)
    of the frame. ``scale_low``/``scale_high``: pixel-scale bounds, arcsec/pixel.
    ``ra``/``dec``/``radius``: optional search hint, degrees. ``timeout``: CPU seconds given
    to the solver (the wall-clock limit is twice that plus 10 s). ``tweak_order``: SIP
    order of the fitted distortion (0: pure TAN). Raises ``AstrometryError`` when no solution
    is found, ``ToolNotFoundError`` when solve-field or the index files are missing.
    """
    find_tool("solve-field", executable)
    files = find_index_files(index_dir)
    if (scale_low is None) != (scale_high is None):
        raise InputError("give both scale_low and scale_high (arcsec/pixel), or neither")
    if scale_low is not None and scale_high is not None and not 0 < scale_low <= scale_high:
        raise InputError(f"need 0 < scale_low <= scale_high, got {scale_low}, {scale_high}")
    hint = (ra, dec, radius)
    if any(v is not None for v in hint) and any(v is None for v in hint):
        raise InputError("give all of ra, dec and radius (degrees) as a search hint, or none")
    if tweak_order < 0:
        raise InputError(f"tweak_order must be >= 0, got {tweak_order}")
    image: np.ndarray | None = None
    xyf: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    if isinstance(data_or_sources, np.ndarray):
        if data_or_sources.ndim != 2:
            raise InputError(
                f"an image to solve must be 2-D, got shape {data_or_sources.shape}; give "
                "sources as a SourceList or (x, y[, flux]) arrays"
            )
        image = np.asarray(data_or_sources, dtype=np.float32)
        shape = (int(image.shape[0]), int(image.shape[1]))
    else:
        if shape is None:
            raise InputError("solving from a source list needs the frame shape (ny, nx)")
        xyf = _sources_xy(data_or_sources)
        if xyf[0].size < 4:
            raise AstrometryError(
                f"only {xyf[0].size} sources to solve with; astrometry.net needs at least "
                "4 (better 20 or more); lower the detection threshold"
            )
    ny, nx = shape
    with tool_workdir("solve-field") as workdir:
        # Our own backend configuration: only the given index files, never /etc's.
        lines = [f"cpulimit {math.ceil(timeout)}"]
        lines += [f"add_path {d}" for d in _index_dirs(index_dir)] + ["autoindex"]
        (workdir / "backend.cfg").write_text("\n".join(lines) + "\n")
        args: list[str | Path] = [
            "--config", "backend.cfg", "--dir", workdir, "--out", "field",
            "--temp-dir", workdir, "--no-plots", "--overwrite",
            "--cpulimit", str(math.ceil(timeout)),
            "--new-fits", "none", "--corr", "none", "--match", "none", "--rdls", "none",
            "--index-xyls", "none", "--wcs", "field.wcs", "--solved", "field.solved",
            "--objs", str(max_sources),
        ]
        if image is not None:
            finite = np.isfinite(image)
            fill = float(np.median(image[finite])) if finite.any() else 0.0
            fits.PrimaryHDU(np.where(finite, image, np.float32(fill))).writeto(
                workdir / "image.fits"
            )
            args = ["image.fits", "--fits-image", "--no-verify", *args]
            if downsample:
                args += ["--downsample", str(downsample)]
        elif xyf is not None:
            _write_xylist(workdir / "sources.xyls", *xyf)
            args = [
                "sources.xyls", "--width", str(nx), "--height", str(ny),
                "--x-column", "X", "--y-column", "Y", "--sort-column", "FLUX", *args,
            ]
        if scale_low is not None and scale_high is not None:
            args += ["--scale-units", "arcsecperpix", "--scale-low", f"{scale_low:.6g}",
                     "--scale-high", f"{scale_high:.6g}"]
        if ra is not None and dec is not None and radius is not None:
            args += ["--ra", f"{ra:.8f}", "--dec", f"{dec:.8f}", "--radius", f"{radius:.6g}"]
        args += ["--no-tweak"] if tweak_order == 0 else ["--tweak-order", str(tweak_order)]
        run = run_tool(
            "solve-field", args, workdir=workdir, timeout=2.0 * timeout + 10.0,
            executable=executable,
        )
        wcs_path = workdir / "field.wcs"
        if not (workdir / "field.solved").is_file() or not wcs_path.is_file():
            dirs = ", ".join(str(d) for d in _index_dirs(index_dir))
            scale_text = (
                f" (field {_arcmin(nx * scale_low / 60)}–{_arcmin(nx * scale_high / 60)} "
                "arcmin wide "
                f"at {scale_low:g}–{scale_high:g} arcsec/px)"
                if scale_low is not None and scale_high is not None else ""
            )
            raise AstrometryError(
                f"astrometry.net found no solution in {run.seconds:.0f} s with index files "
                f"in {dirs} covering scales {_coverage(files)}{scale_text}; install index "
                "files matching your field size (quads of 10–100% of the field width), "
                "check the scale bounds and hint, or give more time"
            )
        header = fits.getheader(wcs_path)
    header["NAXIS"] = 2  # the .wcs file is header-only; say which image it belongs to
    header["NAXIS1"] = nx
    header["NAXIS2"] = ny
    wcs = WCS(header, relax=True)
    wcs.pixel_shape = (nx, ny)
    return wcs


def presets_for_field(field_arcmin: float) -> list[int]:
    """build-astrometry-index presets whose quads span about 15–60% of ``field_arcmin``."""
    if not field_arcmin > 0:
        raise InputError(f"the field size must be positive, got {field_arcmin} arcmin")
    presets = [
        p for p in range(_MAX_PRESET + 1)
        if 0.15 * field_arcmin <= _PRESET_QUAD_ARCMIN[0] * math.sqrt(2.0) ** p
        <= 0.6 * field_arcmin
    ]
    if not presets:
        smallest = _PRESET_QUAD_ARCMIN[0] / 0.6
        raise InputError(
            f"a {field_arcmin:.3g} arcmin field is smaller than the finest index preset "
            f"supports (about {smallest:.2g} arcmin); solve a larger frame"
        )
    return presets


def build_index(
    ra: np.ndarray,
    dec: np.ndarray,
    mag: np.ndarray,
    *,
    out_dir: str | Path,
    field_arcmin: float | None = None,
    presets: Sequence[int] | None = None,
    name: str = "skyphot",
    unique_id: int = 9000,
    jitter_arcsec: float = 1.0,
    timeout: float = 300.0,
    executable: str | Path | None = None,
) -> list[Path]:
    """Build astrometry.net index files from a star list; returns their paths.

    ``ra``, ``dec`` in degrees, ``mag`` sorts the stars (brightest first). The quad sizes are
    the ``presets`` of build-astrometry-index (P makes quads of about 2·√2^P arcmin), by
    default those suiting a field ``field_arcmin`` wide. Files are written to ``out_dir`` as
    ``index-{name}-PP.fits`` with IDs ``unique_id + P``. ``jitter_arcsec``: the catalog's
    positional error.
    """
    find_tool("build-astrometry-index", executable)
    ra_arr = np.asarray(ra, dtype=np.float64)
    dec_arr = np.asarray(dec, dtype=np.float64)
    mag_arr = np.asarray(mag, dtype=np.float64)
    if not ra_arr.shape == dec_arr.shape == mag_arr.shape or ra_arr.ndim != 1:
        raise InputError("ra, dec and mag must be 1-D arrays of the same length")
    good = np.isfinite(ra_arr) & np.isfinite(dec_arr) & np.isfinite(mag_arr)
    if np.count_nonzero(good) < 10:
        raise CatalogError(
            f"only {np.count_nonzero(good)} usable stars to build an index from; need at "
            "least 10 (better hundreds) covering the field"
        )
    if presets is None:
        if field_arcmin is None:
            raise InputError("give field_arcmin (the field width) or explicit presets")
        presets = presets_for_field(field_arcmin)
    for p in presets:
        if not 0 <= p <= _MAX_PRESET:
            raise InputError(f"index presets run from 0 to {_MAX_PRESET}, got {p}")
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tool_workdir("build-astrometry-index") as workdir:
        Table({"RA": ra_arr[good], "DEC": dec_arr[good], "MAG": mag_arr[good]}).write(
            workdir / "stars.fits", format="fits"
        )
        for p in presets:
            out = target / f"index-{name}-{p:02d}.fits"
            run_tool(
                "build-astrometry-index",
                ["-i", "stars.fits", "-e", "1", "-o", out, "-P", str(p), "-S", "MAG",
                 "-A", "RA", "-D", "DEC", "-E", "-j", f"{jitter_arcsec:g}",
                 "-I", str(unique_id + p), "-t", workdir],
                workdir=workdir, timeout=timeout, executable=executable,
            )
            written.append(out)
    return written

