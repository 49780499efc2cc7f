"""HOTPANTS (Becker 2015; the Alard & Lupton 1998 method) image subtraction through its
command-line program, for comparison with ZOGY. Optional: ``hotpants`` on PATH (it is
packaged neither for Debian nor PyPI; build it from its source).

Both images must already be on one grid and on the science flux scale (the template
divided by the flux ratio), background subtracted. The sharper image is convolved with
HOTPANTS' fitted kernel (``-c t`` or ``-c i``) and the difference is normalised to the
science image (``-n i``), so it is in science units. Per-pixel noise goes in as sigma
images (``-ini``/``-tni``) and comes back as the difference's noise image (``-oni``).
Masked pixels are set below the lower valid-data threshold, which HOTPANTS excludes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from astropy.io import fits

from skyphot.adapters._process import find_tool, run_tool, tool_workdir
from skyphot.errors import ExternalToolError, InputError

# Masked pixels get this value; everything below half of it is invalid to HOTPANTS.
_BAD_VALUE = -1.0e9


@dataclass(frozen=True)
class HotpantsResult:
    """``difference`` (science units) and its per-pixel ``variance``; ``convolved``: which
    image HOTPANTS convolved ('template' or 'science'); ``seconds``: the program's run time;
    ``args``: the command line it ran with."""

    difference: np.ndarray
    variance: np.ndarray
    convolved: Literal["template", "science"]
    seconds: float
    args: tuple[str, ...]


def hotpants_arguments(
    *,
    convolve: Literal["template", "science"],
    kernel_half_width: int,
    stamp_half_width: int,
    science_range: tuple[float, float],
    template_range: tuple[float, float],
    kernel_order: int,
    background_order: int,
) -> list[str]:
    """The HOTPANTS command line for the file names this adapter writes (``sci.fits``,
    ``tmpl.fits`` and their ``*_noise.fits``; outputs ``diff.fits``, ``diff_noise.fits``)."""
    lo_i, hi_i = science_range
    lo_t, hi_t = template_range
    return [
        "-inim", "sci.fits", "-tmplim", "tmpl.fits", "-outim", "diff.fits",
        "-ini", "sci_noise.fits", "-tni", "tmpl_noise.fits", "-oni", "diff_noise.fits",
        "-il", f"{lo_i:.6g}", "-iu", f"{hi_i:.6g}", "-tl", f"{lo_t:.6g}", "-tu", f"{hi_t:.6g}",
        # The inputs are in ADU with their noise given: no gain/read-noise model on top.
        "-ig", "1", "-ir", "0", "-tg", "1", "-tr", "0",
        "-c", "t" if convolve == "template" else "i", "-n", "i",
        "-r", str(int(kernel_half_width)), "-rss", str(int(stamp_half_width)),
        "-ko", str(int(kernel_order)), "-bgo", str(int(background_order)),
        "-v", "0",
    ]


def _valid_range(data: np.ndarray, good: np.ndarray) -> tuple[float, float]:
    """Thresholds that keep every good pixel valid and mark the masked ones invalid."""
    values = data[good]
    hi = float(values.max()) if values.size else 1.0
    return 0.5 * _BAD_VALUE, hi + max(abs(hi), 1.0)


def subtract_hotpants(
    science: np.ndarray,
    template: np.ndarray,
    *,
    science_var: np.ndarray,
    template_var: np.ndarray,
    bad: np.ndarray,
    fwhm_science: float,
    fwhm_template: float,
    kernel_order: int = 2,
    background_order: int = 1,
    timeout: float = 300.0,
    executable: str | Path | None = None,
) -> HotpantsResult:
    """``science`` minus the HOTPANTS-matched ``template`` (one grid, science units, both
    background subtracted), with the variance of the difference.

    ``science_var``, ``template_var``: per-pixel variances (science units). ``bad``: pixels
    masked in either image. ``fwhm_*``: PSF FWHM of each, px: the sharper image is
    convolved, and the kernel size follows the broader one. Raises ``ToolNotFoundError``
    when ``hotpants`` is not installed, ``ExternalToolError`` when it fails or writes
    nothing usable.
    """
    find_tool("hotpants", executable)
    shape = science.shape
    for name, arr in (("template", template), ("science variance", science_var),
                      ("template variance", template_var), ("mask", bad)):
        if arr.shape != shape:
            raise InputError(f"HOTPANTS needs one grid: science {shape}, {name} {arr.shape}")
    if not (fwhm_science > 0 and fwhm_template > 0):
        raise InputError(
            f"PSF FWHMs must be positive, got science {fwhm_science}, template {fwhm_template}"
        )
    masked = np.asarray(bad, dtype=bool) | ~np.isfinite(science) | ~np.isfinite(template)
    good = ~masked
    sci = np.where(good, science, _BAD_VALUE).astype(np.float32)
    tmpl = np.where(good, template, _BAD_VALUE).astype(np.float32)
    sci_noise = np.sqrt(np.where(good, np.maximum(science_var, 0.0), 1.0)).astype(np.float32)
    tmpl_noise = np.sqrt(np.where(good, np.maximum(template_var, 0.0), 1.0)).astype(np.float32)
    convolve: Literal["template", "science"] = (
        "template" if fwhm_template <= fwhm_science else "science"
    )
    # The kernel must reach the broader PSF's wings: a Gaussian-basis kernel matching
    # sigma_t to sigma_n has width sqrt(sigma_n^2 - sigma_t^2) < the broader sigma.
    broad = max(fwhm_science, fwhm_template)
    half = max(math.ceil(1.5 * broad), 3)
    args = hotpants_arguments(
        convolve=convolve, kernel_half_width=half, stamp_half_width=2 * half + 1,
        science_range=_valid_range(sci, good), template_range=_valid_range(tmpl, good),
        kernel_order=kernel_order, background_order=background_order,
    )
    with tool_workdir("hotpants") as workdir:
        for name, arr in (("sci.fits", sci), ("tmpl.fits", tmpl),
                          ("sci_noise.fits", sci_noise), ("tmpl_noise.fits", tmpl_noise)):
            fits.PrimaryHDU(arr).writeto(workdir / name)
        run = run_tool("hotpants", args, workdir=workdir, timeout=timeout,
                       executable=executable)
        diff = _read_output(workdir / "diff.fits", shape, "difference image")
        noise = _read_output(workdir / "diff_noise.fits", shape, "noise image")
    finite = np.isfinite(diff) & np.isfinite(noise) & (noise > 0) & good
    if not finite.any():
        raise ExternalToolError(
            "hotpants wrote a difference image with no valid pixel; check the inputs' overlap "
            "and the valid-data thresholds"
        )
    variance = np.where(finite, noise.astype(np.float64) ** 2, np.nan)
    difference = np.where(finite, diff.astype(np.float64), np.nan)
    return HotpantsResult(
        difference=difference, variance=variance, convolved=convolve, seconds=run.seconds,
        args=run.args,
    )


def _read_output(path: Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not path.is_file():
        raise ExternalToolError(f"hotpants finished but wrote no {what} ({path.name})")
    try:
        with fits.open(path) as hdul:
            data = hdul[0].data
            if data is None:
                raise ExternalToolError(f"hotpants wrote an empty {what} ({path.name})")
            out = np.array(data, dtype=np.float64)
    except OSError as err:
        raise ExternalToolError(f"hotpants wrote an unreadable {what} ({path.name}): {err}") \
            from err
    if out.shape != shape:
        raise ExternalToolError(
            f"hotpants wrote a {what} of shape {out.shape}, expected {shape}"
        )
    return out
