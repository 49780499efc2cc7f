"""The template field of the Image Analysis form in Debian's Chromium, against a real server
whose workers run the real engine on small simulated frames with a host galaxy: an uploaded
template file, and 'auto' with the server's Legacy Survey service pointing at a stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from webtest_helpers import add_users, live_server, make_settings

from skyphot.jobs.queue import EmbeddedQueue
from skyphot.testing import SimulatedFrame, SimulationParams, simulate_frame
from skyphot.testing.cutouts import (
    FakeViewer,
    offline_service_urls,
    serve_viewer,
    template_service_state,
)
from skyphot.testing.galaxy import HostComponent
from skyphot.testing.template import TemplateParams, simulate_template
from skyphot.web.app import create_app

pytestmark = pytest.mark.browser

HOSTS = (HostComponent(mag=17.0, r_eff_arcsec=3.0, offset_arcsec=(1.0, -1.0)),)


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulatedFrame, Path]:
    d = tmp_path_factory.mktemp("webtpl")
    sim = simulate_frame(
        SimulationParams(target_mag=19.0, hosts=HOSTS, target_xy=(420.0, 280.0)), seed=41
    )
    sim.write(d, stem="science")
    simulate_template(sim, TemplateParams(), seed=42).write(d, stem="template")
    return sim, d


@pytest.fixture(scope="module")
def server(field: tuple[SimulatedFrame, Path], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, dict[str, str], FakeViewer]]:
    sim, _ = field
    tmpl = simulate_template(sim, TemplateParams(), seed=43)
    viewer = template_service_state(FakeViewer, tmpl)
    tmp = tmp_path_factory.mktemp("webtplserver")
    with serve_viewer(viewer):
        urls = offline_service_urls(legacy=viewer.url)
        templates = {f"{name}_url": url for name, url in urls.items()}
        settings = make_settings(tmp, workers=1, templates={
            **templates, "cache_dir": str(tmp / "templates"), "retries": 1, "timeout_s": 10})
        app = create_app(settings, queue=EmbeddedQueue(settings))
        _admin, alice, _bob = add_users(app)
        with live_server(app) as url:
            yield url, alice, viewer


def _login(page: Any, url: str) -> None:
    page.goto(f"{url}/sources")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pass")
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/sources")


def _analyse(browser: Any, url: str, source: str, d: Path, template: str,
             template_file: Path | None) -> dict[str, Any]:
    """Upload the science frame and catalog with the template choice; the new point."""
    page = browser.new_page()
    _login(page, url)
    page.goto(f"{url}/source/{source}/image_analysis")
    options = page.eval_on_selector_all("#template option", "os => os.map(o => o.value)")
    assert options == ["none", "auto"]
    assert page.get_attribute("#template_file", "type") == "file"
    page.set_input_files("#file", str(d / "science.fits"))
    page.wait_for_selector("#header-obstime")
    page.set_input_files("#catalog_file", str(d / "science_catalog.ecsv"))
    page.select_option("#template", template)
    if template_file is not None:
        page.set_input_files("#template_file", str(template_file))
    page.click("#submit")
    page.wait_for_selector(".notification.success", timeout=120000)
    page.goto(f"{url}/source/{source}")
    page.wait_for_function("document.body.dataset.points === '1'", timeout=10000)
    row = page.locator("#photometry-table tbody tr").first.text_content() or ""
    points = page.evaluate(f"fetch('/api/sources/{source}/photometry').then(r => r.json())")
    page.close()
    assert len(points) == 1
    return {"row": row, **points[0]}


def _true_ujy(sim: SimulatedFrame) -> float:
    return float(10 ** (-0.4 * (sim.truth.mag - 23.9)))


def test_uploaded_template_file_gives_a_subtracted_point(
    browser: Any, server: tuple[str, dict[str, str], FakeViewer],
    field: tuple[SimulatedFrame, Path],
) -> None:
    url, alice, _viewer = server
    sim, d = field
    r = httpx.post(f"{url}/api/sources", headers=alice,
                   json={"id": "SN2026file", "ra": sim.truth.ra, "dec": sim.truth.dec})
    assert r.status_code in (200, 201), r.text
    point = _analyse(browser, url, "SN2026file", d, "none", d / "template.fits")
    sub = point["calibration"]["subtraction"]
    assert (sub["template"], sub["template_origin"], sub["template_survey"]) == (
        "template.fits", "file", None)
    assert sub["template_band"] == "r" and sub["band_substituted"] is False
    assert "difference image against template.fits" in point["row"]
    truth = _true_ujy(sim)
    assert abs(point["flux"] - truth) < 4 * point["fluxerr"] + 0.02 * truth
    assert sub["science_flux"] > point["flux"] + 5 * point["fluxerr"]  # host light removed


def test_auto_template_comes_from_the_configured_survey_service(
    browser: Any, server: tuple[str, dict[str, str], FakeViewer],
    field: tuple[SimulatedFrame, Path],
) -> None:
    url, alice, viewer = server
    sim, d = field
    r = httpx.post(f"{url}/api/sources", headers=alice,
                   json={"id": "SN2026auto", "ra": sim.truth.ra, "dec": sim.truth.dec})
    assert r.status_code in (200, 201), r.text
    before = len(viewer.requests)
    point = _analyse(browser, url, "SN2026auto", d, "auto", None)
    sub = point["calibration"]["subtraction"]
    assert (sub["template_origin"], sub["template_survey"], sub["template_band"]) == (
        "survey", "legacy", "r")
    assert sub["template"].startswith("Legacy Survey r cutout")
    assert len(viewer.requests) == before + 1 and "layer=ls-dr10" in viewer.requests[-1]
    truth = _true_ujy(sim)
    assert abs(point["flux"] - truth) < 4 * point["fluxerr"] + 0.02 * truth
