"""Two workers meeting a new instrument at the same time create it once."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from skyphot.db import crud
from skyphot.db.models import Instrument
from skyphot.db.session import make_engine, make_sessionmaker, migrate


@pytest.mark.parametrize("stale_lookups", [1, 2], ids=["conflict-check", "unique-constraint"])
def test_concurrent_first_use_of_an_instrument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stale_lookups: int
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'race.db'}")
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as first:
        crud.ensure_instrument(first, "NewCam", "r")
        first.commit()
    # The second worker looked the instrument up just before the first committed it.
    real_lookup = crud.get_instrument
    answers = iter([None] * stale_lookups)
    monkeypatch.setattr(
        crud, "get_instrument", lambda session, name: next(answers, real_lookup(session, name))
    )
    with sessions() as second:
        made = crud.ensure_instrument(second, "NewCam", "g")
        second.commit()
        assert made.name == "NewCam"
        assert sorted(made.filters) == ["g", "r"]
    with sessions() as check:
        assert len(check.scalars(select(Instrument)).all()) == 1
