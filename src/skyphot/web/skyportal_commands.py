"""``skyphot skyportal import`` and ``skyphot skyportal push``: SkyPortal from a shell.

Both work on the local instance (``--data-dir``/``--config``, like ``admin-token``) and the
configured SkyPortal (``skyportal.url``/``skyportal.token``, or ``--server``/``--token``).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skyphot.settings import Settings


EXIT_OK = 0
EXIT_NOT_ALL_PUSHED = 1


def _settings(args: argparse.Namespace) -> Settings:
    from skyphot.settings import load_settings

    portal: dict[str, Any] = {}
    if args.server:
        portal["url"] = args.server
    if args.token:
        portal["token"] = args.token
    return load_settings(config_file=args.config, data_dir=args.data_dir,
                         overrides={"skyportal": portal} if portal else None)


def run_import(args: argparse.Namespace) -> int:
    """Import one SkyPortal source into the instance (owned by the admin account)."""
    # Every `skyphot` command builds this parser: the database layer is imported here.
    from skyphot.db.session import make_engine, make_sessionmaker, migrate
    from skyphot.jobs import push
    from skyphot.jobs.skyportal_import import import_source
    from skyphot.web.commands import ensure_admin

    settings = _settings(args)
    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        with make_sessionmaker(engine)() as session:
            admin, _ = ensure_admin(session, settings)
            source = import_source(session, admin, push.client_for(settings.skyportal),
                                   args.obj_id, source_id=args.id, groups=args.group or None)
            session.commit()
            out = {"id": source.id, "skyportal_id": source.skyportal_id, "ra": source.ra,
                   "dec": source.dec, "redshift": source.redshift, "name": source.name}
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(out))
    else:
        print(f"imported {out['skyportal_id']} as source {out['id']} "
              f"(RA {out['ra']:.6f}, Dec {out['dec']:+.6f}"
              + (f", z = {out['redshift']}" if out["redshift"] is not None else "") + ")")
    return EXIT_OK


def run_push(args: argparse.Namespace) -> int:
    """Push points now (a pushed point is updated in SkyPortal, never posted twice)."""
    from skyphot.db.errors import NotFoundError
    from skyphot.db.models import Photometry
    from skyphot.db.session import make_engine, make_sessionmaker, migrate
    from skyphot.jobs import push

    settings = _settings(args)
    client = push.client_for(settings.skyportal)
    engine = make_engine(settings.db_url)
    results = []
    try:
        migrate(engine)
        sessions = make_sessionmaker(engine)
        for point_id in args.point_ids:
            with sessions() as session:
                point = session.get(Photometry, point_id)
                if point is None:
                    raise NotFoundError(f"photometry point {point_id} not found")
                push.mark_pending(point)
                session.commit()
            push.run_push(sessions, point_id, settings, client=client)
            with sessions() as session:
                point = session.get(Photometry, point_id)
                assert point is not None
                results.append({"id": point_id, "state": point.skyportal_state,
                                "skyportal_id": point.skyportal_id,
                                "error": point.skyportal_error})
    finally:
        engine.dispose()
    for row in results:
        if args.json:
            print(json.dumps(row))
        else:
            detail = (f"SkyPortal id {row['skyportal_id']}" if row["state"] == push.PUSHED
                      else row["error"] or "")
            print(f"point {row['id']}: {row['state']} {detail}".rstrip())
    return EXIT_OK if all(r["state"] == push.PUSHED for r in results) else EXIT_NOT_ALL_PUSHED


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``skyportal import`` and ``skyportal push`` to the CLI."""
    portal = subparsers.add_parser(
        "skyportal", help="import sources from and push points to SkyPortal",
        description="Work with the SkyPortal instance configured in config.yaml "
        "(skyportal.url, skyportal.token) or given with --server/--token.",
    )
    sub = portal.add_subparsers(dest="skyportal_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=None,
                        help="SkyPortal URL (default: skyportal.url / SKYPHOT_SKYPORTAL_URL)")
    common.add_argument("--token", default=os.environ.get("SKYPHOT_SKYPORTAL_TOKEN"),
                        help="SkyPortal API token (default $SKYPHOT_SKYPORTAL_TOKEN or "
                        "skyportal.token; prefer the variable: arguments are visible to "
                        "other users)")
    common.add_argument("--data-dir", default=None, help="skyphot instance directory")
    common.add_argument("--config", default=None, help="config.yaml to use")
    common.add_argument("--json", action="store_true", help="print JSON")
    imp = sub.add_parser("import", parents=[common],
                         help="create a skyphot source from a SkyPortal source",
                         description="Create a source from SkyPortal's ra, dec, redshift and "
                         "aliases; it keeps the SkyPortal id so its points can be pushed.")
    imp.add_argument("obj_id", metavar="OBJ_ID", help="SkyPortal source id, e.g. ZTF22aayaehk")
    imp.add_argument("--id", default=None, help="skyphot source id (default: OBJ_ID)")
    imp.add_argument("--group", action="append", default=[],
                     help="skyphot group to share with (repeatable; default: the admin's)")
    imp.set_defaults(handler=run_import, func=run_import)
    send = sub.add_parser("push", parents=[common], help="push points to SkyPortal now",
                          description="Push (or update) photometry points in SkyPortal. Exit "
                          "status 0 when every point is pushed, 1 otherwise.")
    send.add_argument("point_ids", metavar="POINT_ID", type=int, nargs="+",
                      help="skyphot photometry point ids")
    send.set_defaults(handler=run_push, func=run_push)
