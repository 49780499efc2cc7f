"""The New source page resolves a name from the local name table, offline (issue 10): the
online resolver points at a closed port, so any attempt to use it would show as an error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webtest_helpers import add_users, live_server, make_settings

from skyphot.web.app import create_app

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    table = tmp_path / "names.csv"
    table.write_text("name,ra,dec,aliases\nSN 2023ixf,14:03:38.562,+54:18:41.94,ZTF23aaklqou\n",
                     encoding="utf-8")
    settings = make_settings(tmp_path, name_table=str(table),
                             name_resolver_url="http://127.0.0.1:9/cgi-bin/nph-sesame",
                             name_resolver_timeout_s=2)
    app = create_app(settings)
    add_users(app)
    with live_server(app) as url:
        yield url


def test_new_source_page_resolves_a_local_name(browser: Any, server: str) -> None:
    page = browser.new_context(viewport={"width": 390, "height": 900}).new_page()
    page.goto(f"{server}/sources")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pass")
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/sources")
    assert "then in the server's local name table, then through CDS Sesame" in \
        page.text_content("#new-source-help")
    # A name only, in another spelling than the table's: resolved there, no network.
    page.fill("#new-source input[name=id]", "ixf")
    page.fill("#new-source input[name=name]", "at2023IXF")
    page.click("#new-source button[type=submit]")
    page.wait_for_url(f"{server}/source/ixf")
    assert "RA 210.910675°, Dec +54.311650°" in page.text_content("#source")
    assert page.text_content("#position-origin") == (
        "Position from 'SN 2023ixf' in the local name table (names.csv)")
    # An unknown name: the reason, naming what was tried, next to the name field.
    page.goto(f"{server}/sources")
    page.fill("#new-source input[name=id]", "nowhere")
    page.fill("#new-source input[name=name]", "XYZ")
    page.click("#new-source button[type=submit]")
    message = page.text_content(".field-error[data-field=name]")
    assert message.startswith("'XYZ' is not in the local name table or among your sources; "
                              "the CDS Sesame service did not answer (")
    assert page.input_value("#new-source input[name=name]") == "XYZ"
    # The new source's own name now resolves among alice's sources.
    page.fill("#new-source input[name=id]", "ixf-again")
    page.fill("#new-source input[name=name]", "AT 2023ixf")
    page.click("#new-source button[type=submit]")
    page.wait_for_url(f"{server}/source/ixf-again")
    assert page.text_content("#position-origin") == "Position from your source 'ixf'"
