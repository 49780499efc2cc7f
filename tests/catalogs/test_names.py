"""Name comparison and Sesame's answer format (the resolvers' plumbing; the API tests in
tests/web/test_web_names.py cover each path end to end)."""

from __future__ import annotations

import pytest

from skyphot.catalogs.names import (
    KnownName,
    NameServiceError,
    UnknownNameError,
    lookup_known,
    normalize_name,
    parse_sesame,
    resolve_name,
)
from skyphot.testing.sesame import FakeSesame, serve_sesame, sesame_answer


@pytest.mark.parametrize("spelling", ["SN 2023ixf", "sn2023ixf", "2023ixf", "AT 2023IXF",
                                      "AT_2023ixf", " SN  2023 ixf "])
def test_tns_names_compare_without_prefix_case_and_spaces(spelling: str) -> None:
    assert normalize_name(spelling) == "2023ixf"


@pytest.mark.parametrize(("one", "other"), [("SN 2023ixf", "SN 2023ixg"), ("M31", "M3 1x"),
                                            ("SN 1006", "1006"), ("ZTF23aaklqou", "23aaklqou")])
def test_different_names_stay_different(one: str, other: str) -> None:
    assert normalize_name(one) != normalize_name(other)


def test_old_designations_and_other_catalog_names() -> None:
    assert normalize_name("SN 1987A") == normalize_name("1987a")
    assert normalize_name("NGC 224") == normalize_name("ngc224") == "ngc224"


def test_sesame_answers() -> None:
    assert parse_sesame(sesame_answer("M31", (10.684708, 41.26875))) == (
        10.684708, 41.26875, "Simbad")
    assert parse_sesame(sesame_answer("X", (1.0, -2.0), database="NED")) == (1.0, -2.0, "NED")
    assert parse_sesame(sesame_answer("nothing", None)) is None
    with pytest.raises(NameServiceError, match="answered something else than a Sesame answer"):
        parse_sesame("<html>gateway timeout</html>")


def test_known_names_match_any_of_their_labels() -> None:
    known = [KnownName(("ZTF23aaklqou", "SN 2023ixf", ""), 210.9, 54.3, "your source 'x'")]
    found = lookup_known("at2023ixf", known)
    assert found is not None and (found.origin, found.ra) == ("source", 210.9)
    assert lookup_known("", known) is None  # an empty label (no SkyPortal id) never matches
    assert lookup_known("SN 2023ixg", known) is None


def test_the_caller_may_let_go_of_its_resources_only_before_going_online() -> None:
    known = [KnownName(("SN 2023ixf",), 210.9, 54.3, "your source 'x'")]
    calls: list[str] = []
    with serve_sesame(FakeSesame(names={"M31": (10.684708, 41.26875)})) as sesame:
        found = resolve_name("2023ixf", known=known, url=sesame.url,
                             before_online=lambda: calls.append("released"))
        assert found.origin == "source" and calls == [] and sesame.asked == []
        found = resolve_name("M31", known=known, url=sesame.url,
                             before_online=lambda: calls.append("released"))
        assert found.origin == "sesame" and calls == ["released"]
        with pytest.raises(UnknownNameError, match="the online name resolver is off"):
            resolve_name("M31", online=False, url=sesame.url,
                         before_online=lambda: calls.append("again"))
    assert calls == ["released"]
