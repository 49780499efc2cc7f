"""A PSFEx model built by STDPipe, seen through skyphot's ``PSFModel`` protocol.

STDPipe keeps the PSFEx model as a dict (``width``, ``height``, ``sampling``, ``degree``,
``x0``/``sx``/``y0``/``sy`` and the basis ``data``). Its ``get_psf_stamp`` evaluates the model
at an image position, resamples it onto image pixels with the sub-pixel shift applied and
normalises the stamp to unit sum; STDPipe's own photometry measures fluxes with exactly that
stamp. ``StdpipePSF.render`` returns the same stamp, so "total flux" for this engine means
the flux inside the model's footprint (about 6-7 FWHM across for PSFEx's default 25-sample
model), for the calibration stars and the target alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from skyphot.errors import DetectionError, InputError

# A pixel is a box of unit width: it adds 1/12 px^2 of variance per axis, i.e.
# 8 ln 2 / 12 px^2 to a Gaussian FWHM^2. Removing it makes the FWHM comparable to the
# built-in Moffat fit, which reports the FWHM before pixel integration.
_PIXEL_FWHM2 = 8.0 * np.log(2.0) / 12.0
# Step (image pixels) of the fine grid the half-maximum area is measured on.
_FINE_STEP = 0.1


def _stdpipe_psf_module() -> Any:
    # Imported here: skyphot.adapters.stdpipe imports this module to build StdpipePSF.
    from skyphot.adapters.stdpipe import load_stdpipe

    return load_stdpipe().psf


@dataclass(frozen=True)
class StdpipePSF:
    """A PSFEx model (STDPipe's dict) satisfying ``skyphot.core.psf.PSFModel``.

    ``model`` is the dict returned by ``stdpipe.psf.run_psfex``; ``shape`` (ny, nx) is the
    frame it was fitted on. Positions are 0-based pixels, as STDPipe's are.
    """

    model: dict[str, Any] = field(compare=False, repr=False)
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        required = ("width", "height", "sampling", "degree", "x0", "sx", "y0", "sy", "data")
        missing = [key for key in required if key not in self.model]
        if missing:
            raise InputError(
                f"not a PSFEx model from STDPipe: keys {', '.join(missing)} are missing"
            )
        if not (np.isfinite(self.model["sampling"]) and self.model["sampling"] > 0):
            raise DetectionError(
                f"the PSFEx model has an invalid sampling {self.model['sampling']!r}; PSFEx "
                "found no usable stars — use a deeper frame or the built-in engine"
            )

    @property
    def sampling(self) -> float:
        """Image pixels per model sample."""
        return float(self.model["sampling"])

    def stamp(self, x: float, y: float) -> np.ndarray:
        """STDPipe's unit-sum PSF stamp at (x, y), centred on pixel (round(x), round(y))."""
        stamp = _stdpipe_psf_module().get_psf_stamp(self.model, x=x, y=y, normalize=True)
        return np.asarray(stamp, dtype=np.float64)

    def render(self, x: float, y: float, size: int) -> tuple[np.ndarray, int, int]:
        """Pixel-integrated PSF centred at 0-based (x, y), on a ``size`` x ``size`` stamp.

        Returns ``(stamp, x0, y0)`` with ``stamp[j, i]`` the flux fraction at frame pixel
        ``(x0 + i, y0 + j)``. Fractions sum to 1 over the model's footprint (less when
        ``size`` cuts it).
        """
        if size < 1:
            raise InputError(f"PSF stamp size must be at least 1 pixel, got {size}")
        # STDPipe centres its stamp on numpy-rounded coordinates; use the same rounding so
        # both grids line up exactly.
        ix, iy = int(np.round(x)), int(np.round(y))
        model = self.stamp(x, y)
        out = np.zeros((size, size))
        x0, y0 = ix - size // 2, iy - size // 2
        mx0, my0 = ix - model.shape[1] // 2, iy - model.shape[0] // 2
        # Overlap of the two stamps in frame pixels.
        lo_x, hi_x = max(x0, mx0), min(x0 + size, mx0 + model.shape[1])
        lo_y, hi_y = max(y0, my0), min(y0 + size, my0 + model.shape[0])
        if hi_x > lo_x and hi_y > lo_y:
            out[lo_y - y0 : hi_y - y0, lo_x - x0 : hi_x - x0] = model[
                lo_y - my0 : hi_y - my0, lo_x - mx0 : hi_x - mx0
            ]
        return out, x0, y0

    def fwhm_at(self, x: float, y: float) -> float:
        """FWHM (px) at 0-based (x, y): the half-maximum area of the model, circularised.

        The pixel's own width is removed in quadrature so the value compares with the
        built-in Moffat FWHM.
        """
        super_stamp = np.asarray(
            _stdpipe_psf_module().get_supersampled_psf_stamp(self.model, x=x, y=y),
            dtype=np.float64,
        )
        step = self.sampling
        ny, nx = super_stamp.shape
        half_extent = 0.5 * step * (min(nx, ny) - 1)
        offsets = np.arange(-half_extent, half_extent + 1e-9, _FINE_STEP)
        gy, gx = np.meshgrid((ny - 1) / 2.0 + offsets / step, (nx - 1) / 2.0 + offsets / step,
                             indexing="ij")
        fine = ndimage.map_coordinates(super_stamp, [gy, gx], order=3, mode="constant")
        peak = float(fine.max())
        if not (np.isfinite(peak) and peak > 0):
            raise DetectionError(
                f"the PSFEx model renders as empty at ({x:.1f}, {y:.1f}); the position may "
                "be far outside the area the model was fitted on"
            )
        area = np.count_nonzero(fine >= 0.5 * peak) * _FINE_STEP**2
        fwhm_pix2 = 4.0 * area / np.pi
        return float(np.sqrt(max(fwhm_pix2 - _PIXEL_FWHM2, 0.0)))

    def enclosed_fraction(self, x: float, y: float, radius: float) -> float:
        """STDPipe's fraction of the stamp's flux inside ``radius`` px of (x, y)."""
        value = _stdpipe_psf_module().enclosed_psf_fraction(self.model, x=x, y=y, radius=radius)
        return float(value)
