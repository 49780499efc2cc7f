"""A frame's systematic bias, separated from its noise by repeated noise draws.

One measurement's error is the frame's bias plus that frame's noise, so "within 1 sigma on
every frame" cannot be read from single measurements: honest errors leave a third of them
outside. Measuring the same scene (``simulate_frame(..., noise_seed=k)``) under n noise
draws and averaging shrinks the noise by sqrt(n) and leaves the bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# 2.5 / ln 10: magnitude error per unit relative flux error
_MAG_PER_REL_FLUX = 2.5 / math.log(10.0)


@dataclass(frozen=True)
class SceneBias:
    """The bias of one scene's measurement over its noise draws."""

    draws: int
    bias_flux: float
    """mean(measured - true) flux, in the units given."""
    bias_flux_stderr: float
    bias_mag: float
    """-2.5 log10(mean measured flux / true flux); NaN when the mean flux is not positive."""
    bias_mag_stderr: float
    sigma_mag: float
    """The magnitude error of one measurement: from the median reported flux error."""
    pull_std: float
    """Standard deviation over the draws of (measured - true) / reported error."""

    @property
    def within_sigma(self) -> bool:
        """|bias| <= sigma + 0.01 mag (the accuracy target for one frame)."""
        return abs(self.bias_mag) <= self.sigma_mag + 0.01


def scene_bias(
    flux_errors: Sequence[float], flux_sigmas: Sequence[float], *, true_flux: float
) -> SceneBias:
    """Summarise one scene: ``flux_errors`` = measured - true per draw, ``flux_sigmas`` the
    reported flux errors, all in the units of ``true_flux`` (> 0); at least two draws."""
    errs = np.asarray(flux_errors, dtype=float)
    sig = np.asarray(flux_sigmas, dtype=float)
    if errs.size < 2 or errs.shape != sig.shape:
        raise ValueError("scene_bias needs at least two draws, with one error per draw.")
    if not true_flux > 0:
        raise ValueError(f"scene_bias: true_flux must be positive, not {true_flux}.")
    mean = float(errs.mean())
    stderr = float(errs.std(ddof=1)) / math.sqrt(errs.size)
    ratio = (true_flux + mean) / true_flux
    return SceneBias(
        draws=int(errs.size),
        bias_flux=mean,
        bias_flux_stderr=stderr,
        bias_mag=-2.5 * math.log10(ratio) if ratio > 0 else math.nan,
        bias_mag_stderr=_MAG_PER_REL_FLUX * stderr / true_flux,
        sigma_mag=_MAG_PER_REL_FLUX * float(np.median(sig)) / true_flux,
        pull_std=float((errs / sig).std(ddof=1)),
    )
