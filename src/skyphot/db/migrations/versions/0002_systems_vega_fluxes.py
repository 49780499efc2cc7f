"""fluxes of Vega bands: convert with the band's Vega-AB offset, label each point's system

Points measured before this revision had every flux converted to µJy as if its magnitude
were AB, and carried the catalog's single system label (wrong for catalogs that mix
systems). This revision relabels each skyphot point with its band's system and rescales the
flux of Vega bands by 10^(-0.4 (m_AB - m_Vega)); what it changed is recorded in the point's
calibration (``systems_fix``) so the downgrade undoes exactly that.

The tables are frozen copies (a migration must not change when the code does): the band
systems of the online catalogs as in ``skyphot.catalogs.vizier`` and the offsets of
``skyphot.core.units.VEGA_TO_AB`` (published sources cited there).

Revision ID: 0002_systems
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0002_systems'
down_revision = '0001'
branch_labels = None
depends_on = None

_VEGA_TO_AB = {
    "U": 0.79, "B": -0.09, "V": 0.02, "R": 0.21, "I": 0.45,
    "J": 2.5 * math.log10(3631.0 / 1594.0), "H": 2.5 * math.log10(3631.0 / 1024.0),
    "K": 2.5 * math.log10(3631.0 / 666.7),
    "G": 0.1050, "BP": 0.0292, "RP": 0.3542,
}
_VEGA_BANDS = {
    "gaia_synth": set("UBVRI"),
    "ps1": set(),
    "skymapper": set(),
    "refcat2": {"G", "BP", "RP", "J", "H", "K"},
    "apass": {"B", "V"},
    "sdss": set(),
    "2mass": {"J", "H", "K"},
}

_photometry = sa.table(
    "photometry",
    sa.column("id", sa.Integer),
    sa.column("flux", sa.Float),
    sa.column("fluxerr", sa.Float),
    sa.column("magsys", sa.String),
    sa.column("origin", sa.String),
    sa.column("calibration", sa.JSON),
)


def _system(catalog: str | None, band: str | None, label: str) -> str:
    """The band's system: from the online catalog's table, else the label the point had
    (a local file's system, given by the user for all its bands)."""
    if catalog in _VEGA_BANDS and band is not None:
        return "Vega" if band in _VEGA_BANDS[catalog] else "AB"
    return label


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_photometry).where(_photometry.c.origin == "skyphot")
    ).mappings().all()
    for row in rows:
        calibration: dict[str, Any] = dict(row["calibration"] or {})
        if "systems_fix" in calibration:
            continue
        band = calibration.get("band")
        system = _system(calibration.get("catalog"), band, row["magsys"])
        offset = _VEGA_TO_AB.get(band, 0.0) if system == "Vega" and band else 0.0
        factor = 10.0 ** (-0.4 * offset)
        calibration["systems_fix"] = {"magsys_before": row["magsys"], "ab_offset": offset}
        bind.execute(
            _photometry.update().where(_photometry.c.id == row["id"]).values(
                flux=_scaled(row["flux"], factor), fluxerr=_scaled(row["fluxerr"], factor),
                magsys=system, calibration=calibration,
            )
        )


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_photometry).where(_photometry.c.origin == "skyphot")
    ).mappings().all()
    for row in rows:
        calibration: dict[str, Any] = dict(row["calibration"] or {})
        fix = calibration.pop("systems_fix", None)
        if fix is None:
            continue
        factor = 10.0 ** (0.4 * float(fix["ab_offset"]))
        bind.execute(
            _photometry.update().where(_photometry.c.id == row["id"]).values(
                flux=_scaled(row["flux"], factor), fluxerr=_scaled(row["fluxerr"], factor),
                magsys=fix["magsys_before"], calibration=calibration,
            )
        )
