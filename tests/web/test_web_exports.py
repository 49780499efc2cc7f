"""Light-curve exports open in astropy with units and the magnitude system per point."""

from __future__ import annotations

import io

import astropy.units as u
import numpy as np
from astropy.io import ascii
from astropy.table import Table
from webtest_helpers import Instance

from skyphot.db.models import Photometry
from skyphot.testing.skyportal import ALLOWED_BANDPASSES, ALLOWED_MAGSYS


def add_points(instance: Instance, source: str) -> None:
    with instance.app.state.sessions() as session:
        session.add_all([
            Photometry(source_id=source, mjd=60370.25, mag=18.5, magerr=0.03, limiting_mag=21.2,
                       limit_sigma=5.0, flux=10 ** (-0.4 * (18.5 - 23.9)), fluxerr=5.0,
                       snr=36.0, filter="r", instrument="SIMCAM", magsys="AB",
                       origin="skyphot", owner_id=2, job_id=1,
                       calibration={"catalog": "ps1", "zero_point": 25.2,
                                    "zero_point_err": 0.01, "color_term": 0.04,
                                    "target_color": 0.3, "color_source": "light_curve",
                                    "fwhm_arcsec": 1.9}),
            Photometry(source_id=source, mjd=60371.5, mag=None, magerr=None, limiting_mag=20.7,
                       limit_sigma=3.0, flux=1.0, fluxerr=2.0, snr=0.5, filter="V",
                       instrument="SIMCAM", magsys="Vega", origin="skyphot", owner_id=2,
                       job_id=2, calibration={"catalog": "gaia_synth"}),
        ])
        session.commit()


def fetch(instance: Instance, source: str, fmt: str) -> bytes:
    r = instance.client.get(f"/api/sources/{source}/photometry?format={fmt}",
                            headers=instance.alice)
    assert r.status_code == 200, r.text
    return r.content


def check_table(table: Table) -> None:
    assert len(table) == 2
    assert table["mjd"].unit == u.day and table["mag"].unit == u.mag
    assert table["flux"].unit == u.uJy and table["fwhm_arcsec"].unit == u.arcsec
    assert list(table["magsys"]) == ["AB", "Vega"]
    assert list(table["filter"]) == ["r", "V"]
    assert table["mag"][0] == 18.5 and np.ma.is_masked(table["mag"][1])
    assert table["limiting_mag"][1] == 20.7
    assert np.isclose(table["flux"][0], 10 ** (-0.4 * (18.5 - 23.9)))
    assert table["color_source"][0] == "light_curve"


def test_ecsv_and_votable_open_in_astropy_with_units(instance: Instance, source: str) -> None:
    add_points(instance, source)
    ecsv = Table.read(fetch(instance, source, "ecsv").decode(), format="ascii.ecsv")
    check_table(ecsv)
    assert ecsv.meta["source_id"] == source
    votable = Table.read(io.BytesIO(fetch(instance, source, "votable")), format="votable")
    check_table(votable)


def test_skyportal_json_and_tom_csv(instance: Instance, source: str) -> None:
    add_points(instance, source)
    records = instance.client.get(f"/api/sources/{source}/photometry?format=json",
                                  headers=instance.alice).json()
    assert [r["filter"] for r in records] == ["sdssr", "bessellv"]
    assert {r["filter"] for r in records} <= ALLOWED_BANDPASSES
    assert [r["magsys"] for r in records] == ["ab", "vega"]
    assert {r["magsys"] for r in records} <= ALLOWED_MAGSYS
    assert records[1]["mag"] is None and records[1]["limiting_mag"] == 20.7
    assert records[0]["altdata"]["zero_point"] == 25.2
    assert records[0]["obj_id"] == source
    tom = ascii.read(fetch(instance, source, "tom").decode(), format="csv")
    assert tom.colnames == ["time", "filter", "magnitude", "error", "limit", "telescope",
                            "magsys"]
    assert tom["time"][0] == 60370.25 and tom["magnitude"][0] == 18.5
    assert np.ma.is_masked(tom["magnitude"][1]) and tom["limit"][1] == 20.7
    # without a format: the JSON list as before
    plain = instance.client.get(f"/api/sources/{source}/photometry",
                                headers=instance.alice).json()
    assert plain[0]["skyportal"]["state"] == "off" and "calibration" in plain[0]


def test_unknown_export_format_and_filter(instance: Instance, source: str) -> None:
    r = instance.client.get(f"/api/sources/{source}/photometry?format=xls",
                            headers=instance.alice)
    assert r.status_code == 422 and r.json()["error"]["field"] == "format"
    with instance.app.state.sessions() as session:
        session.add(Photometry(source_id=source, mjd=60372.0, mag=17.0, magerr=0.1,
                               filter="Halpha", magsys="AB", origin="manual"))
        session.commit()
    r = instance.client.get(f"/api/sources/{source}/photometry?format=json",
                            headers=instance.alice)
    assert r.status_code == 400
    assert "filter 'Halpha' has no SkyPortal bandpass name" in r.json()["error"]["message"]
