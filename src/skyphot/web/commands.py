"""`skyphot serve` and `skyphot admin-token`: start an instance, drive it from a shell.

The lead's CLI calls ``add_parsers(subparsers)``; each sub-command sets ``handler`` (and
``func``) to a callable taking the parsed namespace and returning the exit status.
"""

from __future__ import annotations

import argparse
import secrets
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from skyphot.db.models import Photometry, User
    from skyphot.settings import Settings

# Every `skyphot` command builds these parsers, so the database layer (~0.25 s of imports)
# is imported where it is used; a missing web extra must still show here, where the CLI
# turns it into an install hint.
for _extra in ("sqlalchemy", "fastapi"):
    if find_spec(_extra) is None:
        raise ModuleNotFoundError(f"No module named {_extra!r}", name=_extra)

ADMIN = "admin"
DEMO_SOURCE = "demo-transient"


def _secret_file(settings: Settings, name: str) -> Path:
    return settings.data_path / name


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)


def ensure_admin(session: Session, settings: Settings) -> tuple[User, str]:
    """The admin account (created on first use with a random password kept in the data
    directory, mode 0600) and its password."""
    from skyphot.db import crud

    password_file = _secret_file(settings, "admin_password")
    user = crud.get_user(session, ADMIN)
    if user is None or not password_file.is_file():
        password = secrets.token_urlsafe(12)
        if user is None:
            user = crud.create_user(session, ADMIN, password, is_admin=True)
        else:
            crud.set_password(user, password)
        _write_secret(password_file, password)
        session.commit()
    return user, password_file.read_text(encoding="utf-8").strip()


def ensure_admin_token(session: Session, settings: Settings) -> str:
    """The admin API token: the stored one if still valid, else a new one."""
    from skyphot.db import crud

    user, _ = ensure_admin(session, settings)
    token_file = _secret_file(settings, "admin_token")
    if token_file.is_file():
        token = token_file.read_text(encoding="utf-8").strip()
        if crud.user_for_token(session, token) is not None:
            return token
    token = crud.create_token(session, user, name="admin-token")
    session.commit()
    _write_secret(token_file, token)
    return token


@dataclass(frozen=True)
class DemoFiles:
    """What `serve --demo` prepared."""

    source_id: str
    image: Path | None
    catalog: Path | None
    note: str


def prepare_demo(session: Session, settings: Settings, admin: User) -> DemoFiles:
    """A demo source and a simulated frame (with its reference catalog) ready to upload."""
    from skyphot.db import crud
    from skyphot.db.models import Source

    directory = settings.data_path / "demo"
    try:
        from skyphot.testing import SimulationParams, simulate_frame
    except ImportError as err:
        note = f"the frame simulator is not available ({err}); no demo frame written"
        ra, dec = 150.1, 2.2
        image = catalog = None
    else:
        frame = simulate_frame(SimulationParams(target_mag=18.0), seed=1)
        paths = frame.write(directory, stem="demo_frame")
        image, catalog = Path(paths.image), Path(paths.catalog)
        truth = frame.truth
        ra, dec = (float(truth.ra), float(truth.dec)) if truth is not None else (150.1, 2.2)
        note = "upload the image with the catalog file on the Image Analysis page"
    if session.get(Source, DEMO_SOURCE) is None:
        crud.create_source(session, admin, source_id=DEMO_SOURCE, ra=ra, dec=dec,
                           name="Simulated transient")
        for point in demo_points(admin.id):
            session.add(point)
        session.commit()
    return DemoFiles(DEMO_SOURCE, image, catalog, note)


# (days after the first point, filter, AB magnitude or None for a limit, error or 5σ limit)
_DEMO_CURVE = (
    (0.0, "g", None, 21.3), (0.0, "r", None, 21.1),
    (3.0, "g", 19.42, 0.04), (3.1, "r", 19.61, 0.05),
    (7.0, "g", 18.35, 0.03), (7.1, "r", 18.48, 0.03),
    (12.0, "g", 18.62, 0.03), (12.1, "r", 18.41, 0.03),
)
DEMO_MJD0 = 60360.0


def demo_points(owner_id: int) -> list[Photometry]:
    """An illustrative rising and fading light curve in g and r (AB), starting with upper
    limits, so a new user sees what a light curve looks like before uploading."""
    from skyphot.db.models import Photometry

    points = []
    for days, band, mag, err in _DEMO_CURVE:
        if mag is None:
            sigma = 5.0
            fluxerr = 10 ** (-0.4 * (err - 23.9)) / sigma  # µJy: the limit is 5σ
            points.append(Photometry(
                source_id=DEMO_SOURCE, mjd=DEMO_MJD0 + days, mag=None, magerr=None,
                limiting_mag=err, limit_sigma=sigma, flux=0.0, fluxerr=fluxerr, snr=0.0,
                filter=band, instrument="DemoCam", magsys="AB", origin="demo",
                owner_id=owner_id, calibration={"catalog": "demo"},
                comment="illustrative demo point"))
            continue
        flux = 10 ** (-0.4 * (mag - 23.9))
        points.append(Photometry(
            source_id=DEMO_SOURCE, mjd=DEMO_MJD0 + days, mag=mag, magerr=err,
            limiting_mag=21.2, limit_sigma=5.0, flux=flux, fluxerr=flux * err / 1.0857,
            snr=1.0857 / err, filter=band, instrument="DemoCam", magsys="AB", origin="demo",
            owner_id=owner_id, calibration={"catalog": "demo"},
            comment="illustrative demo point"))
    return points


def _settings(args: argparse.Namespace) -> Settings:
    from skyphot.settings import load_settings

    overrides = {"host": getattr(args, "host", None), "port": getattr(args, "port", None),
                 "workers": getattr(args, "workers", None)}
    return load_settings(config_file=getattr(args, "config", None), data_dir=args.data_dir,
                         overrides=overrides)


def run_admin_token(args: argparse.Namespace) -> int:
    """Print the admin API token (creating the instance and token when needed)."""
    from skyphot.db.session import make_engine, make_sessionmaker, migrate

    settings = _settings(args)
    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        with make_sessionmaker(engine)() as session:
            print(ensure_admin_token(session, settings))
    finally:
        engine.dispose()
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Start the web server and its worker processes (blocks until interrupted)."""
    import uvicorn

    from skyphot.jobs.queue import make_queue
    from skyphot.jobs.runner import DEFAULT_ENGINE
    from skyphot.web.app import create_app
    from skyphot.web.shutdown import GracefulShutdown, WebServer, deadlines

    settings = _settings(args)
    # First: a signal during start-up must already stop cleanly.
    shutdown = GracefulShutdown(settings.shutdown_grace_s)
    shutdown.install()
    queue = make_queue(settings, engine=args.engine or DEFAULT_ENGINE)
    app = create_app(settings, queue=queue)
    with app.state.sessions() as session:
        admin, password = ensure_admin(session, settings)
        token = ensure_admin_token(session, settings)
        demo = prepare_demo(session, settings, admin) if args.demo else None
    shown_host = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0") else settings.host
    url = f"http://{shown_host}:{settings.port}"
    workers = (f"jobs go to the Celery queue {settings.celery_queue!r} at "
               f"{settings.broker_url}: start workers with 'skyphot worker'"
               if settings.queue == "celery" else f"{settings.workers} worker process(es)")
    lines = [
        f"skyphot is starting on {url}  (data: {settings.data_path}, {workers})",
        f"  log in as: {ADMIN} / {password}",
        f"  API token: {token}   (send 'Authorization: token {token}')",
    ]
    if demo is not None:
        lines.append(f"  demo source: {url}/source/{demo.source_id}")
        if demo.image is not None:
            lines.append(f"  demo frame:   {demo.image}")
            lines.append(f"  demo catalog: {demo.catalog}")
        lines.append(f"  ({demo.note})")
    print("\n".join(lines), flush=True)
    # Open live-notification streams never end by themselves: bound the wait for requests
    # (jobs get the rest of the grace period).
    requests_s = min(3, max(1, int(deadlines(settings.shutdown_grace_s, 0.0)[0])))
    server = WebServer(uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="info",
        timeout_graceful_shutdown=requests_s))
    shutdown.attach(server, queue)
    server.run()
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add `serve` and `admin-token` to the CLI."""
    serve = subparsers.add_parser(
        "serve", help="start the web application and its analysis workers",
        description="Start a fresh or existing skyphot instance (web pages, API, workers).",
    )
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="TCP port (default 5000)")
    serve.add_argument("--data-dir", default=None, help="instance directory (database, uploads)")
    serve.add_argument("--config", default=None, help="config.yaml to use")
    serve.add_argument("--workers", type=int, default=None, help="analysis worker processes")
    serve.add_argument("--engine", default=None, help=argparse.SUPPRESS)
    serve.add_argument("--demo", action="store_true",
                       help="create a demo source and a simulated frame ready to upload")
    serve.set_defaults(handler=run_serve, func=run_serve)
    token = subparsers.add_parser(
        "admin-token", help="create (or print) an admin API token",
        description="Print the admin API token of an instance, creating it when needed.",
    )
    token.add_argument("--data-dir", default=None, help="instance directory")
    token.add_argument("--config", default=None, help="config.yaml to use")
    token.set_defaults(handler=run_admin_token, func=run_admin_token)
