"""Database tables (SQLAlchemy 2). Only portable types: the same schema runs on SQLite and
PostgreSQL. Times are naive UTC datetimes."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Now, as a naive UTC datetime (what every time column stores)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of all skyphot tables."""


user_groups = Table(
    "user_groups",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
)

source_groups = Table(
    "source_groups",
    Base.metadata,
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
)


class Group(Base):
    """A set of users sharing sources."""

    __tablename__ = "groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class User(Base):
    """An account: password for the pages, tokens for the API."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    groups: Mapped[list[Group]] = relationship(secondary=user_groups, lazy="selectin")


class Token(Base):
    """An API token; only its SHA-256 is stored."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="api")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    user: Mapped[User] = relationship(lazy="joined")


class Source(Base):
    """An astronomical source with a light curve."""

    __tablename__ = "sources"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ra: Mapped[float] = mapped_column(Float)
    dec: Mapped[float] = mapped_column(Float)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    redshift: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    skyportal_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    light_curve_colors: Mapped[bool] = mapped_column(Boolean, default=True)
    # Where ra/dec came from: given | source | name_table | sesame | skyportal (None: a source
    # made before this was recorded), and a line naming it (the matching source, the table).
    position_origin: Mapped[str | None] = mapped_column(String(20), nullable=True)
    position_note: Mapped[str | None] = mapped_column(String(300), nullable=True)
    groups: Mapped[list[Group]] = relationship(secondary=source_groups, lazy="selectin")


class Instrument(Base):
    """An instrument and the filters it has."""

    __tablename__ = "instruments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    filters: Mapped[list[str]] = mapped_column(JSON, default=list)
    gain: Mapped[float | None] = mapped_column(Float, nullable=True)
    saturation: Mapped[float | None] = mapped_column(Float, nullable=True)


class Photometry(Base):
    """One point of a light curve: a magnitude with error, or an upper limit."""

    __tablename__ = "photometry"
    __table_args__ = (
        # An identical re-upload (same file, same source, same settings) adds no second point.
        UniqueConstraint("source_id", "file_hash", "settings_hash", name="uq_photometry_upload"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    mjd: Mapped[float] = mapped_column(Float)
    mag: Mapped[float | None] = mapped_column(Float, nullable=True)
    magerr: Mapped[float | None] = mapped_column(Float, nullable=True)
    limiting_mag: Mapped[float | None] = mapped_column(Float, nullable=True)
    limit_sigma: Mapped[float | None] = mapped_column(Float, nullable=True)
    flux: Mapped[float | None] = mapped_column(Float, nullable=True)  # µJy
    fluxerr: Mapped[float | None] = mapped_column(Float, nullable=True)  # µJy
    snr: Mapped[float | None] = mapped_column(Float, nullable=True)
    filter: Mapped[str] = mapped_column(String(50))
    instrument: Mapped[str | None] = mapped_column(String(100), nullable=True)
    magsys: Mapped[str] = mapped_column(String(10), default="AB")
    origin: Mapped[str] = mapped_column(String(50), default="manual")
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    file_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    settings_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    calibration: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # SkyPortal push: state off | pending | pushed | failed, SkyPortal's id once known (a
    # retry then updates instead of posting again), the last failure, skyphot's own id of
    # the point in SkyPortal's altdata, and the retry bookkeeping of the push queue.
    skyportal_state: Mapped[str] = mapped_column(String(16), default="off", index=True)
    skyportal_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    skyportal_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    skyportal_uid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    skyportal_attempts: Mapped[int] = mapped_column(Integer, default=0)
    skyportal_next_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    skyportal_claimed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Job(Base):
    """One image analysis: an uploaded frame to be measured for a source."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[str] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    stage: Mapped[str | None] = mapped_column(String(100), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    upload_path: Mapped[str] = mapped_column(String(1000))
    filename: Mapped[str] = mapped_column(String(300))
    file_hash: Mapped[str] = mapped_column(String(64), index=True)  # one copy per content
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    settings_hash: Mapped[str] = mapped_column(String(64))
    photometry_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # False when a retry cannot help (the file is not FITS or is damaged).
    retryable: Mapped[bool] = mapped_column(Boolean, default=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class LoginFailure(Base):
    """Login attempts of one client address or one account in the current window, shared by
    every web process. ``bucket`` is a SHA-256 of ``client:<address>`` or ``user:<name>``
    (typed names are not kept: people type passwords into the name field)."""

    __tablename__ = "login_failures"
    bucket: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
