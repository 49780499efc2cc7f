"""Server-rendered pages (Jinja2); they call the JSON API from a little JavaScript."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from skyphot.db import crud
from skyphot.db.errors import ConflictError, NotFoundError, PermissionDeniedError
from skyphot.db.models import User
from skyphot.errors import SkyPortalError
from skyphot.web.deps import SessionDep, SettingsDep, optional_user
from skyphot.web.schemas import InstrumentCreate, SourceCreate
from skyphot.web.views import add_source

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))


def _render(request: Request, name: str, user: User | None, status: int = 200,
            **context: Any) -> HTMLResponse:
    context.update(user=user, settings=request.app.state.settings)
    return templates.TemplateResponse(request, name, context, status_code=status)


def _login_redirect(request: Request) -> RedirectResponse:
    target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return RedirectResponse(f"/login?next={target}", status_code=303)


def _not_found(request: Request, user: User | None, message: str) -> HTMLResponse:
    return _render(request, "error.html", user, status=404, message=message)


@router.get("/vendor/plotly.min.js")
def plotly_bundle() -> FileResponse:
    """The plot library from the installed plotly package."""
    from skyphot.web.app import plotly_js

    return FileResponse(plotly_js(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


@router.get("/", response_model=None)
def home() -> Response:
    """Start page: the sources list."""
    return RedirectResponse("/sources", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/sources") -> HTMLResponse:
    """The login form."""
    return _render(request, "login.html", None, next=next, error=None)


@router.post("/login", response_model=None)
async def login(request: Request, session: SessionDep) -> Response:
    """Check the password and set the session cookie."""
    form = await request.form()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    target = str(form.get("next") or "/sources")
    if not target.startswith("/") or target.startswith("//"):
        target = "/sources"  # only local redirects
    # Password hashing and the database lookup block: never on the event loop.
    user = await run_in_threadpool(crud.authenticate, session, username, password)
    if user is None:
        return _render(request, "login.html", None, status=401, next=target,
                       error="wrong user name or password")
    request.session["user_id"] = user.id
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    """Forget the session."""
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/sources", response_model=None)
def sources_page(request: Request, session: SessionDep, q: str | None = None) -> Response:
    """List, search and create sources."""
    user = optional_user(request, session)
    if user is None:
        return _login_redirect(request)
    sources = crud.list_sources(session, user, q)
    return _render(request, "sources.html", user, sources=sources, q=q or "", errors={},
                   form={})


@router.post("/sources", response_model=None)
async def create_source(request: Request, session: SessionDep) -> Response:
    """Create a source from the form; errors are shown next to their field."""
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    # The database work blocks: it runs in the thread pool, not on the event loop.
    return await run_in_threadpool(_create_source, request, session, form)


def _create_source(request: Request, session: Session, form: dict[str, str]) -> Response:
    user = optional_user(request, session)
    if user is None:
        return _login_redirect(request)
    errors: dict[str, str] = {}
    try:
        body = SourceCreate.model_validate({k: v for k, v in form.items() if v != ""})
        source = add_source(session, user, request.app.state.settings, body)
        session.commit()
        return RedirectResponse(f"/source/{source.id}", status_code=303)
    except ValidationError as err:
        for item in err.errors():
            errors[str(item["loc"][0]) if item["loc"] else "id"] = item["msg"]
    except (ConflictError, PermissionDeniedError) as err:
        errors["id"] = str(err)
    except SkyPortalError as err:
        errors["skyportal_id"] = str(err)
    sources = crud.list_sources(session, user)
    return _render(request, "sources.html", user, status=422, sources=sources, q="",
                   errors=errors, form=form)


@router.get("/source/{source_id}", response_model=None)
def source_page(request: Request, source_id: str, session: SessionDep) -> Response:
    """A source: light curve, Image Analysis button, jobs and photometry table."""
    user = optional_user(request, session)
    if user is None:
        return _login_redirect(request)
    try:
        source = crud.get_source(session, user, source_id)
    except NotFoundError as err:
        return _not_found(request, user, str(err))
    return _render(request, "source.html", user, source=source)


@router.get("/source/{source_id}/image_analysis", response_model=None)
def image_analysis_page(request: Request, source_id: str, session: SessionDep,
                        settings: SettingsDep) -> Response:
    """The upload form (absent when the image_analysis flag is off)."""
    user = optional_user(request, session)
    if not settings.image_analysis:
        return _not_found(request, user, "image analysis is not enabled on this server")
    if user is None:
        return _login_redirect(request)
    try:
        source = crud.get_source(session, user, source_id)
    except NotFoundError as err:
        return _not_found(request, user, str(err))
    instruments = [{"name": i.name, "filters": i.filters, "gain": i.gain,
                    "saturation": i.saturation} for i in crud.list_instruments(session)]
    return _render(request, "image_analysis.html", user, source=source,
                   instruments=instruments)


@router.get("/instruments", response_model=None)
def instruments_page(request: Request, session: SessionDep) -> Response:
    """Instruments and their filters."""
    user = optional_user(request, session)
    if user is None:
        return _login_redirect(request)
    return _render(request, "instruments.html", user,
                   instruments=crud.list_instruments(session), errors={}, form={})


@router.post("/instruments", response_model=None)
async def add_instrument(request: Request, session: SessionDep) -> Response:
    """Add an instrument from the form."""
    form = {k: str(v).strip() for k, v in (await request.form()).items()}
    return await run_in_threadpool(_add_instrument, request, session, form)


def _add_instrument(request: Request, session: Session, form: dict[str, str]) -> Response:
    user = optional_user(request, session)
    if user is None:
        return _login_redirect(request)
    errors: dict[str, str] = {}
    try:
        values: dict[str, Any] = {k: v for k, v in form.items() if v != ""}
        values["filters"] = [f.strip() for f in form.get("filters", "").split(",") if f.strip()]
        body = InstrumentCreate.model_validate(values)
        crud.create_instrument(session, body.name, body.filters, gain=body.gain,
                               saturation=body.saturation)
        session.commit()
        return RedirectResponse("/instruments", status_code=303)
    except ValidationError as err:
        for item in err.errors():
            errors[str(item["loc"][0]) if item["loc"] else "name"] = item["msg"]
    except ConflictError as err:
        errors["name"] = str(err)
    return _render(request, "instruments.html", user, status=422,
                   instruments=crud.list_instruments(session), errors=errors, form=form)


@router.get("/profile", response_model=None)
def profile_page(request: Request, session: SessionDep) -> Response:
    """The user's account: groups, and a button to create an API token."""
    user = optional_user(request, session)
    if user is None:
        return _login_redirect(request)
    return _render(request, "profile.html", user, token=None)


@router.post("/profile/token", response_model=None)
def new_token(request: Request, session: SessionDep) -> Response:
    """Create an API token and show it once."""
    user = optional_user(request, session)
    if user is None:
        return _login_redirect(request)
    token = crud.create_token(session, user, name="web")
    session.commit()
    return _render(request, "profile.html", user, token=token)


