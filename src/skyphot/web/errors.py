"""The one place mapping errors to HTTP statuses, and the one JSON error shape:
``{"error": {"type": ..., "message": ...}}`` (plus ``"field"`` for a form field error)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from skyphot.db.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from skyphot.errors import (
    AnalysisError,
    CatalogServiceError,
    ExternalToolError,
    InputError,
    SkyphotError,
    SkyPortalError,
    SkyPortalNotFoundError,
)
from skyphot.web.deps import LoginRequiredError
from skyphot.web.security import CrossSiteRequestError, TooManyLoginsError


class PayloadTooLargeError(InputError):
    """The upload exceeds ``max_body_size``."""


class UploadQuotaError(SkyphotError):
    """Keeping the upload would exceed ``upload_quota_mb`` (HTTP 507)."""


class FieldError(InputError):
    """A form field holds an unusable value; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# Most specific first: the first class an error is an instance of decides.
STATUS: tuple[tuple[type[SkyphotError], int], ...] = (
    (AuthenticationError, 401),
    (CrossSiteRequestError, 403),
    (TooManyLoginsError, 429),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (SkyPortalNotFoundError, 404),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (UploadQuotaError, 507),
    (FieldError, 422),
    (InputError, 400),
    (AnalysisError, 422),
    (CatalogServiceError, 503),
    (SkyPortalError, 502),  # the upstream portal failed, not this server
    (ExternalToolError, 500),
    (SkyphotError, 500),
)


def status_for(error: SkyphotError) -> int:
    """The HTTP status of an error."""
    return next(code for cls, code in STATUS if isinstance(error, cls))


def error_body(kind: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON error shape."""
    body: dict[str, Any] = {"type": kind, "message": message}
    if field is not None:
        body["field"] = field
    return {"error": body}


def error_response(error: SkyphotError) -> JSONResponse:
    """JSON response for a skyphot error."""
    headers = {"WWW-Authenticate": "token"} if isinstance(error, AuthenticationError) else None
    return JSONResponse(
        error_body(type(error).__name__, str(error), getattr(error, "field", None)),
        status_code=status_for(error),
        headers=headers,
    )


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one JSON shape."""

    async def skyphot_handler(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SkyphotError)
        return error_response(exc)

    async def validation_handler(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = loc[-1] if loc else None
        message = f"{field}: {first['msg']}" if field else str(first["msg"])
        return JSONResponse(error_body("ValidationError", message, field), status_code=422)

    async def http_handler(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(
            error_body("HTTPError", str(exc.detail)), status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def login_handler(_request: Request, exc: Exception) -> RedirectResponse:
        assert isinstance(exc, LoginRequiredError)
        return RedirectResponse(f"/login?next={quote(exc.target)}", status_code=303)

    app.add_exception_handler(LoginRequiredError, login_handler)
    app.add_exception_handler(SkyphotError, skyphot_handler)
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_handler)
