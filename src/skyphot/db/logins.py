"""Login attempts counted in the database, so every web process (uvicorn workers, several
`skyphot serve` behind a proxy) shares one budget per client address and per account.

One row per bucket (a client address or an account) holds the start of its current window
and the attempts in it. Counting is one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``
statement: atomic on SQLite and PostgreSQL without a lock taken by hand, and an expired
window restarts inside the same statement.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from skyphot.db.models import LoginFailure


@dataclass(frozen=True)
class Window:
    """A bucket's count after an attempt: attempts in the window that began at ``start``."""

    attempts: int
    start: datetime


def bucket(kind: str, value: str) -> str:
    """The stored key of a client address (``kind`` 'client') or account ('user'): a
    SHA-256, so a password typed into the name field is never stored."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def count_attempt(session: Session, key: str, now: datetime, window_s: float) -> Window:
    """Add one attempt to bucket ``key`` (a new window when its last one began more than
    ``window_s`` before ``now``) and return its count."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        insert = postgresql.insert
    elif dialect == "sqlite":
        insert = sqlite.insert  # type: ignore[assignment]
    else:  # pragma: no cover - the schema supports only these two
        raise NotImplementedError(f"login throttle: database {dialect!r} is not supported")
    expired = LoginFailure.window_start <= now - timedelta(seconds=window_s)
    statement = insert(LoginFailure).values(bucket=key, window_start=now, attempts=1)
    # Both SET expressions see the row as it was (SQL semantics on both databases).
    statement = statement.on_conflict_do_update(
        index_elements=[LoginFailure.bucket],
        set_={"attempts": case((expired, 1), else_=LoginFailure.attempts + 1),
              "window_start": case((expired, now), else_=LoginFailure.window_start)},
    )
    row = session.execute(
        statement.returning(LoginFailure.attempts, LoginFailure.window_start)
    ).one()
    return Window(attempts=int(row[0]), start=row[1])


def uncount_attempt(session: Session, key: str) -> None:
    """Take one attempt back from bucket ``key`` (a login that succeeded)."""
    session.execute(update(LoginFailure)
                    .where(LoginFailure.bucket == key, LoginFailure.attempts > 0)
                    .values(attempts=LoginFailure.attempts - 1))


def forget(session: Session, key: str) -> None:
    """Drop bucket ``key`` (its account just logged in)."""
    session.execute(delete(LoginFailure).where(LoginFailure.bucket == key))


def prune(session: Session, now: datetime, window_s: float) -> int:
    """Delete the buckets whose window has passed; how many went."""
    result = session.execute(
        delete(LoginFailure)
        .where(LoginFailure.window_start <= now - timedelta(seconds=window_s))
    )
    return int(getattr(result, "rowcount", 0) or 0)
