"""Point-spread-function models.

``PSFModel`` is the protocol every PSF source satisfies (the built-in Moffat fit, and
later a PSFEx adapter): it renders the pixel-integrated, unit-sum PSF at any position.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class PSFModel(Protocol):
    """A PSF that may vary across the frame."""

    def fwhm_at(self, x: float, y: float) -> float:
        """FWHM in pixels at pixel position (x, y)."""
        ...

    def render(self, x: float, y: float, size: int) -> tuple[np.ndarray, int, int]:
        """Pixel-integrated PSF centred at (x, y), normalised to unit total flux.

        Returns ``(stamp, x0, y0)``: a ``size``x``size`` array and the frame pixel of its
        [0, 0] element, so ``stamp[j, i]`` is the PSF at frame pixel ``(x0 + i, y0 + j)``.
        """
        ...
