"""The SkyPortal and colour parts of the pages in Debian's Chromium: import from the New
source form, the colour each point used, the Push button and its state, the colour switch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webtest_helpers import add_users, live_server, make_settings

from skyphot.db.models import Photometry, Source
from skyphot.jobs import push
from skyphot.jobs.colors import recalibrate_source
from skyphot.testing.skyportal import FakeSkyPortal, serve_skyportal
from skyphot.web.app import create_app

pytestmark = pytest.mark.browser
OBJ = "ZTF22aayaehk"


@pytest.fixture
def portal() -> Iterator[FakeSkyPortal]:
    fake = FakeSkyPortal()
    fake.add_source(OBJ, 201.3655, -14.5316, redshift=0.031, aliases=["SN 2022xyz"])
    fake.add_instrument(7, "SIMCAM-SP")
    with serve_skyportal(fake) as running:
        yield running


def calibration(band: str, nocolor: float, term: float) -> dict[str, Any]:
    return {"catalog": "ps1", "band": band, "zero_point": 25.0, "color_term": term,
            "color_bands": ["g", "r"], "target_color": 0.6,
            "color_source": "calibrators_median", "flags": 16, "flag_names": ["COLOR_ASSUMED"],
            "mag_nocolor": nocolor, "magerr_nocolor": 0.02, "limit_nocolor": 21.0}


def test_import_colours_and_push_on_the_page(browser: Any, portal: FakeSkyPortal,
                                             tmp_path: Path) -> None:
    settings = make_settings(tmp_path, skyportal={
        "url": portal.url, "token": portal.token, "instruments": {"SIMCAM": 7},
        "push": "manual"})
    app = create_app(settings)
    add_users(app)
    with live_server(app) as url:
        page = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
        page.goto(f"{url}/login")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "alice-pass")
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/sources")
        page.fill("#import-skyportal input[name=skyportal_id]", "ZTF00nothing")
        page.click("#import-skyportal button[type=submit]")
        assert "has no source 'ZTF00nothing'" in page.text_content(
            ".field-error[data-field=skyportal_id]")
        page.fill("#import-skyportal input[name=skyportal_id]", OBJ)
        page.click("#import-skyportal button[type=submit]")
        page.wait_for_url(f"{url}/source/{OBJ}")
        assert page.text_content("#skyportal-id") == OBJ

        with app.state.sessions() as session:
            for mjd, band, nocolor, term in ((60370.0, "r", 18.0, 0.06),
                                             (60370.3, "g", 18.3, 0.12)):
                session.add(Photometry(
                    source_id=OBJ, mjd=mjd, mag=nocolor + term * 0.6, magerr=0.02,
                    limiting_mag=21.0, filter=band, instrument="SIMCAM", magsys="AB",
                    origin="skyphot", owner_id=2, calibration=calibration(band, nocolor, term)))
            session.flush()
            source = session.get(Source, OBJ)
            assert source is not None
            recalibrate_source(session, source)
            session.commit()
        page.reload()
        page.wait_for_function("document.body.dataset.points === '2'")
        colours = page.locator(".colour-used[data-source=light_curve]")
        assert colours.count() == 2
        assert "g−r = 0.319" in colours.first.text_content()  # (18.3-18)/(1-0.12+0.06)
        assert "from the light curve" in page.text_content("#photometry-table")

        page.locator("button.push").first.click()
        page.wait_for_selector(".skyportal-state[data-state=pending]")
        assert push.run_due_pushes(app.state.sessions, settings) == 1
        page.reload()
        page.wait_for_selector(".skyportal-state[data-state=pushed]")
        assert "pushed (id 1)" in page.text_content("#photometry-table")
        assert len(portal.photometry) == 1

        page.uncheck("#light-curve-colors")
        page.wait_for_selector(".colour-used[data-source=calibrators_median]")
        assert page.locator(".colour-used[data-source=light_curve]").count() == 0
