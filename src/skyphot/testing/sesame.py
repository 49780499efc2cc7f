"""A local stand-in for the CDS Sesame name resolver, answering in Sesame's text format
(``.../nph-sesame/-oI/SNV?<name>``), so name resolution is tested without the network."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from skyphot.testing.loopback import StandInHandler, loopback_server


def sesame_answer(name: str, position: tuple[float, float] | None,
                  database: str = "Simbad") -> str:
    """Sesame's plain-text answer for ``name``: the ``%J`` line of a found object, or its
    "Nothing found" comment."""
    if position is None:
        return (f"# {name}\t#Q1\n#! *** Nothing found *** \n"
                "#====Done (2026-Dec-05,09:00:00z)====\n")
    ra, dec = position
    letter = database[0].upper()
    return (f"# {name}\t#Q1\n#={letter}={database} (CDS, via url):    1\n%@ 1\n"
            f"%I.0 {name}\n%J {ra:010.6f} {dec:+010.6f} = 00:00:00.00 +00:00:00.0\n"
            "#====Done (2026-Dec-05,09:00:00z)====\n")


@dataclass
class FakeSesame:
    """State of the local server: the names it knows and what it was asked. ``status``
    other than 200 answers that error; ``body`` (when set) is sent instead of an answer;
    ``delay_s`` holds the answer back."""

    url: str = ""
    names: dict[str, tuple[float, float]] = field(default_factory=dict)
    database: str = "Simbad"
    status: int = 200
    body: str | None = None
    delay_s: float = 0.0
    asked: list[str] = field(default_factory=list)


@contextmanager
def serve_sesame(state: FakeSesame | None = None) -> Iterator[FakeSesame]:
    """Run the stand-in on 127.0.0.1 (a free port) for the duration of the block;
    ``state.url`` is the base URL to configure (``name_resolver_url``)."""
    fake = state if state is not None else FakeSesame()
    done = threading.Event()

    class Handler(StandInHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            name = urllib.parse.unquote(query)
            fake.asked.append(name)
            if fake.delay_s:
                done.wait(fake.delay_s)
            if not path.endswith("/-oI/SNV"):
                text, status = "unknown path\n", 404
            elif fake.body is not None:
                text, status = fake.body, fake.status
            else:
                text = sesame_answer(name, fake.names.get(name), fake.database)
                status = fake.status
            self.reply(status, text.encode(), "text/plain")

    with loopback_server(Handler, stopping=done) as url:
        fake.url = f"{url}/cgi-bin/nph-sesame"
        yield fake
