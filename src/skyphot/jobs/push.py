"""Pushing light-curve points to SkyPortal: a queue kept in the ``photometry`` rows.

A point to push is ``pending`` with a time it is due (``skyportal_next_at``). Workers (the
embedded queue's processes, or ``run_due_pushes`` called by a Celery worker's sweep or a
command) claim a due point atomically, send it, and end it ``pushed`` (with SkyPortal's
photometry id) or ``failed`` (with the reason). Time-outs, 5xx answers and unreachable
servers are retried with a doubling back-off up to ``skyportal.max_attempts``.

Exactly once: the id SkyPortal returns is stored, and a point that has one is updated
(``PATCH``) instead of posted again. Before its first request a point gets skyphot's own id
(``skyportal_uid``, committed, sent in ``altdata.skyphot_uid``); an attempt whose answer was
lost may still have created the point, so any later attempt of a point without a SkyPortal
id first looks for its uid among the source's SkyPortal points and adopts what it finds.
Only one worker pushes a point at a time (an atomic claim; re-queuing keeps the claim).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from skyphot import __version__
from skyphot.adapters.skyportal import PushPoint, SkyPortalClient, build_payload
from skyphot.db.models import Photometry, Source, utcnow
from skyphot.errors import ConfigError, SkyphotError, SkyPortalError
from skyphot.settings import Settings, SkyPortalSettings

log = logging.getLogger(__name__)

OFF, PENDING, PUSHED, FAILED = "off", "pending", "pushed", "failed"


def client_for(settings: SkyPortalSettings) -> SkyPortalClient:
    """A client of the configured SkyPortal; ``ConfigError`` when it is not configured."""
    if settings.url is None or settings.token is None:
        raise ConfigError(
            "SkyPortal is not configured: set skyportal.url and skyportal.token in "
            "config.yaml (or SKYPHOT_SKYPORTAL_URL and SKYPHOT_SKYPORTAL_TOKEN)"
        )
    return SkyPortalClient(settings.url, settings.token.get_secret_value(),
                           timeout=settings.timeout_s)


def mark_pending(point: Photometry) -> None:
    """Queue ``point`` for a push now (a pushed point is then updated, not re-posted)."""
    point.skyportal_state = PENDING
    point.skyportal_error = None
    point.skyportal_attempts = 0
    point.skyportal_next_at = utcnow()
    # The claim stays: a push in flight must not be taken by a second worker meanwhile.


def auto_push_wanted(settings: SkyPortalSettings, source: Source) -> bool:
    """Whether a new point of ``source`` is pushed without being asked."""
    return settings.push == "auto" and settings.configured and source.skyportal_id is not None


def claim(session: Session, point_id: int, *, stale_after_s: float) -> bool:
    """Atomically take a due pending point (a claim older than ``stale_after_s`` belonged
    to a worker that died and may be taken over)."""
    now = utcnow()
    result = session.execute(
        update(Photometry)
        .where(
            Photometry.id == point_id,
            Photometry.skyportal_state == PENDING,
            or_(Photometry.skyportal_next_at.is_(None), Photometry.skyportal_next_at <= now),
            or_(Photometry.skyportal_claimed_at.is_(None),
                Photometry.skyportal_claimed_at < now - timedelta(seconds=stale_after_s)),
        )
        .values(skyportal_claimed_at=now,
                skyportal_attempts=Photometry.skyportal_attempts + 1)
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


def due(session: Session, *, limit: int = 20) -> list[int]:
    """Ids of pending points whose time has come, oldest first."""
    now = utcnow()
    query = (
        select(Photometry.id)
        .where(Photometry.skyportal_state == PENDING,
               or_(Photometry.skyportal_next_at.is_(None), Photometry.skyportal_next_at <= now))
        .order_by(Photometry.skyportal_next_at, Photometry.id)
        .limit(limit)
    )
    return [int(i) for i in session.scalars(query)]


def _instrument(settings: SkyPortalSettings, name: str | None) -> int | str:
    if name is not None:
        for key, value in settings.instruments.items():
            if key.lower() == name.lower():
                return value
    known = ", ".join(sorted(settings.instruments)) or "none"
    raise SkyPortalError(
        f"instrument {name or '(unknown)'!r} has no SkyPortal instrument: add it to "
        f"skyportal.instruments in config.yaml (mapped now: {known})"
    )


def push_point(session: Session, point: Photometry, settings: SkyPortalSettings,
               client: SkyPortalClient) -> int:
    """Send one point (post, or update when SkyPortal already has it); returns its id."""
    source = session.get(Source, point.source_id)
    if source is None or source.skyportal_id is None:
        raise SkyPortalError(
            f"source {point.source_id!r} is not linked to a SkyPortal source; import it from "
            "SkyPortal (skyphot skyportal import OBJ_ID) to push its points"
        )
    obj_id = source.skyportal_id
    instrument_id = client.instrument_id(_instrument(settings, point.instrument))
    maybe_sent = point.skyportal_uid is not None
    if not maybe_sent:
        # Stored before the first request: from then on a retry knows to look for the point.
        point.skyportal_uid = uuid.uuid4().hex
        session.commit()
    assert point.skyportal_uid is not None
    payload = build_payload(
        PushPoint(
            point_id=point.id, uid=point.skyportal_uid, mjd=point.mjd,
            filter=point.filter, magsys=point.magsys, instrument=point.instrument,
            mag=point.mag, magerr=point.magerr, limiting_mag=point.limiting_mag,
            limit_sigma=point.limit_sigma, job_id=point.job_id,
            calibration=point.calibration or {},
        ),
        obj_id=obj_id, instrument_id=instrument_id,
        group_ids=settings.group_ids, version=__version__, filter_overrides=settings.filters,
    )
    known = point.skyportal_id
    if known is None and maybe_sent:
        # An earlier attempt may have landed without us hearing the answer.
        known = client.find_photometry(obj_id, point.skyportal_uid)
    if known is not None:
        try:
            client.update_photometry(known, payload)
            return known
        except SkyPortalError as err:
            if err.status not in (400, 404):
                raise
            # Deleted in SkyPortal meanwhile: post it again below.
    return client.post_photometry(payload)


def _backoff(settings: SkyPortalSettings, attempts: int) -> float:
    return float(settings.backoff_s * 2 ** max(0, attempts - 1))


def run_push(sessions: sessionmaker[Session], point_id: int, settings: Settings, *,
             client: SkyPortalClient | None = None) -> str | None:
    """Claim and push one point; returns its new state (None: not claimable now)."""
    config = settings.skyportal
    with sessions() as session:
        if not claim(session, point_id, stale_after_s=3 * config.timeout_s + 30):
            return None
        point = session.get(Photometry, point_id)
        if point is None:
            return None
        try:
            remote_id = push_point(session, point, config, client or client_for(config))
        except SkyphotError as err:
            retry = (isinstance(err, SkyPortalError) and err.retryable
                     and point.skyportal_attempts < config.max_attempts)
            point.skyportal_error = str(err)
            point.skyportal_claimed_at = None
            if retry:
                delay = _backoff(config, point.skyportal_attempts)
                point.skyportal_next_at = utcnow() + timedelta(seconds=delay)
                log.warning("push of point %s failed (attempt %d), retrying in %g s: %s",
                            point_id, point.skyportal_attempts, delay, err)
            else:
                point.skyportal_state = FAILED
                log.warning("push of point %s failed: %s", point_id, err)
            session.commit()
            return point.skyportal_state
        except DBAPIError:
            raise  # the database is away: the claim goes stale and the push is taken again
        except Exception as err:  # a bug must fail this push readably, not kill the worker
            log.exception("push of point %s failed with an internal error", point_id)
            session.rollback()
            point.skyportal_state = FAILED
            point.skyportal_error = f"internal error while pushing ({type(err).__name__}: {err})"
            point.skyportal_claimed_at = None
            session.commit()
            return FAILED
        point.skyportal_state = PUSHED
        point.skyportal_id = remote_id
        point.skyportal_error = None
        point.skyportal_claimed_at = None
        point.skyportal_next_at = None
        session.commit()
        return PUSHED


def run_due_pushes(sessions: sessionmaker[Session], settings: Settings, *,
                   limit: int = 20) -> int:
    """Push the points that are due (each claimed first); returns how many were tried."""
    with sessions() as session:
        ids = due(session, limit=limit)
    client = client_for(settings.skyportal) if ids and settings.skyportal.configured else None
    tried = 0
    for point_id in ids:
        if run_push(sessions, point_id, settings, client=client) is not None:
            tried += 1
    return tried


def delete_remote(settings: Settings, point: Photometry) -> None:
    """Delete a pushed point's SkyPortal copy (when it has one)."""
    if point.skyportal_id is not None:
        client_for(settings.skyportal).delete_photometry(point.skyportal_id)
