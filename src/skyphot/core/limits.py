"""Signal-to-noise, detection decision and limiting flux.

The limit is set by the background-only error (sky, read noise, local-background
uncertainty), never by the target's own photon noise: a source exactly at the limit is then
detected at ``nsigma`` regardless of what else is at the position.
"""

from __future__ import annotations

from typing import overload

import numpy as np

from skyphot.errors import ConfigError, PhotometryError


@overload
def signal_to_noise(flux: float, fluxerr: float) -> float: ...
@overload
def signal_to_noise(flux: np.ndarray, fluxerr: np.ndarray) -> np.ndarray: ...


def signal_to_noise(
    flux: float | np.ndarray, fluxerr: float | np.ndarray
) -> float | np.ndarray:
    """Flux over its error (any consistent units); NaN where the error is not positive
    and finite or the flux is not finite. Returns a float for scalar input."""
    f = np.asarray(flux, dtype=float)
    e = np.asarray(fluxerr, dtype=float)
    ok = np.isfinite(f) & np.isfinite(e) & (e > 0)
    snr = np.where(ok, f / np.where(ok, e, 1.0), np.nan)
    if snr.ndim == 0:
        return float(snr)
    return snr


def is_detected(flux: float, fluxerr: float, *, nsigma: float) -> bool:
    """True when the S/N reaches ``nsigma``; False for an undefined S/N (NaN flux/error)."""
    _check_nsigma(nsigma)
    snr = signal_to_noise(float(flux), float(fluxerr))
    return bool(np.isfinite(snr) and snr >= nsigma)


def limiting_flux(fluxerr_background: float, *, nsigma: float) -> float:
    """The ``nsigma``-sigma limiting flux, in the units of the background-only flux error."""
    _check_nsigma(nsigma)
    err = float(fluxerr_background)
    if not (np.isfinite(err) and err > 0):
        raise PhotometryError(
            f"the background flux error is {err}; a limit needs a positive, finite error — "
            "the position may be fully masked or off the frame"
        )
    return nsigma * err


def _check_nsigma(nsigma: float) -> None:
    if not (np.isfinite(nsigma) and nsigma > 0):
        raise ConfigError(f"nsigma must be a positive number, got {nsigma}")
