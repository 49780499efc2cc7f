"""Server-rendered pages (Jinja2); they call the JSON API from a little JavaScript.

Every page gets its user from ``PageUserDep`` (a redirect to the login form when there is
none). Handlers are plain ``def`` (FastAPI runs them in its thread pool) or, for the login,
``async`` with the password check in the thread pool: password hashing and database calls
never block the event loop.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from skyphot.db import crud
from skyphot.db.errors import ConflictError, NotFoundError, PermissionDeniedError
from skyphot.db.models import User
from skyphot.errors import CatalogServiceError, InputError, SkyPortalError
from skyphot.web.assets import plotly_js
from skyphot.web.deps import PageUserDep, SessionDep, SettingsDep
from skyphot.web.schemas import SourceCreate, instrument_form_values
from skyphot.web.security import LoginThrottle, TooManyLoginsError
from skyphot.web.views import add_source

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))

# Every failed login takes at least this long, whether the user exists or not, so the time
# of an answer tells nothing about which accounts exist.
LOGIN_FAILURE_S = 0.25


def _render(request: Request, name: str, user: User | None, status: int = 200,
            **context: Any) -> HTMLResponse:
    context.update(user=user, settings=request.app.state.settings)
    return templates.TemplateResponse(request, name, context, status_code=status)


def _not_found(request: Request, user: User | None, message: str) -> HTMLResponse:
    return _render(request, "error.html", user, status=404, message=message)


def _field_errors(err: ValidationError, default: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    for item in err.errors():
        field = str(item["loc"][0]) if item["loc"] else default
        message = str(item["msg"]).removeprefix("Value error, ")
        errors.setdefault(field, message)
    return errors


@router.get("/vendor/plotly.min.js")
def plotly_bundle() -> FileResponse:
    """The plot library from the installed plotly package."""
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


def _try_login(request: Request, client: str, username: str, password: str) -> int | None:
    """Count the attempt, check the password and record the outcome; the user id on success.

    In a worker thread: scrypt and the database never run on the event loop. The same work
    for an unknown account as for a wrong password. Its own short sessions, so no pooled
    connection is held while the answer waits. ``TooManyLoginsError`` when throttled.
    """
    throttle: LoginThrottle = request.app.state.login_throttle
    throttle.attempt(client, username)
    with request.app.state.sessions() as session:
        user = crud.authenticate(session, username, password)
        user_id = user.id if user is not None else None
    if user_id is None:
        throttle.failed(client, username)
    else:
        throttle.succeeded(client, username)
    return user_id


@router.post("/login", response_model=None)
async def login(
    request: Request,
    username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/sources",
) -> Response:
    """Check the password and set the session cookie."""
    target = next or "/sources"
    if not target.startswith("/") or target.startswith("//"):
        target = "/sources"  # only local redirects
    client = request.client.host if request.client else "unknown"
    started = time.monotonic()
    try:
        user_id = await run_in_threadpool(_try_login, request, client, username, password)
    except TooManyLoginsError as err:
        return _render(request, "login.html", None, status=429, next=target, error=str(err))
    if user_id is None:
        # The floor is awaited, not slept in a thread: waiting answers hold no resources.
        await asyncio.sleep(max(0.0, LOGIN_FAILURE_S - (time.monotonic() - started)))
        return _render(request, "login.html", None, status=401, next=target,
                       error="wrong user name or password")
    request.session["user_id"] = user_id
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    """Forget the session."""
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/sources", response_model=None)
def sources_page(request: Request, session: SessionDep, user: PageUserDep,
                 q: str | None = None) -> Response:
    """List, search and create sources."""
    sources = crud.list_sources(session, user, q)
    return _render(request, "sources.html", user, sources=sources, q=q or "", errors={},
                   form={})


@router.post("/sources", response_model=None)
def create_source(
    request: Request, session: SessionDep, user: PageUserDep,
    id: Annotated[str, Form()] = "", ra: Annotated[str, Form()] = "",
    dec: Annotated[str, Form()] = "", name: Annotated[str, Form()] = "",
    redshift: Annotated[str, Form()] = "", skyportal_id: Annotated[str, Form()] = "",
) -> Response:
    """Create a source from the form (or import it from SkyPortal); errors are shown next to
    their field."""
    form = {"id": id.strip(), "ra": ra.strip(), "dec": dec.strip(), "name": name.strip(),
            "redshift": redshift.strip(), "skyportal_id": skyportal_id.strip()}
    errors: dict[str, str] = {}
    try:
        body = SourceCreate.model_validate({k: v for k, v in form.items() if v != ""})
        source = add_source(session, user, request.app.state.settings, body)
        session.commit()
        return RedirectResponse(f"/source/{source.id}", status_code=303)
    except ValidationError as err:
        errors = _field_errors(err, "ra")
    except (InputError, CatalogServiceError) as err:
        errors["name"] = str(err)
    except (ConflictError, PermissionDeniedError) as err:
        errors["id"] = str(err)
    except SkyPortalError as err:
        errors["skyportal_id"] = str(err)
    sources = crud.list_sources(session, user)
    return _render(request, "sources.html", user, status=422, sources=sources, q="",
                   errors=errors, form=form)


@router.get("/source/{source_id}", response_model=None)
def source_page(request: Request, source_id: str, session: SessionDep,
                user: PageUserDep) -> Response:
    """A source: light curve, Image Analysis button, jobs and photometry table."""
    try:
        source = crud.get_source(session, user, source_id)
    except NotFoundError as err:
        return _not_found(request, user, str(err))
    can_delete = user.is_admin or source.created_by == user.id
    return _render(request, "source.html", user, source=source, can_delete=can_delete,
                   my_groups=sorted(g.name for g in user.groups))


@router.get("/source/{source_id}/image_analysis", response_model=None)
def image_analysis_page(request: Request, source_id: str, session: SessionDep,
                        settings: SettingsDep, user: PageUserDep) -> Response:
    """The upload form (absent when the image_analysis flag is off)."""
    if not settings.image_analysis:
        return _not_found(request, user, "image analysis is not enabled on this server")
    try:
        source = crud.get_source(session, user, source_id)
    except NotFoundError as err:
        return _not_found(request, user, str(err))
    instruments = [{"id": i.id, "name": i.name, "filters": i.filters, "gain": i.gain,
                    "saturation": i.saturation} for i in crud.list_instruments(session)]
    return _render(request, "image_analysis.html", user, source=source,
                   instruments=instruments)


@router.get("/jobs", response_model=None)
def jobs_page(request: Request, user: PageUserDep) -> Response:
    """All analysis jobs the user may see, filterable (the table loads from /api/jobs)."""
    return _render(request, "jobs.html", user)


@router.get("/instruments", response_model=None)
def instruments_page(request: Request, session: SessionDep, user: PageUserDep) -> Response:
    """Instruments and their filters: add, edit, delete."""
    return _render(request, "instruments.html", user,
                   instruments=crud.list_instruments(session), errors={}, form={})


@router.post("/instruments", response_model=None)
def add_instrument(
    request: Request, session: SessionDep, user: PageUserDep,
    name: Annotated[str, Form()] = "", filters: Annotated[str, Form()] = "",
    gain: Annotated[str, Form()] = "", saturation: Annotated[str, Form()] = "",
) -> Response:
    """Add an instrument from the form."""
    form = {"name": name.strip(), "filters": filters, "gain": gain.strip(),
            "saturation": saturation.strip()}
    errors: dict[str, str] = {}
    try:
        body = instrument_form_values(form)
        crud.create_instrument(session, body.name, body.filters, gain=body.gain,
                               saturation=body.saturation)
        session.commit()
        return RedirectResponse("/instruments", status_code=303)
    except ValidationError as err:
        errors = _field_errors(err, "name")
    except ConflictError as err:
        errors["name"] = str(err)
    return _render(request, "instruments.html", user, status=422,
                   instruments=crud.list_instruments(session), errors=errors, form=form)


@router.get("/profile", response_model=None)
def profile_page(request: Request, session: SessionDep, user: PageUserDep) -> Response:
    """The user's account: groups, API tokens (create, list, revoke), admin tools."""
    return _render(request, "profile.html", user, token=None,
                   tokens=crud.list_tokens(session, user))


@router.post("/profile/token", response_model=None)
def new_token(request: Request, session: SessionDep, user: PageUserDep,
              name: Annotated[str, Form()] = "web") -> Response:
    """Create an API token and show it once."""
    token = crud.create_token(session, user, name=name.strip()[:100] or "web")
    session.commit()
    return _render(request, "profile.html", user, token=token,
                   tokens=crud.list_tokens(session, user))
