"""A local stand-in for VizieR: VOTable documents and the state of a server on 127.0.0.1.

The server itself is the ``fake_vizier`` fixture in ``conftest.py``. No test reaches the
internet: providers are pointed at ``FakeVizier.url``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape


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
        head.append(f'<FIELD name="{escape(name, {chr(34): "&quot;"})}" '
                    f'datatype="{datatype}"{size}{unit_attr}/>')
    body = ["<DATA><TABLEDATA>"]
    for row in rows:
        cells = []
        for value in row:
            text = "" if value is None or (isinstance(value, float) and value != value) else str(
                value)
            cells.append(f"<TD>{escape(text)}</TD>")
        body.append("<TR>" + "".join(cells) + "</TR>")
    body.append("</TABLEDATA></DATA>")
    tail = ["</TABLE>", "</RESOURCE>", "</VOTABLE>"]
    return "\n".join(head + body + tail).encode()


def empty_votable(table_id: str) -> bytes:
    """What VizieR sends when the cone holds no row: a resource without table data."""
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">',
        f'<INFO name="-source" value="{escape(table_id)}"/>',
        '<RESOURCE type="results">',
        '<INFO name="QUERY_STATUS" value="OK">no row found</INFO>',
        "</RESOURCE>",
        "</VOTABLE>",
    ]).encode()


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
