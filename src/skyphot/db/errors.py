"""Errors of data access; the web layer maps them to HTTP statuses in ``web/errors.py``."""

from __future__ import annotations

from skyphot.errors import SkyphotError


class NotFoundError(SkyphotError):
    """The object does not exist, or the user may not see it."""


class PermissionDeniedError(SkyphotError):
    """The user may see the object but not change it."""


class ConflictError(SkyphotError):
    """The object already exists or is in a state that forbids the action."""


class AuthenticationError(SkyphotError):
    """No valid credentials were given."""
