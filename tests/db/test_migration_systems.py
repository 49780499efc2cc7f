"""Migration 0002_systems: stored fluxes of Vega bands are rescaled with the band's
Vega-AB offset and every point is labelled with its band's system; the downgrade undoes it."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from skyphot.core.units import VEGA_TO_AB
from skyphot.db.session import alembic_config, make_engine

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


def _points(engine: sa.Engine) -> list[sa.Row[Any]]:
    """The photometry rows as the schema of the current revision has them (reflected, so the
    test does not depend on columns that later migrations add)."""
    table = sa.Table("photometry", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table).order_by(table.c.mjd)))


def test_vega_fluxes_are_rescaled_and_restored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    command.upgrade(alembic_config(url), "0001")
    engine = make_engine(url)
    meta = sa.MetaData()
    users = sa.Table("users", meta, autoload_with=engine)
    sources = sa.Table("sources", meta, autoload_with=engine)
    photometry = sa.Table("photometry", meta, autoload_with=engine)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(sa.insert(users).values(id=1, username="alice", is_admin=False,
                                             created_at=now))
        conn.execute(sa.insert(sources).values(id="SN1", ra=10.0, dec=-5.0, created_by=1,
                                               created_at=now))
        for k, (catalog, band, label) in enumerate(CASES):
            conn.execute(sa.insert(photometry).values(
                source_id="SN1", mjd=60000.0 + k, mag=17.0, magerr=0.02,
                flux=10 ** (-0.4 * (17.0 - 23.9)), fluxerr=1.0, filter=band, magsys=label,
                origin="skyphot", file_hash=f"h{k}", settings_hash="s",
                calibration={"catalog": catalog, "band": band}, created_at=now))
    command.upgrade(alembic_config(url), "0002_systems")
    for point, (key, (system, offset)) in zip(_points(engine), CASES.items(), strict=True):
        assert point.magsys == system, key
        assert point.flux == pytest.approx(10 ** (-0.4 * (17.0 + offset - 23.9)), rel=1e-9)
        assert point.fluxerr == pytest.approx(10 ** (-0.4 * offset), rel=1e-9)
    command.upgrade(alembic_config(url), "head")
    assert [p.flux for p in _points(engine)] == pytest.approx(
        [10 ** (-0.4 * (17.0 + offset - 23.9)) for _, offset in CASES.values()], rel=1e-9)
    command.downgrade(alembic_config(url), "0001")
    for point, (_, _, label) in zip(_points(engine), CASES, strict=True):
        assert point.magsys == label
        assert point.flux == pytest.approx(10 ** (-0.4 * (17.0 - 23.9)), rel=1e-9)
        assert "systems_fix" not in point.calibration
    engine.dispose()
