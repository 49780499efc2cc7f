"""Object names to coordinates through CDS Sesame (or a stand-in with the same answers).

Only names need the network; sexagesimal or decimal coordinates never do.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from skyphot.errors import CatalogServiceError, InputError

SESAME_URL = "https://cds.unistra.fr/cgi-bin/nph-sesame/-oI/SNV"


class UnknownNameError(InputError):
    """The name service does not know the name."""


def parse_sesame(text: str, name: str) -> tuple[float, float]:
    """(ra, dec) in degrees from Sesame's text answer (its ``%J ra dec`` line)."""
    for line in text.splitlines():
        if line.startswith("%J "):
            parts = line[3:].split()
            try:
                return float(parts[0]), float(parts[1])
            except (IndexError, ValueError):
                break
    raise UnknownNameError(f"no object called {name!r} is known to the name service; "
                           "check the spelling or give the coordinates")


def resolve_name(
    name: str, *, url: str = SESAME_URL, timeout_s: float = 10.0
) -> tuple[float, float]:
    """(ra, dec) in degrees of an object name. ``UnknownNameError`` for an unknown name,
    ``CatalogServiceError`` when the service cannot be reached."""
    target = f"{url}?{urllib.parse.quote(name.strip())}"
    try:
        with urllib.request.urlopen(target, timeout=timeout_s) as answer:
            text = answer.read(1_000_000).decode("utf-8", "replace")
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise CatalogServiceError(
            f"cannot resolve {name!r}: the name service is unreachable "
            f"({getattr(err, 'reason', err)}); give the coordinates instead"
        ) from err
    return parse_sesame(text, name)
