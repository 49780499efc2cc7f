"""FastAPI dependencies: settings, database session, current user, feature flag."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from skyphot.db.crud import user_for_token
from skyphot.db.errors import AuthenticationError
from skyphot.db.models import User
from skyphot.jobs.queue import JobQueue
from skyphot.settings import Settings


def get_settings(request: Request) -> Settings:
    """The application's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_queue(request: Request) -> JobQueue:
    """The job queue backend."""
    queue: JobQueue = request.app.state.queue
    return queue


def get_session(request: Request) -> Iterator[Session]:
    """A database session for one request; committed by the route when it changes data."""
    with request.app.state.sessions() as session:
        yield session


def _token_user(request: Request, session: Session) -> User | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "token" or not token.strip():
        raise AuthenticationError("malformed Authorization header; send 'token <TOKEN>'")
    user = user_for_token(session, token.strip())
    if user is None:
        raise AuthenticationError("the API token is not valid; create one with "
                                  "`skyphot admin-token` or on your profile")
    return user


def optional_user(request: Request, session: Session) -> User | None:
    """The user of an API token or of the login cookie, or None."""
    user = _token_user(request, session)
    if user is not None:
        return user
    user_id = request.session.get("user_id")
    return session.get(User, user_id) if isinstance(user_id, int) else None


def current_user(
    request: Request, session: Annotated[Session, Depends(get_session)]
) -> User:
    """The authenticated user; AuthenticationError (401) when none."""
    user = optional_user(request, session)
    if user is None:
        raise AuthenticationError(
            "authentication required: send 'Authorization: token <TOKEN>' or log in"
        )
    return user


class LoginRequiredError(AuthenticationError):
    """A page was asked for without a login; answered with a redirect to the login form."""

    def __init__(self, target: str) -> None:
        super().__init__("log in to see this page")
        self.target = target


def page_user(
    request: Request, session: Annotated[Session, Depends(get_session)]
) -> User:
    """The logged-in user of a page; ``LoginRequiredError`` (a redirect to /login) when none."""
    user = optional_user(request, session)
    if user is None:
        query = f"?{request.url.query}" if request.url.query else ""
        raise LoginRequiredError(request.url.path + query)
    return user


def image_analysis_enabled(settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """404 when the image_analysis feature flag is off: the endpoint does not exist."""
    if not settings.image_analysis:
        raise HTTPException(status_code=404, detail="Not Found")


SessionDep = Annotated[Session, Depends(get_session)]
UserDep = Annotated[User, Depends(current_user)]
PageUserDep = Annotated[User, Depends(page_user)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
