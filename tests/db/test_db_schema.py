"""Migrations, access rules and the duplicate guard of the database layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from skyphot.db import crud
from skyphot.db.errors import ConflictError, NotFoundError, PermissionDeniedError
from skyphot.db.models import Base, Photometry
from skyphot.db.security import hash_password, token_digest, verify_password
from skyphot.db.session import alembic_config, make_engine, make_sessionmaker, migrate


@pytest.fixture
def sessions(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_migrations_create_the_model_schema_and_are_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = make_engine(url)
    migrate(engine)
    migrate(engine)  # second start: nothing to do
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables and "alembic_version" in tables
    for name, table in Base.metadata.tables.items():
        columns = {c["name"] for c in inspect(engine).get_columns(name)}
        assert columns == set(table.columns.keys()), name
    command.downgrade(alembic_config(url), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_group_visibility(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        alice = crud.create_user(s, "alice", "pw", groups=["ztf"])
        carol = crud.create_user(s, "carol", "pw", groups=["ztf"])
        bob = crud.create_user(s, "bob", "pw")
        admin = crud.create_user(s, "root", "pw", is_admin=True)
        crud.create_source(s, alice, source_id="SN1", ra=10.0, dec=-5.0, groups=["ztf"])
        s.commit()
        assert crud.get_source(s, carol, "SN1").ra == 10.0
        assert crud.get_source(s, admin, "SN1").dec == -5.0
        with pytest.raises(NotFoundError, match="not shared with you"):
            crud.get_source(s, bob, "SN1")
        assert crud.list_sources(s, bob) == []
        assert [x.id for x in crud.list_sources(s, carol, "sn")] == ["SN1"]
        with pytest.raises(ConflictError, match="already exists"):
            crud.create_source(s, alice, source_id="SN1", ra=1, dec=1)
        with pytest.raises(PermissionDeniedError, match="not a member of group"):
            crud.create_source(s, bob, source_id="SN2", ra=1, dec=1, groups=["ztf"])
        with pytest.raises(ConflictError, match="user 'alice' already exists"):
            crud.create_user(s, "alice", "x")


def test_identical_upload_point_is_unique(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        alice = crud.create_user(s, "alice", "pw")
        crud.create_source(s, alice, source_id="SN1", ra=10.0, dec=-5.0)
        s.commit()
        row = {"source_id": "SN1", "mjd": 60000.0, "filter": "r", "file_hash": "a" * 64,
               "settings_hash": "b" * 64}
        s.add(Photometry(**row))
        s.commit()
        s.add(Photometry(**row))
        with pytest.raises(IntegrityError):
            s.commit()
        s.rollback()
        # points without an upload hash (manual) are never considered duplicates
        s.add_all([Photometry(source_id="SN1", mjd=1.0, filter="g") for _ in range(2)])
        s.commit()


def test_passwords_and_tokens(sessions) -> None:  # type: ignore[no-untyped-def]
    stored = hash_password("correct horse")
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong", stored)
    assert not verify_password("x", None) and not verify_password("x", "garbage")
    assert hash_password("same") != hash_password("same")  # salted
    with sessions() as s:
        user = crud.create_user(s, "alice", "pw")
        token = crud.create_token(s, user)
        s.commit()
        assert crud.user_for_token(s, token).username == "alice"  # type: ignore[union-attr]
        assert crud.user_for_token(s, token + "x") is None
        assert token_digest(token) != token and len(token_digest(token)) == 64
        assert crud.authenticate(s, "alice", "pw") is not None
        assert crud.authenticate(s, "alice", "nope") is None


def test_instruments(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        crud.create_instrument(s, "LCO", ["g", "r", "g"], gain=1.5)
        inst = crud.ensure_instrument(s, "lco", "i")
        assert inst.filters == ["g", "r", "i"] and inst.gain == 1.5
        new = crud.ensure_instrument(s, "NEWCAM", "V")
        s.commit()
        assert new.filters == ["V"]
        assert [i.name for i in crud.list_instruments(s)] == ["LCO", "NEWCAM"]


def test_migrations_on_postgresql() -> None:
    """Same schema on PostgreSQL (set SKYPHOT_TEST_POSTGRES_URL to a server that may create
    databases, e.g. postgresql+psycopg://skyphot:skyphot@127.0.0.1/postgres)."""
    import os
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = os.environ.get("SKYPHOT_TEST_POSTGRES_URL")
    if not admin_url:
        pytest.skip("SKYPHOT_TEST_POSTGRES_URL is not set")
    name = f"skyphot_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        engine = make_engine(make_url(admin_url).set(database=name).render_as_string(False))
        migrate(engine)
        migrate(engine)
        for table_name, table in Base.metadata.tables.items():
            columns = {c["name"] for c in inspect(engine).get_columns(table_name)}
            assert columns == set(table.columns.keys()), table_name
        engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
