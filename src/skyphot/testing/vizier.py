"""A local stand-in for VizieR, for tests and benchmarks that must not reach the internet.

``votable_document`` writes VOTable answers in VizieR's shape; ``serve_vizier`` runs an HTTP
server on 127.0.0.1 that answers every query with ``FakeVizier.body`` and records the
requests, so online catalog providers can be pointed at ``FakeVizier.url``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from skyphot.testing.loopback import StandInHandler, loopback_server


def votable_document(
    table_id: str,
    fields: Sequence[tuple[str, str, str]],
    rows: Sequence[Sequence[object]],
) -> bytes:
    """A VizieR-shaped VOTable: one RESOURCE with one TABLE named after ``table_id``.

    ``fields`` are (name, datatype, unit); a ``None`` or NaN cell is written empty.
    """
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">',
        f'<INFO name="-source" value="{escape(table_id)}"/>',
        f'<RESOURCE name="{escape(table_id.rsplit("/", 1)[0])}">',
        f'<TABLE name="{escape(table_id)}">',
    ]
    for name, datatype, unit in fields:
        size = ' arraysize="*"' if datatype == "char" else ""
        unit_attr = f' unit="{escape(unit)}"' if unit else ""
        head.append(
            f'<FIELD name="{escape(name, {chr(34): "&quot;"})}" '
            f'datatype="{datatype}"{size}{unit_attr}/>'
        )
    body = ["<DATA><TABLEDATA>"]
    for row in rows:
        cells = []
        for value in row:
            text = (
                "" if value is None or (isinstance(value, float) and value != value) else str(value)
            )
            cells.append(f"<TD>{escape(text)}</TD>")
        body.append("<TR>" + "".join(cells) + "</TR>")
    body.append("</TABLEDATA></DATA>")
    tail = ["</TABLE>", "</RESOURCE>", "</VOTABLE>"]
    return "\n".join(head + body + tail).encode()


def empty_votable(table_id: str) -> bytes:
    """What VizieR sends when the cone holds no row: a resource without table data."""
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">',
            f'<INFO name="-source" value="{escape(table_id)}"/>',
            '<RESOURCE type="results">',
            '<INFO name="QUERY_STATUS" value="OK">no row found</INFO>',
            "</RESOURCE>",
            "</VOTABLE>",
        ]
    ).encode()


@dataclass
class FakeVizier:
    """State of the local server: what to answer and what was asked."""

    url: str = ""
    status: int = 200
    body: bytes = b""
    content_type: str = "text/xml"
    delay_s: float = 0.0
    requests: list[dict[str, list[str]]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.requests)


@contextmanager
def serve_vizier(state: FakeVizier | None = None) -> Iterator[FakeVizier]:
    """Run the stand-in on 127.0.0.1 (a free port) for the duration of the block."""
    fake = state if state is not None else FakeVizier()
    done = threading.Event()

    class Handler(StandInHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = self.rfile.read(length).decode()
            fake.requests.append(
                parse_qs(payload, keep_blank_values=True)
                | {"__path__": [self.path], "__raw__": [payload]}
            )
            if fake.delay_s:
                done.wait(fake.delay_s)
            self.reply(fake.status, fake.body, fake.content_type)

    with loopback_server(Handler, stopping=done) as url:
        fake.url = url
        yield fake
