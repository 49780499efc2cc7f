"""The application factory."""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from skyphot import __version__
from skyphot.db.session import make_engine, make_sessionmaker, migrate
from skyphot.errors import ToolNotFoundError
from skyphot.jobs.queue import JobQueue, NullQueue
from skyphot.settings import Settings
from skyphot.web import errors
from skyphot.web.routes import api, pages

WEB_DIR = Path(__file__).resolve().parent


def plotly_js() -> Path:
    """``plotly.min.js`` as shipped in the installed ``plotly`` package (no CDN)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise ToolNotFoundError("the plotly package is not installed: pip install 'plotly>=5.20'")
    return Path(spec.origin).resolve().parent / "package_data" / "plotly.min.js"


def secret_key(settings: Settings) -> str:
    """The cookie-signing key, made once per data directory (file mode 0600)."""
    path = settings.data_path / "secret_key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def create_app(settings: Settings, *, queue: JobQueue | None = None) -> FastAPI:
    """The web application: migrates the database, then serves pages and the API.

    ``queue`` is started and stopped with the application (default: ``NullQueue``, which
    runs nothing; ``skyphot serve`` passes an ``EmbeddedQueue``).
    """
    for directory in (settings.data_path, settings.upload_path, settings.jobs_path):
        directory.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    migrate(engine)
    job_queue: JobQueue = queue if queue is not None else NullQueue()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        job_queue.start()
        try:
            yield
        finally:
            job_queue.stop()
            engine.dispose()

    app = FastAPI(
        title="skyphot",
        version=__version__,
        description="Sources, light curves and image analysis. API authentication: "
        "`Authorization: token <TOKEN>` (see `skyphot admin-token`).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessionmaker(engine)
    app.state.queue = job_queue
    app.add_middleware(
        SessionMiddleware, secret_key=secret_key(settings), session_cookie="skyphot_session",
        same_site="lax", max_age=14 * 24 * 3600,
    )
    errors.install(app)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    return app
