"""Magnitude <-> µJy conversions for AB and Vega bands."""

from __future__ import annotations

import math

import pytest

from skyphot.core.units import (
    VEGA_TO_AB,
    ab_offset,
    adu_to_ujy_scale,
    mag_to_ujy,
    ujy_to_mag,
)
from skyphot.errors import ConfigError


def test_ab_magnitude_23_9_is_one_microjansky() -> None:
    assert mag_to_ujy(23.9) == pytest.approx(1.0, rel=1e-12)
    assert mag_to_ujy(16.4) == pytest.approx(1000.0, rel=1e-12)
    assert ujy_to_mag(1000.0) == pytest.approx(16.4, abs=1e-12)


@pytest.mark.parametrize("band", sorted(VEGA_TO_AB))
def test_vega_band_flux_uses_the_bands_offset(band: str) -> None:
    offset = ab_offset(band, "Vega")
    mag = 17.3
    expected = 10 ** (-0.4 * (mag + offset - 23.9))
    assert mag_to_ujy(mag, offset) == pytest.approx(expected, rel=1e-12)
    assert ujy_to_mag(expected, offset) == pytest.approx(mag, abs=1e-12)
    # a frame whose zero point is in this Vega band: 1 ADU is a star of magnitude ZP
    assert adu_to_ujy_scale(25.0, offset) == pytest.approx(mag_to_ujy(25.0, offset), rel=1e-12)


def test_offsets_match_the_published_zero_points() -> None:
    # 2MASS: F0 = 1594 / 1024 / 666.7 Jy (Cohen et al. 2003) against 3631 Jy for AB
    assert ab_offset("J", "Vega") == pytest.approx(2.5 * math.log10(3631 / 1594), abs=1e-9)
    assert ab_offset("K", "Vega") == pytest.approx(1.84, abs=0.005)
    # Johnson V is within 0.02 mag of AB; Cousins I is 0.45 mag fainter in AB
    assert ab_offset("V", "Vega") == pytest.approx(0.02)
    assert ab_offset("I", "Vega") == pytest.approx(0.45)
    assert ab_offset("r", "AB") == 0.0


def test_vega_band_without_an_offset_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"band 'BT' is labelled Vega but no Vega-AB offset"):
        ab_offset("BT", "Vega")


def test_unknown_system_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown magnitude system 'ST' for band 'r'"):
        ab_offset("r", "ST")
