"""The application factory."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from skyphot import __version__
from skyphot.catalogs.names import load_name_table
from skyphot.db.session import make_engine, make_sessionmaker, migrate
from skyphot.jobs.queue import JobQueue, NullQueue
from skyphot.settings import Settings
from skyphot.web import errors
from skyphot.web.assets import WEB_DIR, docs_assets
from skyphot.web.routes import api, pages
from skyphot.web.security import CrossSiteGuard, LoginThrottle


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
    if settings.name_table_path is not None:
        load_name_table(settings.name_table_path)  # a bad table stops start-up, naming it
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
        # Served below from the installed package's assets: the CDN defaults are blank offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = make_sessionmaker(engine)
    app.state.queue = job_queue
    app.state.login_throttle = LoginThrottle(app.state.sessions)
    app.add_middleware(
        SessionMiddleware, secret_key=secret_key(settings), session_cookie="skyphot_session",
        same_site="lax", max_age=14 * 24 * 3600,
    )
    app.add_middleware(CrossSiteGuard)
    errors.install(app)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    app.mount("/static-docs", StaticFiles(directory=docs_assets()), name="static-docs")
    _add_docs(app)
    return app


def _add_docs(app: FastAPI) -> None:
    """/docs (Swagger UI), /redoc and /favicon.ico from local files."""

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="skyphot API",
            swagger_js_url="/static-docs/swagger-ui-bundle.js",
            swagger_css_url="/static-docs/swagger-ui.css",
            swagger_favicon_url="/favicon.ico",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json", title="skyphot API",
            redoc_js_url="/static-docs/redoc.standalone.js", redoc_favicon_url="/favicon.ico",
            with_google_fonts=False,
        )

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(WEB_DIR / "static" / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "public, max-age=86400"})
