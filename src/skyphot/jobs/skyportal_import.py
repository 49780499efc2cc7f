"""Import a source from SkyPortal by its id: position, redshift and aliases."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from skyphot.adapters.skyportal import SkyPortalClient
from skyphot.db import crud
from skyphot.db.models import Source, User


def import_source(
    session: Session,
    user: User,
    client: SkyPortalClient,
    obj_id: str,
    *,
    source_id: str | None = None,
    groups: Sequence[str] | None = None,
) -> Source:
    """Create a skyphot source from SkyPortal source ``obj_id`` (its id by default), linked
    to it so its points can be pushed back. The caller commits."""
    remote = client.get_source(obj_id)
    aliases = [a for a in remote.aliases if a and a != remote.obj_id]
    source = crud.create_source(
        session, user, source_id=source_id or remote.obj_id, ra=remote.ra, dec=remote.dec,
        name=aliases[0] if aliases else None, redshift=remote.redshift, groups=groups,
    )
    source.skyportal_id = remote.obj_id
    session.flush()
    return source
