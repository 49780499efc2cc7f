"""Robust statistics shared by the numerical modules."""

from __future__ import annotations

import numpy as np

MAD_TO_SIGMA = 1.482602218505602
"""Gaussian sigma per median absolute deviation: 1 / Phi^-1(3/4)."""


def mad_sigma(values: np.ndarray) -> float:
    """Robust standard deviation of ``values``: ``MAD_TO_SIGMA`` times their MAD (NaN if empty)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))
