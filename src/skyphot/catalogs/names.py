"""Object names to coordinates: first locally (names the caller already knows, such as the
user's sources, then a local name table), then through CDS Sesame (or a stand-in with the
same answers) when the online resolver is allowed.

Only the last step needs the network; sexagesimal or decimal coordinates never do.
"""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skyphot.core.coords import parse_dec, parse_ra
from skyphot.errors import CatalogServiceError, ConfigError, InputError

SESAME_URL = "https://cds.unistra.fr/cgi-bin/nph-sesame"
# Text output with all identifiers (-oI), first answer of Simbad, NED, then VizieR (SNV).
SESAME_QUERY = "/-oI/SNV"

ORIGINS = ("given", "source", "name_table", "sesame", "skyportal")
"""Where a source's position can come from (``Source.position_origin``)."""


class UnknownNameError(InputError):
    """No resolver knows the name."""


class NameServiceError(CatalogServiceError):
    """The online name resolver could not be reached or answered badly."""


# --- names -----------------------------------------------------------------------------------

# A TNS designation: year and 1-4 letters, with the optional AT/SN prefix ("SN 2023ixf",
# "AT2023ixf" and "2023ixf" are one object; TNS changes the prefix on classification).
_TNS = re.compile(r"^(?:sn|at)?(\d{4}[a-z]{1,4})$")


def normalize_name(name: str) -> str:
    """The form names are compared in: case and spaces (and underscores) ignored, a TNS
    name without its AT/SN prefix. ``SN 2023ixf``, ``sn2023ixf`` and ``2023ixf`` are one."""
    key = re.sub(r"[\s_]+", "", name).casefold()
    match = _TNS.match(key)
    return match.group(1) if match else key


@dataclass(frozen=True)
class Resolved:
    """A name's position and where it came from (``origin`` one of ``ORIGINS``; ``note``
    says which source, table or database)."""

    ra: float
    dec: float
    origin: str
    note: str


@dataclass(frozen=True)
class KnownName:
    """A position the caller already has under one or more names (e.g. one of the user's
    sources: its id, name and SkyPortal id)."""

    names: tuple[str, ...]
    ra: float
    dec: float
    note: str


# --- the local name table --------------------------------------------------------------------


@dataclass
class NameTable:
    """Names from a local CSV/ECSV file (columns name, ra, dec, optional aliases)."""

    path: Path
    entries: dict[str, tuple[str, float, float]] = field(default_factory=dict)

    def lookup(self, name: str) -> Resolved | None:
        """The entry called ``name`` (normalised comparison), or None."""
        found = self.entries.get(normalize_name(name))
        if found is None:
            return None
        listed, ra, dec = found
        return Resolved(ra, dec, "name_table", f"{listed!r} in the local name table "
                        f"({self.path.name})")


_ALIAS_SPLIT = re.compile(r"[;|]")


def _cell(value: object) -> str:
    # Masked cells (empty in the file) come back as numpy masked constants printing "--".
    if value is None or getattr(value, "mask", False) is True or str(value) == "--":
        return ""
    return str(value).strip()


def read_name_table(path: Path) -> NameTable:
    """Read a name table; ``ConfigError`` naming the file (and the row) when it is unusable."""
    from astropy.table import Table  # astropy is heavy; only a configured table needs it

    fmt = "ascii.ecsv" if path.suffix.lower() == ".ecsv" else "ascii.csv"
    try:
        rows = Table.read(path, format=fmt)
    except FileNotFoundError:
        raise ConfigError(f"name table {path} does not exist; fix or unset name_table") from None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"name table {path} is not a readable {fmt[6:].upper()} table: "
                          f"{err}") from err
    columns = {str(c).strip().lower(): str(c) for c in rows.colnames}
    missing = [c for c in ("name", "ra", "dec") if c not in columns]
    if missing:
        raise ConfigError(f"name table {path} lacks column(s) {', '.join(missing)}; it needs "
                          "name, ra, dec (and optionally aliases)")
    table = NameTable(path)
    for number, row in enumerate(rows, start=1):
        where = f"name table {path.name}, row {number}"
        name = _cell(row[columns["name"]])
        if not name:
            raise ConfigError(f"{where}: the name is empty")
        try:
            ra = parse_ra(_cell(row[columns["ra"]]))
            dec = parse_dec(_cell(row[columns["dec"]]))
        except ValueError as err:
            raise ConfigError(f"{where} ({name}): {err}") from None
        aliases = _cell(row[columns["aliases"]]) if "aliases" in columns else ""
        for label in [name, *(a.strip() for a in _ALIAS_SPLIT.split(aliases) if a.strip())]:
            key = normalize_name(label)
            earlier = table.entries.get(key)
            if earlier is not None and earlier[0] != name:
                raise ConfigError(f"{where}: {label!r} already names {earlier[0]!r}; a name "
                                  "may stand for one object only")
            table.entries[key] = (name, ra, dec)
    return table


_TABLES: dict[Path, tuple[tuple[int, int], NameTable]] = {}
_TABLES_LOCK = threading.Lock()


def load_name_table(path: Path) -> NameTable:
    """The name table at ``path``, read again only when the file changed (so an edited
    table is used without a restart)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"name table {path} does not exist; fix or unset name_table") from None
    except OSError as err:
        raise ConfigError(f"name table {path} cannot be read: {err.strerror}") from err
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _TABLES_LOCK:
        cached = _TABLES.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    table = read_name_table(path)
    with _TABLES_LOCK:
        _TABLES[path] = (stamp, table)
    return table


# --- CDS Sesame ------------------------------------------------------------------------------

_DATABASE = re.compile(r"^#=\w=([^:(]+)")


def parse_sesame(text: str) -> tuple[float, float, str] | None:
    """(ra, dec in degrees, the database that answered) from Sesame's text answer (its
    ``%J ra dec`` line), or None when Sesame found nothing. ``NameServiceError`` when the
    text is not a Sesame answer (a proxy's error page, say)."""
    database = "Sesame"
    for line in text.splitlines():
        named = _DATABASE.match(line)
        if named:
            database = named.group(1).strip()
        elif line.startswith("%J "):
            parts = line[3:].split()
            try:
                ra, dec = float(parts[0]), float(parts[1])
            except (IndexError, ValueError):
                break
            if 0 <= ra < 360 and -90 <= dec <= 90:
                return ra, dec, database
            break
    if not any(line.startswith("#") for line in text.splitlines()):
        raise NameServiceError("the CDS Sesame service answered something else than a "
                               "Sesame answer")
    return None


def sesame_lookup(name: str, *, url: str = SESAME_URL,
                  timeout_s: float = 10.0) -> Resolved | None:
    """``name`` through Sesame at base ``url``: its position, or None when Sesame does not
    know it. ``NameServiceError`` when the service does not answer (or not as Sesame)."""
    target = f"{url.rstrip('/')}{SESAME_QUERY}?{urllib.parse.quote(name.strip())}"
    try:
        with urllib.request.urlopen(target, timeout=timeout_s) as answer:
            text = answer.read(1_000_000).decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        raise NameServiceError(f"the CDS Sesame service answered HTTP {err.code}") from err
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise NameServiceError(f"the CDS Sesame service did not answer ({reason})") from err
    found = parse_sesame(text)
    if found is None:
        return None
    ra, dec, database = found
    return Resolved(ra, dec, "sesame", f"CDS Sesame ({database})")


# --- all resolvers in turn -------------------------------------------------------------------


def lookup_known(name: str, known: Iterable[KnownName]) -> Resolved | None:
    """The first of ``known`` answering to ``name`` (normalised comparison), or None."""
    key = normalize_name(name)
    for entry in known:
        if any(normalize_name(label) == key for label in entry.names if label):
            return Resolved(entry.ra, entry.dec, "source", entry.note)
    return None


def resolve_name(
    name: str, *, known: Sequence[KnownName] = (), table: Path | None = None,
    online: bool = True, url: str = SESAME_URL, timeout_s: float = 10.0,
    before_online: Callable[[], None] | None = None,
) -> Resolved:
    """``name``'s position: among ``known`` (the user's sources), in the name ``table``,
    then through Sesame when ``online`` (``before_online`` is called first: the caller may
    release what it holds while the answer is awaited). When all fail, one error naming what
    was tried: ``UnknownNameError`` (HTTP 400) when the name is unknown,
    ``NameServiceError`` (503) when Sesame, the last hope, did not answer."""
    found = lookup_known(name, known)
    if found is None and table is not None:
        found = load_name_table(table).lookup(name)
    if found is not None:
        return found
    tried = (f"{name.strip()!r} is not in the local name table or among your sources"
             if table is not None else f"{name.strip()!r} is not among your sources (and no "
             "local name table is set)")
    if not online:
        raise UnknownNameError(f"{tried}, and the online name resolver is off; give ra and "
                               "dec (decimal or sexagesimal)")
    if before_online is not None:
        before_online()
    try:
        found = sesame_lookup(name, url=url, timeout_s=timeout_s)
    except NameServiceError as err:
        raise NameServiceError(f"{tried}; {err}; give ra and dec (decimal or "
                               "sexagesimal)") from err
    if found is None:
        raise UnknownNameError(f"{tried}, and CDS Sesame does not know it either; check the "
                               "spelling or give ra and dec")
    return found
