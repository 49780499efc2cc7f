"""Sky coordinates typed by people: decimal degrees or sexagesimal text."""

from __future__ import annotations

import math
import re

# "10:00:31.365", "10 00 31.365", "10h00m31.365s", "+02:09:42.92", "-02d09m42.9s", "2°09′42″"
_SEXAGESIMAL = re.compile(
    r"^([+-]?)(\d{1,3})(?:\s*[:\shd°]\s*|\s+)(\d{1,2})(?:\s*[:\sm'′]\s*|\s+)"
    r"(\d{1,2}(?:\.\d*)?)\s*[s\"″]?$"
)


def _sexagesimal(text: str) -> tuple[float, bool] | None:
    """(value in the text's unit, negative) of sexagesimal text, or None if it is not."""
    match = _SEXAGESIMAL.match(text.strip().lower().replace("''", '"'))
    if match is None:
        return None
    sign, whole, minutes, seconds = match.groups()
    if int(minutes) >= 60 or float(seconds) >= 60:
        raise ValueError(f"{text!r}: minutes and seconds must be below 60")
    value = int(whole) + int(minutes) / 60 + float(seconds) / 3600
    return value, sign == "-"


def parse_ra(text: str) -> float:
    """Right ascension in degrees from decimal degrees or sexagesimal hours (h:m:s).

    ``ValueError`` with a one-line message when the text is neither or out of range.
    """
    stripped = text.strip()
    hms = _sexagesimal(stripped)
    if hms is not None:
        hours, negative = hms
        if negative or hours >= 24:
            raise ValueError(f"RA {stripped!r} must be 0h to 24h")
        return hours * 15.0
    try:
        value = float(stripped)
    except ValueError:
        raise ValueError(f"RA {stripped!r} is neither degrees (150.1307) nor hours "
                         "(10:00:31.37 or 10h00m31.37s)") from None
    if not (math.isfinite(value) and 0 <= value < 360):
        raise ValueError(f"RA {stripped!r} must be between 0 and 360 degrees")
    return value


def parse_dec(text: str) -> float:
    """Declination in degrees from decimal degrees or sexagesimal degrees (d:m:s)."""
    stripped = text.strip()
    dms = _sexagesimal(stripped)
    if dms is not None:
        degrees, negative = dms
        value = -degrees if negative else degrees
    else:
        try:
            value = float(stripped)
        except ValueError:
            raise ValueError(f"Dec {stripped!r} is neither degrees (2.1619) nor "
                             "sexagesimal (+02:09:42.9 or +02d09m42.9s)") from None
    if not (math.isfinite(value) and -90 <= value <= 90):
        raise ValueError(f"Dec {stripped!r} must be between -90 and +90 degrees")
    return value
