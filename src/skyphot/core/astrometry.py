"""Astrometric refinement: match detections to a reference catalog and fit TAN + SIP."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS


@dataclass(frozen=True)
class AstrometricSolution:
    """A fitted WCS and how well it fits.

    ``matched_source`` / ``matched_catalog`` are integer indices into the detection list and
    the catalog for the pairs used in the final fit.
    """

    wcs: WCS
    n_matched: int
    rms_arcsec: float
    matched_fraction: float
    matched_source: np.ndarray
    matched_catalog: np.ndarray
    residual_x_arcsec: np.ndarray  # per used pair, (catalog - fit) along RA*cos(dec)
    residual_y_arcsec: np.ndarray  # per used pair, along Dec
    method: str  # "refine", "header", "scamp", "astrometry.net", ...
