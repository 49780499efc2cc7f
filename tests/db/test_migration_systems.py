"""Migration 0002_systems: stored fluxes of Vega bands are rescaled with the band's
Vega-AB offset and every point is labelled with its band's system; the downgrade undoes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command

from skyphot.core.units import VEGA_TO_AB
from skyphot.db import crud
from skyphot.db.models import Photometry
from skyphot.db.session import alembic_config, make_engine, make_sessionmaker

# (catalog, band, stored magsys label) -> (system after the fix, offset applied)
CASES = {
    ("2mass", "J", "Vega"): ("Vega", VEGA_TO_AB["J"]),
    ("gaia_synth", "V", "Vega"): ("Vega", VEGA_TO_AB["V"]),
    ("gaia_synth", "g", "Vega"): ("AB", 0.0),  # GSPC Sloan bands are AB: only the label
    ("refcat2", "G", "AB"): ("Vega", VEGA_TO_AB["G"]),
    ("apass", "r", "Vega"): ("AB", 0.0),
    ("ps1", "r", "AB"): ("AB", 0.0),
    ("/data/local.ecsv", "I", "Vega"): ("Vega", VEGA_TO_AB["I"]),  # local file: its label
}


def test_vega_fluxes_are_rescaled_and_restored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    command.upgrade(alembic_config(url), "0001")
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        user = crud.create_user(s, "alice", "pw")
        crud.create_source(s, user, source_id="SN1", ra=10.0, dec=-5.0)
        for k, (catalog, band, label) in enumerate(CASES):
            s.add(Photometry(source_id="SN1", mjd=60000.0 + k, mag=17.0, magerr=0.02,
                             flux=10 ** (-0.4 * (17.0 - 23.9)), fluxerr=1.0, filter=band,
                             magsys=label, origin="skyphot", file_hash=f"h{k}",
                             settings_hash="s", calibration={"catalog": catalog, "band": band}))
        s.commit()
    command.upgrade(alembic_config(url), "head")
    with sessions() as s:
        points = s.query(Photometry).order_by(Photometry.mjd).all()
        for point, (key, (system, offset)) in zip(points, CASES.items(), strict=True):
            assert point.magsys == system, key
            assert point.flux == pytest.approx(10 ** (-0.4 * (17.0 + offset - 23.9)), rel=1e-9)
            assert point.fluxerr == pytest.approx(10 ** (-0.4 * offset), rel=1e-9)
    command.downgrade(alembic_config(url), "0001")
    with sessions() as s:
        points = s.query(Photometry).order_by(Photometry.mjd).all()
        for point, (_, _, label) in zip(points, CASES, strict=True):
            assert point.magsys == label
            assert point.flux == pytest.approx(10 ** (-0.4 * (17.0 - 23.9)), rel=1e-9)
            assert "systems_fix" not in point.calibration
    engine.dispose()
