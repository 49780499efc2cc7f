"""The SkyPortal client, bandpass map and payload against the local stand-in."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from skyphot.adapters.skyportal import (
    PushPoint,
    SkyPortalClient,
    build_payload,
    skyportal_filter,
)
from skyphot.errors import SkyPortalError, SkyPortalNotFoundError, UnknownFilterError
from skyphot.testing.skyportal import (
    ALLOWED_BANDPASSES,
    FakeSkyPortal,
    serve_skyportal,
    validate_photometry,
)


@pytest.fixture
def portal() -> Iterator[FakeSkyPortal]:
    fake = FakeSkyPortal(delay_s=1.5)
    fake.add_source("ZTF22aayaehk", 201.3655, -14.5316, redshift=0.031,
                    aliases=["SN 2022abc", "ZTF22aayaehk"])
    fake.add_instrument(7, "KPED")
    with serve_skyportal(fake) as running:
        yield running


def point(**changes: Any) -> PushPoint:
    values: dict[str, Any] = dict(
        point_id=3, uid="uid-3", mjd=60370.1, filter="r", magsys="AB", instrument="SIMCAM",
        mag=18.2, magerr=0.03, limiting_mag=21.0, limit_sigma=5.0, job_id=9,
        calibration={"catalog": "ps1", "zero_point": 25.1, "zero_point_err": 0.01,
                     "color_term": 0.05, "target_color": 0.4, "color_source": "light_curve",
                     "fwhm_arcsec": 2.0, "flags": 0, "flag_names": []})
    values.update(changes)
    return PushPoint(**values)


@pytest.mark.parametrize(("name", "bandpass"), [
    ("r", "sdssr"), ("g", "sdssg"), ("r'", "sdssr"), ("rp", "sdssr"), ("SDSS-r", "sdssr"),
    ("ztfr", "ztfr"), ("ZTF_g", "ztfg"), ("ztf-i", "ztfi"), ("PS1-r", "ps1::r"),
    ("ps1::z", "ps1::z"), ("y", "ps1::y"), ("V", "bessellv"), ("B", "bessellb"),
    ("R", "bessellr"), ("Rc", "bessellr"), ("Ic", "besselli"), ("U", "bessellux"),
    ("Johnson-V", "bessellv"), ("Ks", "2massks"), ("J", "2massj"), ("G", "gaia::g"),
    ("DECam-g", "desg"), ("lsst_r", "lsstr"), ("RP", "gaia::grp"), ("BP", "gaia::gbp"),
])
def test_filter_map(name: str, bandpass: str) -> None:
    assert skyportal_filter(name) == bandpass
    assert bandpass in ALLOWED_BANDPASSES


def test_unknown_filter_names_it_and_lists_the_known_ones() -> None:
    with pytest.raises(UnknownFilterError) as err:
        skyportal_filter("Halpha")
    text = str(err.value)
    assert "filter 'Halpha' has no SkyPortal bandpass name" in text
    assert "ztfg/ztfr/ztfi" in text and "bessellv" in text and "skyportal.filters" in text
    assert skyportal_filter("clear", {"clear": "sdssr"}) == "sdssr"


def test_payload_of_a_detection_and_of_a_limit() -> None:
    body = build_payload(point(), obj_id="ZTF22aayaehk", instrument_id=7, group_ids=[2, 5],
                         version="9.9")
    assert body["filter"] == "sdssr" and body["magsys"] == "ab" and body["origin"] == "skyphot"
    assert (body["mag"], body["magerr"], body["limiting_mag"]) == (18.2, 0.03, 21.0)
    assert body["group_ids"] == [2, 5] and body["instrument_id"] == 7
    alt = body["altdata"]
    assert alt["zero_point"] == 25.1 and alt["zero_point_err"] == 0.01
    assert alt["color_term"] == 0.05 and alt["color_used"] == 0.4
    assert alt["catalog"] == "ps1" and alt["fwhm_arcsec"] == 2.0
    assert alt["skyphot_version"] == "9.9" and alt["skyphot_job_id"] == 9
    assert alt["skyphot_uid"] == "uid-3"
    limit = build_payload(point(mag=None, magerr=None, magsys="Vega", filter="V"),
                          obj_id="X", instrument_id=7, group_ids=[], version="9.9")
    assert limit["mag"] is None and limit["magerr"] is None and limit["limiting_mag"] == 21.0
    assert limit["magsys"] == "vega" and limit["filter"] == "bessellv"


def test_payload_refuses_a_point_without_values() -> None:
    with pytest.raises(SkyPortalError, match="neither a magnitude nor a limiting magnitude"):
        build_payload(point(mag=None, magerr=None, limiting_mag=None), obj_id="X",
                      instrument_id=1, group_ids=[], version="1")


def test_stand_in_validates_like_skyportal(portal: FakeSkyPortal) -> None:
    good = build_payload(point(), obj_id="ZTF22aayaehk", instrument_id=7, group_ids=[1],
                         version="1")
    assert validate_photometry(portal, good) is None
    cases = [
        ({"filter": "r"}, "Invalid filter"),
        ({"magsys": "AB"}, "Invalid magsys"),
        ({"mag": None}, "mag and magerr must both be null or both be set"),
        ({"mag": None, "magerr": None, "limiting_mag": None}, "limiting_mag is required"),
        ({"obj_id": "ZTF00nothing"}, "Invalid obj_id"),
        ({"instrument_id": 99}, "Invalid instrument_id"),
        ({"mjd": None}, "Invalid/missing parameters: mjd"),
        ({"group_ids": ["a"]}, "Invalid group_ids"),
    ]
    for change, message in cases:
        reason = validate_photometry(portal, {**good, **change})
        assert reason is not None and message in reason, (change, reason)


def test_stand_in_needs_the_token_header(portal: FakeSkyPortal) -> None:
    request = urllib.request.Request(f"{portal.url}/api/sources/ZTF22aayaehk")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 401
    request.add_header("Authorization", f"Bearer {portal.token}")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    assert err.value.code == 401 and json.loads(err.value.read())["message"] == "Invalid token"


def test_client_reads_a_source_and_resolves_an_instrument(portal: FakeSkyPortal) -> None:
    client = SkyPortalClient(portal.url, portal.token, timeout=5)
    source = client.get_source("ZTF22aayaehk")
    assert (source.ra, source.dec, source.redshift) == (201.3655, -14.5316, 0.031)
    assert source.aliases == ["SN 2022abc", "ZTF22aayaehk"]
    assert client.instrument_id("KPED") == 7 and client.instrument_id(12) == 12
    with pytest.raises(SkyPortalError, match="no instrument named 'Nope'"):
        client.instrument_id("Nope")
    assert "sp-test-token" not in repr(client)


def test_client_post_update_find_delete(portal: FakeSkyPortal) -> None:
    client = SkyPortalClient(portal.url, portal.token, timeout=5)
    body = build_payload(point(), obj_id="ZTF22aayaehk", instrument_id=7, group_ids=[],
                         version="1")
    new_id = client.post_photometry(body)
    assert portal.photometry[new_id]["mag"] == 18.2
    client.update_photometry(new_id, {**body, "mag": 18.3})
    assert portal.photometry[new_id]["mag"] == 18.3 and len(portal.photometry) == 1
    assert client.find_photometry("ZTF22aayaehk", "uid-3") == new_id
    assert client.find_photometry("ZTF22aayaehk", "other") is None
    client.delete_photometry(new_id)
    assert portal.photometry == {}
    with pytest.raises(SkyPortalError, match="HTTP 400: Invalid filter"):
        client.post_photometry({**body, "filter": "r"})


def test_client_failure_modes(portal: FakeSkyPortal) -> None:
    client = SkyPortalClient(portal.url, "wrong", timeout=0.5)
    with pytest.raises(SkyPortalError, match="refused the token \\(HTTP 401") as err:
        client.get_source("ZTF22aayaehk")
    assert err.value.status == 401 and not err.value.retryable
    client = SkyPortalClient(portal.url, portal.token, timeout=0.5)
    with pytest.raises(SkyPortalNotFoundError, match="has no source 'ZTF00nothing'"):
        client.get_source("ZTF00nothing")
    portal.faults = [503]
    with pytest.raises(SkyPortalError, match="answered HTTP 503") as err:
        client.get_source("ZTF22aayaehk")
    assert err.value.retryable
    portal.faults = ["timeout"]
    with pytest.raises(SkyPortalError, match=r"did not answer within 0\.5 s") as err:
        client.get_source("ZTF22aayaehk")
    assert err.value.retryable
    closed = SkyPortalClient("http://127.0.0.1:9", portal.token, timeout=0.5)
    with pytest.raises(SkyPortalError, match="cannot be reached") as err:
        closed.get_source("ZTF22aayaehk")
    assert err.value.retryable
