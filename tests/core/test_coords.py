"""Coordinates as people type them (analytic values)."""

from __future__ import annotations

import pytest

from skyphot.core.coords import parse_dec, parse_ra


@pytest.mark.parametrize("text", ["10:00:31.365", "10 00 31.365", "10h00m31.365s",
                                  "10h 00m 31.365s", " 10:00:31.365 "])
def test_ra_sexagesimal_hours(text: str) -> None:
    assert parse_ra(text) == pytest.approx((10 + 0 / 60 + 31.365 / 3600) * 15, abs=1e-12)


@pytest.mark.parametrize(("text", "value"), [
    ("+02:09:42.92", 2 + 9 / 60 + 42.92 / 3600), ("-02 09 42.92", -(2 + 9 / 60 + 42.92 / 3600)),
    ("+02d09m42.92s", 2 + 9 / 60 + 42.92 / 3600), ("-00:30:00", -0.5), ("2.5", 2.5),
    ("-89.9", -89.9),
])
def test_dec_forms(text: str, value: float) -> None:
    assert parse_dec(text) == pytest.approx(value, abs=1e-12)


def test_decimal_ra_is_degrees() -> None:
    assert parse_ra("150.1306875") == 150.1306875


@pytest.mark.parametrize(("text", "message"), [
    ("24:00:00", "RA '24:00:00' must be 0h to 24h"),
    ("-01:00:00", "RA '-01:00:00' must be 0h to 24h"),
    ("10:60:00", "'10:60:00': minutes and seconds must be below 60"),
    ("360", "RA '360' must be between 0 and 360 degrees"),
    ("ten", "RA 'ten' is neither degrees (150.1307) nor hours (10:00:31.37 or 10h00m31.37s)"),
])
def test_bad_ra_is_explained(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_ra(text)
    assert str(err.value) == message


@pytest.mark.parametrize(("text", "message"), [
    ("+90:00:01", "Dec '+90:00:01' must be between -90 and +90 degrees"),
    ("north", "Dec 'north' is neither degrees (2.1619) nor sexagesimal (+02:09:42.9 or "
              "+02d09m42.9s)"),
])
def test_bad_dec_is_explained(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_dec(text)
    assert str(err.value) == message
