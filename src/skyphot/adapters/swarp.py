"""Resampling onto another pixel grid with SWarp (Debian package ``swarp``).

A thin wrapper: one image in, the same sky on the target grid out. Used for stacking and
for putting a template on a science frame's grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from skyphot.adapters._process import find_tool, run_tool, tool_workdir, write_config
from skyphot.errors import ExternalToolError, InputError, WCSError

Resampling = Literal["NEAREST", "BILINEAR", "LANCZOS2", "LANCZOS3", "LANCZOS4"]


def _celestial_header(wcs: WCS, what: str) -> fits.Header:
    if not wcs.has_celestial or wcs.naxis != 2:
        raise WCSError(f"the {what} WCS must be a 2-axis celestial WCS to resample with SWarp")
    return wcs.to_header(relax=True)


def resample(
    data: np.ndarray,
    wcs: WCS,
    *,
    target_wcs: WCS,
    shape: tuple[int, int],
    mask: np.ndarray | None = None,
    resampling: Resampling = "LANCZOS3",
    conserve_flux: bool = True,
    timeout: float = 120.0,
    executable: str | Path | None = None,
) -> tuple[np.ndarray, WCS]:
    """Resample ``data`` (with ``wcs``) onto ``target_wcs`` with ``shape`` (ny, nx).

    ``mask`` (True = bad) pixels do not contribute. With ``conserve_flux`` the values are
    scaled by the ratio of pixel areas, so a star keeps its total flux (ADU); otherwise
    surface brightness per pixel is kept. Output pixels no input pixel reaches are NaN.
    Returns the float32 array and the WCS SWarp wrote (equal to ``target_wcs``).
    """
    find_tool("swarp", executable)
    image = np.asarray(data, dtype=np.float32)
    if image.ndim != 2:
        raise InputError(f"SWarp needs a 2-D image, got an array of shape {image.shape}")
    ny, nx = shape
    if ny < 1 or nx < 1:
        raise InputError(f"the target shape must be positive, got {shape}")
    header = _celestial_header(wcs, "input")
    target = fits.Header()
    target["NAXIS"] = 2
    target["NAXIS1"] = int(nx)
    target["NAXIS2"] = int(ny)
    target.update(_celestial_header(target_wcs, "target"))
    weight = np.isfinite(image)
    if mask is not None:
        bad = np.asarray(mask, dtype=bool)
        if bad.shape != image.shape:
            raise InputError(f"mask shape {bad.shape} differs from image shape {image.shape}")
        weight &= ~bad
    config: dict[str, object] = {
        "IMAGEOUT_NAME": "resampled.fits",
        "WEIGHTOUT_NAME": "resampled.weight.fits",
        "HEADER_SUFFIX": ".head",
        "WEIGHT_TYPE": "MAP_WEIGHT",
        "WEIGHT_IMAGE": "input.weight.fits",
        "RESCALE_WEIGHTS": False,
        "WEIGHT_THRESH": 0.0,
        "COMBINE": True,
        "COMBINE_TYPE": "WEIGHTED",
        "BLANK_BADPIXELS": True,
        "CELESTIAL_TYPE": "NATIVE",
        "RESAMPLE": True,
        "RESAMPLE_DIR": ".",
        "RESAMPLING_TYPE": resampling,
        "OVERSAMPLING": 0,
        "INTERPOLATE": False,
        "FSCALASTRO_TYPE": "FIXED" if conserve_flux else "NONE",
        "FSCALE_KEYWORD": "SKYPHOT_NOKEY",
        "FSCALE_DEFAULT": 1.0,
        "GAIN_KEYWORD": "SKYPHOT_NOKEY",
        "GAIN_DEFAULT": 0.0,
        "SATLEV_KEYWORD": "SKYPHOT_NOKEY",
        "SUBTRACT_BACK": False,
        "VMEM_DIR": ".",
        "DELETE_TMPFILES": True,
        "COPY_KEYWORDS": "SKYPHOT_NOKEY",
        "WRITE_FILEINFO": False,
        "WRITE_XML": False,
        "VERBOSE_TYPE": "NORMAL",
        "NTHREADS": 1,
    }
    with tool_workdir("swarp") as workdir:
        fits.PrimaryHDU(np.where(weight, image, np.float32(0.0)), header=header).writeto(
            workdir / "input.fits"
        )
        fits.PrimaryHDU(weight.astype(np.float32), header=header).writeto(
            workdir / "input.weight.fits"
        )
        (workdir / "resampled.head").write_text(target.tostring(sep="\n", endcard=True))
        write_config(workdir / "swarp.conf", config)
        run_tool(
            "swarp", ["input.fits", "-c", "swarp.conf"],
            workdir=workdir, timeout=timeout, executable=executable,
        )
        out_path = workdir / "resampled.fits"
        if not out_path.is_file():
            raise ExternalToolError("SWarp finished but wrote no resampled image")
        with fits.open(out_path) as hdul:
            out = np.array(hdul[0].data, dtype=np.float32)
            out_header = hdul[0].header.copy()
        with fits.open(workdir / "resampled.weight.fits") as hdul:
            out_weight = np.array(hdul[0].data, dtype=np.float32)
    if out.shape != (ny, nx):
        raise ExternalToolError(
            f"SWarp wrote an image of shape {out.shape}, expected {(ny, nx)}"
        )
    out[~(out_weight > 0)] = np.nan
    out_wcs = WCS(out_header, relax=True)
    return out, out_wcs
