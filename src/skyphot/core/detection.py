"""Background estimation and source detection (SEP).

Data containers are defined here; the functions are filled in below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BackgroundModel:
    """Smooth sky level and its per-pixel noise (ADU), both of the frame's shape."""

    level: np.ndarray
    rms: np.ndarray
    global_level: float
    global_rms: float


@dataclass(frozen=True)
class SourceList:
    """Detected sources; every attribute is an array of the same length.

    x, y: 0-based pixel centroids. flux: detection-stage flux (ADU, background-subtracted).
    a, b, theta: second-moment ellipse (pixels, radians). flag: SEP-style bit flags.
    peak: peak pixel value above background. npix: pixels above threshold.
    """

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    fluxerr: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    flag: np.ndarray
    peak: np.ndarray
    npix: np.ndarray

    def __len__(self) -> int:
        return int(self.x.size)

    def select(self, index: np.ndarray) -> SourceList:
        """A new list with the rows picked by a boolean mask or integer index."""
        return SourceList(
            x=self.x[index], y=self.y[index], flux=self.flux[index],
            fluxerr=self.fluxerr[index], a=self.a[index], b=self.b[index],
            theta=self.theta[index], flag=self.flag[index], peak=self.peak[index],
            npix=self.npix[index],
        )
