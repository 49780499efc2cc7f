"""Magnitudes, fluxes and their errors."""

from __future__ import annotations

import math

import numpy as np

AB_UJY_ZERO_POINT = 23.9
"""AB magnitude of a 1 µJy source: m_AB = -2.5 log10(f / 3631 Jy) = 23.9 - 2.5 log10(f / µJy)."""

MAG_ERR_FACTOR = 2.5 / math.log(10.0)
"""d(mag)/d(ln flux): a fractional flux error e gives a magnitude error of ~1.0857 e."""


def instrumental_mag(flux: np.ndarray) -> np.ndarray:
    """-2.5 log10(flux) for positive fluxes, NaN elsewhere (ADU in, mag out)."""
    flux = np.asarray(flux, dtype=float)
    out = np.full(flux.shape, np.nan)
    positive = flux > 0
    out[positive] = -2.5 * np.log10(flux[positive])
    return out


def mag_error(flux: np.ndarray, fluxerr: np.ndarray) -> np.ndarray:
    """Magnitude error from a flux and its error (first order), NaN for non-positive flux."""
    flux = np.asarray(flux, dtype=float)
    fluxerr = np.asarray(fluxerr, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, MAG_ERR_FACTOR * fluxerr / flux, np.nan)


def adu_to_ujy_scale(zero_point: float) -> float:
    """Factor turning ADU into µJy for a frame whose mag = -2.5 log10(ADU) + zero_point (AB)."""
    return float(10.0 ** (-0.4 * (zero_point - AB_UJY_ZERO_POINT)))


def ujy_to_mag(flux_ujy: float) -> float:
    """AB magnitude of a flux in µJy (must be positive)."""
    if not flux_ujy > 0:
        raise ValueError(f"flux must be positive to convert to a magnitude, got {flux_ujy}")
    return AB_UJY_ZERO_POINT - 2.5 * math.log10(flux_ujy)


def mag_to_ujy(mag: float) -> float:
    """µJy of an AB magnitude."""
    return float(10.0 ** (-0.4 * (mag - AB_UJY_ZERO_POINT)))
