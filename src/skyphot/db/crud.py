"""Create/read/update/delete of users, groups, sources, instruments and photometry.

Access rule: an admin sees everything; a user sees a source when they share a group with
it; photometry may be deleted by its owner or an admin.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence

from sqlalchemy import Select, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from skyphot.db.errors import ConflictError, NotFoundError, PermissionDeniedError
from skyphot.db.models import (
    Group,
    Instrument,
    Job,
    Photometry,
    Source,
    Token,
    User,
    source_groups,
    user_groups,
)
from skyphot.db.security import hash_password, new_token, token_digest, verify_password

# --- users, groups, tokens ----------------------------------------------------------------


def get_or_create_group(session: Session, name: str) -> Group:
    """The group called ``name``, created when missing."""
    group = session.scalar(select(Group).where(Group.name == name))
    if group is None:
        group = Group(name=name)
        session.add(group)
        session.flush()
    return group


def create_user(
    session: Session,
    username: str,
    password: str | None,
    *,
    is_admin: bool = False,
    groups: Sequence[str] = (),
) -> User:
    """A new account; it always joins its own personal group plus ``groups``."""
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise ConflictError(f"user {username!r} already exists")
    user = User(
        username=username,
        password_hash=hash_password(password) if password else None,
        is_admin=is_admin,
    )
    names = [f"user:{username}", *groups]
    user.groups = [get_or_create_group(session, name) for name in dict.fromkeys(names)]
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, username: str) -> User | None:
    """The account called ``username``, or None."""
    return session.scalar(select(User).where(User.username == username))


def list_users(session: Session) -> list[User]:
    """All accounts by name."""
    return list(session.scalars(select(User).order_by(User.username)))


def set_password(user: User, password: str) -> None:
    """Replace the user's password."""
    user.password_hash = hash_password(password)


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user whose password matches, or None (same work for unknown users)."""
    user = get_user(session, username)
    # An unknown user (or one without a password) costs one hash check too: the answer time
    # must not tell which account names exist.
    stored = user.password_hash if user is not None else None
    if not verify_password(password, stored or _decoy_hash()) or not stored:
        return None
    return user


@functools.cache
def _decoy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def create_token(session: Session, user: User, name: str = "api") -> str:
    """A new API token for ``user``; the plain token is returned once, only its hash kept."""
    token = new_token()
    session.add(Token(user_id=user.id, token_hash=token_digest(token), name=name))
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The owner of ``token``, or None."""
    row = session.scalar(select(Token).where(Token.token_hash == token_digest(token)))
    return row.user if row is not None else None


# --- sources --------------------------------------------------------------------------


def _visible(user: User) -> Select[Source]:
    query = select(Source)
    if user.is_admin:
        return query
    shared = exists().where(
        source_groups.c.source_id == Source.id,
        source_groups.c.group_id == user_groups.c.group_id,
        user_groups.c.user_id == user.id,
    )
    return query.where(shared)


def can_see(user: User, source: Source) -> bool:
    """True when ``user`` may see ``source``."""
    if user.is_admin:
        return True
    mine = {g.id for g in user.groups}
    return any(g.id in mine for g in source.groups)


def get_source(session: Session, user: User, source_id: str) -> Source:
    """The source, if the user may see it; NotFoundError otherwise (no existence leak)."""
    source = session.get(Source, source_id)
    if source is None or not can_see(user, source):
        raise NotFoundError(f"source {source_id!r} not found (or not shared with you)")
    return source


def list_sources(session: Session, user: User, search: str | None = None) -> list[Source]:
    """Sources the user may see, newest first; ``search`` matches id or name."""
    query = _visible(user)
    if search:
        pattern = f"%{search.lower()}%"
        query = query.where(
            or_(func.lower(Source.id).like(pattern), func.lower(Source.name).like(pattern))
        )
    return list(session.scalars(query.order_by(Source.created_at.desc(), Source.id)))


def source_names(session: Session, user: User) -> list[tuple[str, str | None, str | None,
                                                               float, float]]:
    """(id, name, SkyPortal id, ra, dec) of every source the user may see, newest first: the
    names a new source may be given by instead of coordinates."""
    visible = _visible(user).subquery()
    query = select(visible.c.id, visible.c.name, visible.c.skyportal_id, visible.c.ra,
                   visible.c.dec).order_by(visible.c.created_at.desc(), visible.c.id)
    return [(r[0], r[1], r[2], float(r[3]), float(r[4])) for r in session.execute(query)]


def create_source(
    session: Session,
    user: User,
    *,
    source_id: str,
    ra: float,
    dec: float,
    name: str | None = None,
    redshift: float | None = None,
    groups: Sequence[str] | None = None,
    position_origin: str | None = None,
    position_note: str | None = None,
) -> Source:
    """A new source shared with ``groups`` (default: all the creator's groups).

    ``ra``/``dec`` in degrees; ``position_origin``/``position_note`` say where they came
    from. ConflictError when the id exists; PermissionDeniedError when a group is not one of
    the user's.
    """
    if session.get(Source, source_id) is not None:
        raise ConflictError(f"a source with id {source_id!r} already exists; choose another id")
    own = {g.name: g for g in user.groups}
    if groups is None:
        chosen = list(own.values())
    else:
        unknown = [g for g in groups if g not in own and not user.is_admin]
        if unknown:
            raise PermissionDeniedError(
                f"you are not a member of group(s) {', '.join(unknown)}"
            )
        chosen = [own.get(g) or get_or_create_group(session, g) for g in groups]
    source = Source(
        id=source_id, ra=ra, dec=dec, name=name, redshift=redshift, created_by=user.id,
        position_origin=position_origin, position_note=position_note,
    )
    source.groups = chosen
    session.add(source)
    session.flush()
    return source


# --- photometry --------------------------------------------------------------------------


def list_photometry(session: Session, source_id: str) -> list[Photometry]:
    """All points of a source in time order."""
    query = select(Photometry).where(Photometry.source_id == source_id)
    return list(session.scalars(query.order_by(Photometry.mjd, Photometry.id)))


def find_upload_point(
    session: Session, source_id: str, file_hash: str, settings_hash: str
) -> Photometry | None:
    """The point an identical earlier upload produced, if any."""
    return session.scalar(
        select(Photometry).where(
            Photometry.source_id == source_id,
            Photometry.file_hash == file_hash,
            Photometry.settings_hash == settings_hash,
        )
    )


def get_photometry(session: Session, user: User, photometry_id: int) -> Photometry:
    """A point of a source the user may see; NotFoundError otherwise."""
    point = session.get(Photometry, photometry_id)
    source = None if point is None else session.get(Source, point.source_id)
    if point is None or source is None or not can_see(user, source):
        # The same answer whether the point is missing or hidden: never name its source.
        raise NotFoundError(f"photometry point {photometry_id} not found")
    return point


def delete_photometry(session: Session, user: User, photometry_id: int) -> None:
    """Delete one point; only its owner or an admin may."""
    point = session.get(Photometry, photometry_id)
    source = None if point is None else session.get(Source, point.source_id)
    if point is None or source is None or not can_see(user, source):
        # The same answer whether the point is missing or hidden: never name its source.
        raise NotFoundError(f"photometry point {photometry_id} not found")
    if not (user.is_admin or point.owner_id == user.id):
        raise PermissionDeniedError(
            "only the owner of a photometry point or an admin may delete it"
        )
    session.execute(delete(Photometry).where(Photometry.id == photometry_id))


# --- instruments -------------------------------------------------------------------------


def list_instruments(session: Session) -> list[Instrument]:
    """All instruments by name."""
    return list(session.scalars(select(Instrument).order_by(Instrument.name)))


def get_instrument(session: Session, name: str) -> Instrument | None:
    """The instrument called ``name`` (case-insensitive), or None."""
    return session.scalar(select(Instrument).where(func.lower(Instrument.name) == name.lower()))


def create_instrument(
    session: Session,
    name: str,
    filters: Sequence[str] = (),
    *,
    gain: float | None = None,
    saturation: float | None = None,
) -> Instrument:
    """A new instrument; ``gain`` in e-/ADU, ``saturation`` in ADU."""
    if get_instrument(session, name) is not None:
        raise ConflictError(f"instrument {name!r} already exists")
    instrument = Instrument(
        name=name, filters=list(dict.fromkeys(filters)), gain=gain, saturation=saturation
    )
    session.add(instrument)
    session.flush()
    return instrument


def ensure_instrument(session: Session, name: str, filter_name: str | None) -> Instrument:
    """The instrument called ``name``, created if new, with ``filter_name`` added to it."""
    instrument = get_instrument(session, name)
    if instrument is None:
        # Two workers may meet a new instrument at once: insert in a savepoint, and if the
        # other won the race, use its row.
        try:
            with session.begin_nested():
                return create_instrument(session, name, [filter_name] if filter_name else [])
        except (IntegrityError, ConflictError):
            instrument = get_instrument(session, name)
            if instrument is None:
                raise
    if filter_name and filter_name not in instrument.filters:
        instrument.filters = [*instrument.filters, filter_name]
    return instrument


def update_instrument(
    session: Session,
    instrument_id: int,
    *,
    name: str | None = None,
    filters: Sequence[str] | None = None,
    gain: float | None = None,
    saturation: float | None = None,
) -> Instrument:
    """Change an instrument; None leaves a value as it is. A rename also renames the
    instrument on its photometry points (they name it by text)."""
    instrument = session.get(Instrument, instrument_id)
    if instrument is None:
        raise NotFoundError(f"instrument {instrument_id} not found")
    if name is not None and name != instrument.name:
        other = get_instrument(session, name)
        if other is not None and other.id != instrument.id:
            raise ConflictError(f"instrument {name!r} already exists")
        session.execute(
            update(Photometry).where(Photometry.instrument == instrument.name)
            .values(instrument=name)
        )
        instrument.name = name
    if filters is not None:
        instrument.filters = list(dict.fromkeys(f.strip() for f in filters if f.strip()))
    if gain is not None:
        instrument.gain = gain
    if saturation is not None:
        instrument.saturation = saturation
    session.flush()
    return instrument


def delete_instrument(session: Session, instrument_id: int) -> None:
    """Delete an instrument no photometry point uses (ConflictError otherwise)."""
    instrument = session.get(Instrument, instrument_id)
    if instrument is None:
        raise NotFoundError(f"instrument {instrument_id} not found")
    used = session.scalar(
        select(func.count()).select_from(Photometry)
        .where(func.lower(Photometry.instrument) == instrument.name.lower())
    ) or 0
    if used:
        raise ConflictError(
            f"instrument {instrument.name!r} is used by {used} photometry point(s); "
            "it can only be deleted when unused"
        )
    session.delete(instrument)
    session.flush()


# --- editing and sharing ------------------------------------------------------------------


def editable_point(session: Session, user: User, photometry_id: int) -> Photometry:
    """A point the user may change: its owner or an admin, on a source they see."""
    point = session.get(Photometry, photometry_id)
    if point is None:
        raise NotFoundError(f"photometry point {photometry_id} not found")
    get_source(session, user, point.source_id)
    if not (user.is_admin or point.owner_id == user.id):
        raise PermissionDeniedError("only the owner of a photometry point or an admin may "
                                    "change it")
    return point


def update_photometry(
    session: Session,
    user: User,
    photometry_id: int,
    *,
    filter_name: str | None = None,
    instrument: str | None = None,
    mjd: float | None = None,
    comment: str | None = None,
) -> Photometry:
    """Change a point's metadata (None leaves a value; an empty comment clears it)."""
    point = editable_point(session, user, photometry_id)
    if filter_name is not None:
        point.filter = filter_name.strip()
    if instrument is not None:
        point.instrument = instrument.strip() or None
    if mjd is not None:
        point.mjd = mjd
    if comment is not None:
        point.comment = comment.strip() or None
    session.flush()
    return point


def delete_source(session: Session, user: User, source_id: str) -> None:
    """Delete a source with its photometry and jobs: its creator or an admin."""
    source = get_source(session, user, source_id)
    if not (user.is_admin or source.created_by == user.id):
        raise PermissionDeniedError("only the creator of a source or an admin may delete it")
    # Explicit, not left to ON DELETE CASCADE: SQLite enforces it only with a pragma.
    session.execute(delete(Photometry).where(Photometry.source_id == source_id))
    session.execute(delete(Job).where(Job.source_id == source_id))
    session.delete(source)
    session.flush()


def share_source(session: Session, user: User, source_id: str, groups: Sequence[str]) -> Source:
    """Share a source with exactly ``groups`` (its creator or an admin; own groups only,
    unless admin)."""
    source = get_source(session, user, source_id)
    if not (user.is_admin or source.created_by == user.id):
        raise PermissionDeniedError("only the creator of a source or an admin may share it")
    own = {g.name: g for g in user.groups}
    unknown = [g for g in groups if g not in own and not user.is_admin]
    if unknown:
        raise PermissionDeniedError(f"you are not a member of group(s) {', '.join(unknown)}")
    source.groups = [own.get(g) or get_or_create_group(session, g) for g in dict.fromkeys(groups)]
    session.flush()
    return source


def list_groups(session: Session, user: User) -> list[Group]:
    """Groups the user belongs to (all groups for an admin)."""
    if user.is_admin:
        return list(session.scalars(select(Group).order_by(Group.name)))
    return sorted(user.groups, key=lambda g: g.name)


def group_members(session: Session, group: Group) -> list[str]:
    """Login names of a group's members."""
    query = (select(User.username).join(user_groups, user_groups.c.user_id == User.id)
             .where(user_groups.c.group_id == group.id).order_by(User.username))
    return list(session.scalars(query))


def change_membership(
    session: Session, user: User, group_name: str, username: str, *, add: bool
) -> Group:
    """Add or remove a member: admins, or members of the group (never personal groups)."""
    group = session.scalar(select(Group).where(Group.name == group_name))
    if group is None:
        if not (add and user.is_admin):
            raise NotFoundError(f"group {group_name!r} not found")
        group = get_or_create_group(session, group_name)
    if group.name.startswith("user:"):
        raise PermissionDeniedError("personal groups (user:NAME) have exactly one member")
    if not user.is_admin and group.id not in {g.id for g in user.groups}:
        raise PermissionDeniedError(f"only members of {group_name!r} or an admin may change it")
    member = get_user(session, username)
    if member is None:
        raise NotFoundError(f"user {username!r} not found")
    ids = {g.id for g in member.groups}
    if add and group.id not in ids:
        member.groups = [*member.groups, group]
    elif not add:
        member.groups = [g for g in member.groups if g.id != group.id]
    session.flush()
    return group


def list_tokens(session: Session, user: User) -> list[Token]:
    """The user's API tokens, newest first (values are not stored)."""
    query = select(Token).where(Token.user_id == user.id).order_by(Token.id.desc())
    return list(session.scalars(query))


def revoke_token(session: Session, user: User, token_id: int) -> None:
    """Delete one of the user's tokens (an admin may delete anyone's)."""
    token = session.get(Token, token_id)
    if token is None or not (user.is_admin or token.user_id == user.id):
        raise NotFoundError(f"token {token_id} not found")
    session.delete(token)
    session.flush()
