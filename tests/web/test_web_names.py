"""New sources by name (issue 10): resolved among the user's sources, in the local name
table, then through CDS Sesame (a local stand-in in Sesame's format); sexagesimal and decimal
coordinates need nothing. The result says where the position came from."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from webtest_helpers import add_users, make_settings

from skyphot.errors import ConfigError
from skyphot.testing.sesame import FakeSesame, serve_sesame
from skyphot.web.app import create_app

NAME_TABLE = """name,ra,dec,aliases
SN 2023ixf,14:03:38.562,+54:18:41.94,ZTF23aaklqou;M101 transient
AT 2024abc,150.1,2.2,
"""
IXF = (210.910675, 54.311650)  # 14:03:38.562 +54:18:41.94 in degrees


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


Client = tuple[TestClient, dict[str, str], dict[str, str]]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., Client]]:
    """An app with the given settings; yields (client, alice's and bob's headers)."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> Client:
        app = create_app(make_settings(tmp_path / f"i{len(clients)}", **overrides))
        _, alice, bob = add_users(app)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client, alice, bob

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def write_table(tmp_path: Path, text: str = NAME_TABLE, name: str = "names.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def create(client: TestClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    return client.post("/api/sources", json=body, headers=headers)


def test_a_local_name_table_resolves_names_in_any_spelling(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    with serve_sesame() as sesame:  # on, but never asked: the table knows the names
        client, alice, _ = make_client(name_table=str(write_table(tmp_path)),
                                       name_resolver_url=sesame.url)
        for number, spelling in enumerate(["SN 2023ixf", "sn2023ixf", "2023ixf", "AT 2023IXF",
                                           "ztf23aaklqou", "m101  transient"]):
            r = create(client, alice, id=f"ixf{number}", name=spelling)
            assert r.status_code == 201, r.text
            out = r.json()
            assert (out["ra"], out["dec"]) == pytest.approx(IXF, abs=1e-6)
            assert out["position_origin"] == "name_table"
            assert out["position_note"] == "'SN 2023ixf' in the local name table (names.csv)"
            assert out["name"] == spelling
            # deleted, so the next spelling is not found among alice's sources instead
            client.delete(f"/api/sources/ixf{number}", headers=alice)
        assert sesame.asked == []


def test_the_users_own_sources_come_first_and_others_stay_private(
    make_client: Callable[..., Client]
) -> None:
    client, alice, bob = make_client(name_resolver_online=False)
    r = create(client, alice, id="ZTF23aaklqou", ra="14:03:38.562", dec="+54:18:41.94",
               name="SN 2023ixf")
    assert r.status_code == 201
    assert r.json()["position_origin"] == "given" and r.json()["position_note"] == "as given"
    for spelling, number in (("AT2023ixf", 1), ("ztf23aaklqou", 2)):
        r = create(client, alice, id=f"copy{number}", name=spelling)
        assert r.status_code == 201, r.text
        assert (r.json()["ra"], r.json()["dec"]) == pytest.approx(IXF, abs=1e-6)
        assert r.json()["position_origin"] == "source"
        assert r.json()["position_note"] == "your source 'ZTF23aaklqou'"
    # bob shares no group with alice: her source's name does not resolve for him
    r = create(client, bob, id="bobs", name="SN 2023ixf")
    assert r.status_code == 400
    assert error_of(r)["message"] == (
        "'SN 2023ixf' is not among your sources (and no local name table is set), and the "
        "online name resolver is off; give ra and dec (decimal or sexagesimal)")


def test_sesame_is_asked_last_and_every_failure_names_what_was_tried(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    table = str(write_table(tmp_path))
    with serve_sesame(FakeSesame(names={"M31": (10.684708, 41.26875)})) as sesame:
        client, alice, _ = make_client(name_table=table, name_resolver_url=sesame.url)
        r = create(client, alice, id="m31", name="M31")
        assert r.status_code == 201, r.text
        out = r.json()
        assert (out["ra"], out["dec"]) == (10.684708, 41.26875)
        assert (out["position_origin"], out["position_note"]) == ("sesame",
                                                                   "CDS Sesame (Simbad)")
        assert sesame.asked == ["M31"]
        r = create(client, alice, id="x", name="Nonexistent 1")
        assert r.status_code == 400
        assert error_of(r)["message"] == (
            "'Nonexistent 1' is not in the local name table or among your sources, and CDS "
            "Sesame does not know it either; check the spelling or give ra and dec")
        sesame.status, sesame.body = 500, "Internal Server Error"
        r = create(client, alice, id="y", name="M33")
        assert r.status_code == 503
        assert error_of(r)["message"] == (
            "'M33' is not in the local name table or among your sources; the CDS Sesame "
            "service answered HTTP 500; give ra and dec (decimal or sexagesimal)")
        sesame.status, sesame.body = 200, "<html>proxy says hello</html>"
        r = create(client, alice, id="y", name="M33")
        assert r.status_code == 503
        assert "the CDS Sesame service answered something else than a Sesame answer" in \
            error_of(r)["message"]
        sesame.body, sesame.delay_s = None, 5.0
        client.app.state.settings.name_resolver_timeout_s = 0.3  # type: ignore[attr-defined]
        r = create(client, alice, id="y", name="M33")
        assert r.status_code == 503
        assert error_of(r)["message"].startswith(
            "'M33' is not in the local name table or among your sources; the CDS Sesame "
            "service did not answer (")
    # nobody listening at all
    client, alice, _ = make_client(name_table=table, name_resolver_url="http://127.0.0.1:9")
    r = create(client, alice, id="z", name="M31")
    assert r.status_code == 503
    message = error_of(r)["message"]
    assert message.startswith("'M31' is not in the local name table or among your sources; "
                              "the CDS Sesame service did not answer (")
    assert message.endswith("); give ra and dec (decimal or sexagesimal)")


def test_with_the_online_resolver_off_sesame_is_never_asked(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    with serve_sesame(FakeSesame(names={"M31": (10.684708, 41.26875)})) as sesame:
        client, alice, _ = make_client(name_table=str(write_table(tmp_path)),
                                       name_resolver_url=sesame.url,
                                       name_resolver_online=False)
        r = create(client, alice, id="m31", name="M31")
        assert r.status_code == 400
        assert error_of(r)["message"] == (
            "'M31' is not in the local name table or among your sources, and the online name "
            "resolver is off; give ra and dec (decimal or sexagesimal)")
        r = create(client, alice, id="abc", name="2024abc")
        assert r.status_code == 201 and (r.json()["ra"], r.json()["dec"]) == (150.1, 2.2)
        assert sesame.asked == []


def test_coordinates_need_no_resolver_and_bad_requests_say_what_to_give(
    make_client: Callable[..., Client]
) -> None:
    client, alice, _ = make_client(name_resolver_url="http://127.0.0.1:9")
    for number, (ra, dec) in enumerate([("14:03:38.562", "+54:18:41.94"),
                                        ("14h03m38.562s", "+54d18m41.94s"),
                                        (210.910675, 54.31165), ("210.910675", "54.31165")]):
        r = create(client, alice, id=f"given{number}", ra=ra, dec=dec, name="SN 2023ixf")
        assert r.status_code == 201, r.text
        assert (r.json()["ra"], r.json()["dec"]) == pytest.approx(IXF, abs=1e-6)
        assert r.json()["position_origin"] == "given"
    r = create(client, alice, id="z")
    assert r.status_code == 422
    assert error_of(r)["message"] == ("give ra and dec, or a name to resolve (or "
                                      "skyportal_id to import from SkyPortal)")
    r = create(client, alice, id="z", ra=1)
    assert error_of(r)["message"] == "give dec too (or neither, to resolve the name)"


@pytest.mark.parametrize(("text", "suffix", "message"), [
    ("name,ra\nX,1\n", ".csv", r"name table .*names\.csv lacks column\(s\) dec; it needs name, "
     r"ra, dec \(and optionally aliases\)"),
    ("name,ra,dec\nX,25:00:00,+1:00:00\n", ".csv",
     r"name table names\.csv, row 1 \(X\): RA '25:00:00' must be 0h to 24h"),
    ("name,ra,dec\nX,1,2\n,3,4\n", ".csv", r"name table names\.csv, row 2: the name is empty"),
    ("name,ra,dec,aliases\nSN 2023ixf,1,2,\nAT2023ixf,3,4,\n", ".csv",
     r"name table names\.csv, row 2: 'AT2023ixf' already names 'SN 2023ixf'; a name may "
     r"stand for one object only"),
    ("# not ECSV\nname ra dec\n", ".ecsv", r"name table .*names\.ecsv is not a readable ECSV "
     r"table: "),
])
def test_a_bad_name_table_stops_start_up_naming_the_problem(
    tmp_path: Path, text: str, suffix: str, message: str
) -> None:
    path = write_table(tmp_path, text, f"names{suffix}")
    with pytest.raises(ConfigError, match=message):
        create_app(make_settings(tmp_path, name_table=str(path)))


def test_a_missing_name_table_and_an_edited_one(tmp_path: Path,
                                                make_client: Callable[..., Client]) -> None:
    with pytest.raises(ConfigError, match=r"name table .*absent\.csv does not exist; fix or "
                       r"unset name_table"):
        create_app(make_settings(tmp_path, name_table=str(tmp_path / "absent.csv")))
    ecsv = ("# %ECSV 1.0\n# ---\n# datatype:\n# - {name: name, datatype: string}\n"
            "# - {name: ra, datatype: float64}\n# - {name: dec, datatype: float64}\n"
            "name ra dec\n\"SN 2011fe\" 210.774 54.2737\n")
    path = write_table(tmp_path, ecsv, "names.ecsv")
    client, alice, _ = make_client(name_table=str(path), name_resolver_online=False)
    r = create(client, alice, id="fe", name="2011fe")
    assert r.status_code == 201 and r.json()["ra"] == 210.774
    # an edited table is read again without a restart
    path.write_text(ecsv + "\"SN 2014J\" 148.9256 69.6739\n", encoding="utf-8")
    r = create(client, alice, id="j", name="sn 2014j")
    assert r.status_code == 201 and r.json()["dec"] == 69.6739
    assert r.json()["position_note"] == "'SN 2014J' in the local name table (names.ecsv)"
