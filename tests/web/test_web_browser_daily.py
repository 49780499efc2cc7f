"""Issue 10 in Debian's Chromium, offline (every request to another host is blocked and
recorded): the daily walk from login to the API docs, plus the defects seen in the browser."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from webtest_helpers import STUB_ENGINE, add_users, fits_bytes, live_server, make_settings

from skyphot.jobs.queue import EmbeddedQueue
from skyphot.web.app import create_app

pytestmark = pytest.mark.browser



@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    settings = make_settings(tmp_path, workers=1)
    app = create_app(settings, queue=EmbeddedQueue(settings, engine=STUB_ENGINE))
    _admin, alice, _bob = add_users(app)
    with live_server(app) as url:
        yield url, alice


def offline_context(browser: Any, url: str, **options: Any) -> tuple[Any, list[str]]:
    """A browser context that can reach only ``url``; other requests fail and are listed."""
    context = browser.new_context(**options)
    outside: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return context, outside


def login(page: Any, url: str) -> None:
    page.goto(f"{url}/sources")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pass")
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/sources")


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SKYPHOT_SCREENSHOT_DIR"):
        shutil.copy(path, Path(os.environ["SKYPHOT_SCREENSHOT_DIR"]) / name)
    return path


def test_daily_walk_offline(browser: Any, server: tuple[str, dict[str, str]],
                            tmp_path: Path) -> None:
    url, alice = server
    context, outside = offline_context(browser, url, viewport={"width": 1200, "height": 1400})
    page = context.new_page()
    login(page, url)
    # new source in sexagesimal
    page.fill("#new-source input[name=id]", "SN2024walk")
    page.fill("#new-source input[name=ra]", "10:00:31.365")
    page.fill("#new-source input[name=dec]", "+02:09:42.92")
    page.click("#new-source button[type=submit]")
    page.wait_for_url(f"{url}/source/SN2024walk")
    assert "RA 150.13068" in page.text_content("#source")
    assert "Dec +2.161922°" in page.text_content("#source")
    # upload -> notification -> point
    page.click("#image-analysis-button")
    frame = tmp_path / "night1.fits"
    frame.write_bytes(fits_bytes(mag=17.8))
    page.set_input_files("#file", str(frame))
    page.wait_for_selector("#header-obstime")
    assert "Exposure started at" in page.text_content("#header-info")
    assert "mid-exposure" in page.text_content("#header-info")
    page.click("#submit")
    page.wait_for_selector(".notification.success", timeout=30000)
    page.goto(f"{url}/source/SN2024walk")
    page.wait_for_function("document.body.dataset.points === '1'", timeout=10000)
    page.wait_for_selector("#lightcurve .scatterlayer .point")
    details = page.text_content("#photometry-table tbody tr .details")
    assert "ZP 25.000 ± 0.010" in details and "42 calibration stars" in details
    # edit: the point's filter, time and comment
    page.click("#photometry-table button.edit")
    page.wait_for_selector("#edit-point[open]")
    page.fill("#edit-filter", "sdssr")
    page.fill("#edit-comment", "thin cirrus")
    page.click("#edit-save")
    page.wait_for_function(
        "document.querySelector('#photometry-table tbody').textContent.includes('thin cirrus')")
    assert "sdssr" in page.text_content("#photometry-table tbody")
    # a second series: r from another instrument must look different from sdssr
    httpx.post(f"{url}/api/instruments", json={"name": "OtherCam", "filters": ["r"]},
               headers=alice)
    second = tmp_path / "night2.fits"
    second.write_bytes(fits_bytes(mag=17.6, instrument="OtherCam", seed=1))
    r = httpx.post(f"{url}/api/sources/SN2024walk/image_analysis", headers=alice,
                   files={"file": ("night2.fits", second.read_bytes())})
    assert r.status_code == 202, r.text
    page.wait_for_function("document.body.dataset.points === '2'", timeout=30000)
    traces = page.evaluate("document.getElementById('lightcurve').data.map("
                           "t => [t.name, t.marker.color, t.marker.symbol])")
    looks = {name: (color, symbol) for name, color, symbol in traces}
    assert set(looks) == {"sdssr · SIMCAM", "r · OtherCam"}
    assert looks["sdssr · SIMCAM"] != looks["r · OtherCam"]
    # delete both points, with confirmation; the last one leaves the plot too
    page.on("dialog", lambda dialog: dialog.accept())
    for remaining in ("1", "0"):
        page.click("#photometry-table button.delete")
        page.wait_for_function(f"document.body.dataset.points === '{remaining}'")
    assert page.locator("#lightcurve .scatterlayer .point").count() == 0
    assert page.is_visible("#plot-empty")
    # jobs page across sources
    page.click("a[href='/jobs']")
    page.wait_for_function("document.body.dataset.jobs === '2'")
    assert "SN2024walk" in page.text_content("#all-jobs tbody")
    page.select_option("#filter-state", "failed")
    page.click("#jobs-filter button[type=submit]")
    page.wait_for_selector("#all-jobs tbody td.muted")
    assert "No jobs match." in page.text_content("#all-jobs tbody")
    assert page.locator("link[rel=icon]").get_attribute("href") == "/favicon.ico"
    # the API docs page lists the routes, without internet
    page.click("a[href='/docs']")
    page.wait_for_selector(".opblock-summary-path", timeout=20000)
    paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.textContent)")
    for route in ("/api/sources", "/api/jobs", "/api/instruments/{instrument_id}",
                  "/api/photometry/{photometry_id}"):
        assert any(route in p.replace("\u200b", "") for p in paths), route
    assert outside == [], outside
    assert context.request.get(f"{url}/favicon.ico").status == 200
    context.close()


def test_narrow_and_dark(browser: Any, server: tuple[str, dict[str, str]],
                         tmp_path: Path) -> None:
    url, alice = server
    httpx.post(f"{url}/api/sources", json={"id": "SN2024narrow", "ra": 150.1, "dec": 2.2},
               headers=alice)
    for scheme in ("light", "dark"):
        context, outside = offline_context(browser, url, viewport={"width": 390, "height": 844},
                                           color_scheme=scheme)
        page = context.new_page()
        login(page, url)
        page.goto(f"{url}/source/SN2024narrow")
        page.wait_for_function("document.body.dataset.points === '0'")
        # nothing wider than the window: tables scroll inside their cards
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, overflow
        card = page.evaluate("(() => { const t = document.querySelector('#photometry-table');"
                             " return t.parentElement.scrollWidth > t.parentElement.clientWidth"
                             " && getComputedStyle(t.parentElement).overflowX; })()")
        assert card == "auto"
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (background == "rgb(17, 21, 29)") == (scheme == "dark"), background
        # a long notification stays inside the window and wraps
        page.evaluate("window.skyphot.notify({failure: true, html: 'x'.repeat(3000)})")
        box = page.locator(".notification").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert box["height"] <= 844
        shot(page, tmp_path, f"source_390_{scheme}.png")
        page.goto(f"{url}/jobs")
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        assert outside == []
        context.close()


def test_page_of_another_origin_cannot_post(browser: Any, server: tuple[str, dict[str, str]],
                                            tmp_path: Path) -> None:
    url, alice = server
    (tmp_path / "evil.html").write_text(
        f'<form id="f" method="post" action="{url}/sources">'
        '<input name="id" value="planted"><input name="ra" value="1"><input name="dec" value="1">'
        '</form><script>document.getElementById("f").submit()</script>', encoding="utf-8")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            """Silence."""

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        context = browser.new_context()
        page = context.new_page()
        login(page, url)
        page.goto(f"http://127.0.0.1:{evil.server_address[1]}/evil.html")
        page.wait_for_url(f"{url}/sources")
        assert "another site" in page.text_content("body")
        context.close()
    finally:
        evil.shutdown()
    r = httpx.get(f"{url}/api/sources/planted", headers=alice)
    assert r.status_code == 404


def test_upload_form_adds_a_missing_filter_inline(browser: Any,
                                                  server: tuple[str, dict[str, str]],
                                                  tmp_path: Path) -> None:
    url, alice = server
    httpx.post(f"{url}/api/sources", json={"id": "SN2024g", "ra": 150.1, "dec": 2.2},
               headers=alice)
    made = httpx.post(f"{url}/api/instruments", json={"name": "SimCam", "filters": ["r"]},
                      headers=alice).json()
    context, _outside = offline_context(browser, url)
    page = context.new_page()
    login(page, url)
    page.goto(f"{url}/source/SN2024g/image_analysis")
    frame = tmp_path / "g.fits"
    frame.write_bytes(fits_bytes(filt="g", instrument="SimCam"))
    page.set_input_files("#file", str(frame))
    page.wait_for_selector("#header-obstime")
    page.select_option("#instrument", "SimCam")
    page.wait_for_selector("#add-filter:not([hidden])")
    assert page.text_content("#add-filter-button") == "Add filter g to SimCam"
    page.click("#add-filter-button")
    page.wait_for_selector("#add-filter", state="hidden")
    instrument = httpx.get(f"{url}/api/instruments", headers=alice).json()[0]
    assert instrument["id"] == made["id"] and instrument["filters"] == ["r", "g"]
    page.click("#submit")
    page.wait_for_selector(".notification.success", timeout=30000)
    context.close()
