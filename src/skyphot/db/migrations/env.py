"""Alembic environment: runs on the connection handed over by skyphot.db.session.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from skyphot.db.models import Base

config = context.config
connection = config.attributes.get("connection")


def _run(conn: object) -> None:
    context.configure(
        connection=conn,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        render_as_batch=True,  # ALTER TABLE support on SQLite
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    with create_engine(url).connect() as conn:
        _run(conn)
