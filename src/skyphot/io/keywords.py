"""Reading single header keywords as text or numbers, with messages that name them."""

from __future__ import annotations

import math

from astropy.io.fits import Header

from skyphot.errors import HeaderError


def keyword_text(header: Header, key: str) -> str | None:
    """A keyword's value as stripped text; None when absent or blank."""
    value = header.get(key)
    if value is None or isinstance(value, bool):
        return None
    return str(value).strip() or None


def keyword_number(header: Header, key: str) -> float | None:
    value = header.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def required_number(header: Header, key: str, option: str) -> float:
    number = keyword_number(header, key)
    if number is None:
        raise HeaderError(
            f"{key}={header[key]!r} is not a number; give the right value with {option}"
        )
    return number
