"""Filter name -> catalog band and colour."""

from __future__ import annotations

import pytest

from skyphot.catalogs.columns import BANDS
from skyphot.catalogs.filters import UNFILTERED_BAND, resolve_filter
from skyphot.errors import UnknownFilterError


@pytest.mark.parametrize(
    ("name", "band", "color"),
    [
        ("r", "r", ("g", "r")), ("rp", "r", ("g", "r")), ("r'", "r", ("g", "r")),
        ("R'", "r", ("g", "r")), ("sdssr", "r", ("g", "r")), ("SDSS-r", "r", ("g", "r")),
        ("SDSS_R", "r", ("g", "r")), ("ztfr", "r", ("g", "r")), ("ZTF_r", "r", ("g", "r")),
        ("sloan g", "g", ("g", "r")), ("g", "g", ("g", "r")), ("gp", "g", ("g", "r")),
        ("i", "i", ("r", "i")), ("ip", "i", ("r", "i")), ("z", "z", ("r", "i")),
        ("PS1-z", "z", ("r", "i")), ("y", "y", ("i", "z")), ("u", "u", ("g", "r")),
        ("R", "R", ("V", "I")), ("Rc", "R", ("V", "I")), ("R_c", "R", ("V", "I")),
        ("I", "I", ("V", "I")), ("Ic", "I", ("V", "I")), ("V", "V", ("B", "V")),
        ("v", "V", ("B", "V")), ("Johnson V", "V", ("B", "V")), ("Bessell-R", "R", ("V", "I")),
        ("B", "B", ("B", "V")), ("U", "U", ("B", "V")), ("J", "J", ("J", "K")),
        ("Ks", "K", ("J", "K")), ("G", "G", ("BP", "RP")), ("Gaia-RP", "RP", ("BP", "RP")),
        ("VT", "VT", ("BT", "VT")),
    ],
)
def test_known_names(name: str, band: str, color: tuple[str, str]) -> None:
    info = resolve_filter(name)
    assert info.band == band
    assert info.color_bands == color


def test_systems() -> None:
    assert resolve_filter("r").system == "SDSS"
    assert resolve_filter("R").system == "Johnson-Cousins"
    assert resolve_filter("K").system == "2MASS"
    assert resolve_filter("BP").system == "Gaia"


@pytest.mark.parametrize(
    "name", ["clear", "Clear", "C", "L", "lum", "Luminance", "none", "OPEN", "unfiltered"]
)
def test_unfiltered_goes_to_r_and_says_so(name: str) -> None:
    info = resolve_filter(name)
    assert info.band == UNFILTERED_BAND == "r"
    assert info.color_bands == ("g", "r")
    assert info.system == "unfiltered"
    assert "calibrated to Sloan/PS1 r" in info.note


def test_every_catalog_band_name_resolves_to_itself() -> None:
    # the pipeline asks resolve_filter(band) for a band's default colour
    for band in BANDS:
        assert resolve_filter(band).band == band


@pytest.mark.parametrize("name", ["Halpha", "H-alpha", "Ha", "OIII", "SII"])
def test_narrow_band_is_unknown(name: str) -> None:
    with pytest.raises(UnknownFilterError, match="narrow-band filter") as info:
        resolve_filter(name)
    assert f"overrides={{{name!r}: 'r'}}" in str(info.value)


@pytest.mark.parametrize("name", ["foo", "", "'", "X7"])
def test_unknown_lists_known_names(name: str) -> None:
    with pytest.raises(UnknownFilterError) as info:
        resolve_filter(name)
    message = str(info.value)
    assert f"Cannot calibrate filter {name!r}: the name is not known" in message
    assert "Known filter names: u g r i z y" in message
    assert "calibration.band (or --band)" in message


def test_overrides_win() -> None:
    info = resolve_filter("H-alpha", overrides={"Halpha": "r"})
    assert (info.band, info.color_bands) == ("r", ("g", "r"))
    assert "given for filter" in info.note
    # an override also replaces a known meaning
    assert resolve_filter("R", overrides={"R": "r"}).band == "r"
    # overrides for other names leave the default rules alone
    assert resolve_filter("V", overrides={"Halpha": "r"}).band == "V"


def test_exact_override_beats_case_insensitive_one() -> None:
    overrides = {"R": "R", "r": "r"}
    assert resolve_filter("r", overrides=overrides).band == "r"
    assert resolve_filter("R", overrides=overrides).band == "R"
    assert resolve_filter("SDSS-R", overrides={"sdss r": "i"}).band == "i"
