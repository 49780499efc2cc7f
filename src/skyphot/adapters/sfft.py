"""SFFT (Hu et al. 2022) image subtraction through its Python package, for comparison with
ZOGY. Optional: ``pip install 'skyphot[sfft]'``.

The template, already aligned onto the science grid and scaled to science units, is
convolved with SFFT's fitted kernel (``ForceConv='REF'``) and subtracted: the difference is
in science units with the science PSF. SFFT needs the template to be the sharper image.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

from skyphot.errors import ExternalToolError, TemplateError, ToolNotFoundError


def subtract_sfft(
    science: np.ndarray,
    template: np.ndarray,
    *,
    exclude: np.ndarray,
    kernel_half_width: int,
    kernel_poly_order: int = 2,
    background_poly_order: int = 2,
    threads: int = 2,
) -> np.ndarray:
    """``science`` minus the SFFT-matched ``template`` (both background subtracted, on one
    grid, masked pixels set to 0). ``exclude`` (bool) marks pixels the kernel fit must not
    use: masked or uncovered pixels and the target. Raises ``ToolNotFoundError`` without
    the package."""
    try:
        from sfft.CustomizedPacket import Customized_Packet
    except ImportError as err:
        raise ToolNotFoundError(
            "subtraction method 'sfft' needs the sfft package: pip install 'skyphot[sfft]'"
        ) from err
    if science.shape != template.shape:
        raise TemplateError(
            f"SFFT needs one grid: science {science.shape}, template {template.shape}"
        )
    with tempfile.TemporaryDirectory(prefix="skyphot-sfft-") as tmp:
        ref_path, sci_path = Path(tmp) / "ref.fits", Path(tmp) / "sci.fits"
        mref_path, msci_path = Path(tmp) / "mref.fits", Path(tmp) / "msci.fits"
        fits.PrimaryHDU(data=np.asarray(template, dtype=np.float32)).writeto(ref_path)
        fits.PrimaryHDU(data=np.asarray(science, dtype=np.float32)).writeto(sci_path)
        # SFFT fits its kernel on the "masked" images: excluded pixels are zero in both.
        keep = ~np.asarray(exclude, dtype=bool)
        fits.PrimaryHDU(data=np.where(keep, template, 0.0).astype(np.float32)).writeto(mref_path)
        fits.PrimaryHDU(data=np.where(keep, science, 0.0).astype(np.float32)).writeto(msci_path)
        # SFFT prints progress on stdout, which belongs to the CLI's JSON: keep it apart.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                _, diff = Customized_Packet.CP(
                    FITS_REF=str(ref_path), FITS_SCI=str(sci_path), FITS_mREF=str(mref_path),
                    FITS_mSCI=str(msci_path), ForceConv="REF", GKerHW=int(kernel_half_width),
                    FITS_DIFF=None, KerPolyOrder=kernel_poly_order,
                    BGPolyOrder=background_poly_order, ConstPhotRatio=True,
                    BACKEND_4SUBTRACT="Numpy", NUM_CPU_THREADS_4SUBTRACT=threads,
                    VERBOSE_LEVEL=0,
                )
            except (ValueError, np.linalg.LinAlgError, MemoryError) as err:
                raise ExternalToolError(f"SFFT failed to match the template: {err}") from err
    # SFFT works on transposed (x, y) arrays.
    return np.asarray(diff, dtype=np.float64).T
