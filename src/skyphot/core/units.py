"""Magnitudes, fluxes and their errors."""

from __future__ import annotations

import math

import numpy as np

from skyphot.errors import ConfigError

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


MAG_SYSTEMS = ("AB", "Vega")
"""The magnitude systems a catalog band may be in."""

_TWOMASS_ZERO_MAG_JY = {"J": 1594.0, "H": 1024.0, "K": 666.7}

VEGA_TO_AB: dict[str, float] = {
    # Johnson-Cousins: Blanton & Roweis 2007, AJ 133, 734, Table 1.
    "U": 0.79, "B": -0.09, "V": 0.02, "R": 0.21, "I": 0.45,
    # 2MASS: zero-magnitude flux densities of Cohen, Wheaton & Megeath 2003, AJ 126, 1090
    # (J 1594, H 1024, Ks 666.7 Jy): m_AB - m_Vega = 2.5 log10(3631 Jy / F0).
    **{b: 2.5 * math.log10(3631.0 / f0) for b, f0 in _TWOMASS_ZERO_MAG_JY.items()},
    # Gaia DR2 (as carried by ATLAS-RefCat2): AB minus Vega zero points of Evans et al.
    # 2018, A&A 616, A4 (G 25.7934-25.6884, BP 25.3806-25.3514, RP 25.1161-24.7619).
    "G": 0.1050, "BP": 0.0292, "RP": 0.3542,
}
"""m_AB - m_Vega per catalog band (mag): a Vega magnitude plus this is the AB magnitude."""


def ab_offset(band: str, magsys: str) -> float:
    """m_AB - m for a magnitude of ``band`` in system ``magsys`` (0 for AB).

    Raises ``ConfigError`` for an unknown system or a Vega band with no tabulated offset.
    """
    if magsys == "AB":
        return 0.0
    if magsys != "Vega":
        raise ConfigError(
            f"unknown magnitude system {magsys!r} for band {band!r}; use one of "
            f"{', '.join(MAG_SYSTEMS)}"
        )
    if band not in VEGA_TO_AB:
        raise ConfigError(
            f"band {band!r} is labelled Vega but no Vega-AB offset is known for it (known: "
            f"{', '.join(VEGA_TO_AB)}), so its flux in µJy cannot be computed; label the "
            "catalog AB if its magnitudes are AB, or calibrate to a band with a known offset"
        )
    return VEGA_TO_AB[band]


def adu_to_ujy_scale(zero_point: float, ab_offset: float = 0.0) -> float:
    """Factor turning ADU into µJy for a frame whose mag = -2.5 log10(ADU) + zero_point.

    ``ab_offset`` is m_AB - m of the zero point's system (0 for AB; ``ab_offset()``).
    """
    return float(10.0 ** (-0.4 * (zero_point + ab_offset - AB_UJY_ZERO_POINT)))


def ujy_to_mag(flux_ujy: float, ab_offset: float = 0.0) -> float:
    """Magnitude of a flux in µJy (must be positive), in the system whose m_AB - m is
    ``ab_offset`` (0: AB)."""
    if not flux_ujy > 0:
        raise ValueError(f"flux must be positive to convert to a magnitude, got {flux_ujy}")
    return AB_UJY_ZERO_POINT - 2.5 * math.log10(flux_ujy) - ab_offset


def mag_to_ujy(mag: float, ab_offset: float = 0.0) -> float:
    """µJy of a magnitude in the system whose m_AB - m is ``ab_offset`` (0: AB):
    10^(-0.4 (mag + ab_offset - 23.9))."""
    return float(10.0 ** (-0.4 * (mag + ab_offset - AB_UJY_ZERO_POINT)))
