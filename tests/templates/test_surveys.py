"""Every template survey through the real HTTP client against local stand-ins in the
service's own format: the choice by depth and footprint, nearest-band substitution, the
cache, fallback when a service is down, slow or blank, and the errors naming the services."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from astropy.io import fits

from skyphot.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, exit_code_for
from skyphot.errors import TemplateCoverageError, TemplateError, TemplateServiceError
from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig
from skyphot.templates.auto import AutoTemplate, auto_template
from skyphot.templates.surveys import plan
from skyphot.testing import SimulatedFrame, SimulationParams, simulate_frame
from skyphot.testing.cutouts import (
    FakeSkyMapper,
    FakeViewer,
    offline_service_urls,
    serve_skymapper,
    serve_viewer,
    template_service_state,
)
from skyphot.testing.galaxy import HostComponent
from skyphot.testing.template import TemplateParams, simulate_template

HOSTS = (HostComponent(mag=17.0, r_eff_arcsec=3.0, offset_arcsec=(1.0, -1.0)),)
SOUTH = (30.0, -40.0)  # DES, Legacy Survey and SkyMapper cover it; Pan-STARRS1 does not


@pytest.fixture(scope="module")
def south() -> tuple[SimulatedFrame, SimulatedFrame]:
    sim = simulate_frame(SimulationParams(target_mag=19.0, hosts=HOSTS, center=SOUTH), seed=5)
    return sim, simulate_template(sim, TemplateParams(), seed=6)


def _order(band: str, ra: float, dec: float) -> list[tuple[str, str]]:
    return [(c.survey.name, c.band) for c in plan(band, ra, dec)]


def test_the_deepest_survey_covering_the_target_comes_first() -> None:
    assert _order("r", 150.1, 40.0) == [("legacy", "r"), ("ps1", "r")]
    # Legacy Survey has i only in its DECam part (south of +32).
    assert _order("i", 150.1, 40.0) == [("ps1", "i")]
    assert _order("r", 30.0, -40.0) == [("des", "r"), ("legacy", "r"), ("skymapper", "r")]
    assert _order("r", 30.0, -20.0) == [
        ("des", "r"), ("legacy", "r"), ("ps1", "r"), ("skymapper", "r")]
    assert _order("r", 200.0, -40.0) == [("legacy", "r"), ("skymapper", "r")]  # not DES's RA
    assert _order("r", 200.0, -80.0) == [("skymapper", "r")]
    assert _order("r", 266.4, -29.0)[0][0] == "ps1"  # Galactic centre: no Legacy Survey, DES


def test_the_exact_band_wins_over_depth_then_the_nearest_band_is_stated() -> None:
    # SkyMapper alone has u: it comes before deeper surveys offering only g.
    assert _order("u", 30.0, -40.0) == [
        ("skymapper", "u"), ("des", "g"), ("legacy", "g")]
    first = plan("V", 150.1, 2.2)[0]
    assert (first.survey.name, first.band, first.substituted) == ("legacy", "r", True)
    assert first.note() == "no Legacy Survey V image: the nearest band r is used"
    only = plan("y", 150.1, 2.2, survey="legacy")
    assert [(c.band, c.substituted) for c in only] == [("z", True)]


def test_no_survey_in_reach_names_every_reason() -> None:
    with pytest.raises(TemplateCoverageError) as info:
        plan("J", 150.1, 2.2)
    assert "no survey serves a template in band J at (150.10000, +2.20000)" in str(info.value)
    assert "Pan-STARRS1 has no band near J; Legacy Survey has no band near J" in str(info.value)
    with pytest.raises(TemplateCoverageError, match="SkyMapper covers Dec -90 to \\+2 only"):
        plan("r", 150.1, 2.2, survey="skymapper")
    with pytest.raises(TemplateError, match="survey 'sdss' is not served; choose one of ps1"):
        plan("r", 150.1, 2.2, survey="sdss")
    with pytest.raises(TemplateError, match="URL given for unknown survey\\(s\\) decals"):
        plan("r", 150.1, 2.2, urls={"decals": "http://127.0.0.1:9"})
    with pytest.raises(TemplateError, match="service URL of legacy is empty"):
        plan("r", 150.1, 2.2, urls={"legacy": ""})


def _auto(sim: SimulatedFrame, cache: Path, survey: str | None = None, **urls: str
          ) -> AutoTemplate:
    return auto_template(ra=sim.truth.ra, dec=sim.truth.dec, band="r", size_arcsec=300.0,
                         survey_name=survey, cache_dir=str(cache), retries=1, timeout=5,
                         urls=offline_service_urls(**urls))


def test_each_southern_survey_is_fetched_in_its_own_format(
    south: tuple[SimulatedFrame, SimulatedFrame], tmp_path: Path
) -> None:
    sim, tmpl = south
    viewer = template_service_state(FakeViewer, tmpl)
    sm = template_service_state(FakeSkyMapper, tmpl)
    with serve_viewer(viewer), serve_skymapper(sm):
        got = {name: auto_template(
            ra=sim.truth.ra, dec=sim.truth.dec, band="r", size_arcsec=300.0, survey_name=name,
            cache_dir=str(tmp_path), retries=1, timeout=5,
            urls=offline_service_urls(legacy=viewer.url, des=viewer.url, skymapper=sm.url))
            for name in ("des", "legacy", "skymapper")}
    layers = [parse_qs(urlparse(r).query) for r in viewer.requests]
    assert [(q["layer"][0], q["bands"][0], q["pixscale"][0]) for q in layers] == [
        ("des-dr1", "r", "0.263"), ("ls-dr10", "r", "0.262")]
    query = parse_qs(urlparse(sm.requests[0]).query)
    assert {k: v[0] for k, v in query.items() if k != "POS"} == {
        "SIZE": "0.0833", "BAND": "r", "FORMAT": "image/fits", "INTERSECT": "covers",
        "RESPONSEFORMAT": "CSV"}
    # The Main Survey exposure (100 s) is fetched, not the 5 s one listed first.
    assert "IMAGE=20190101000100-01" in sm.requests[1] and len(sm.requests) == 2
    # e- per data unit: the simulated 2 e-/ADU times ADU per unit (template zero point 29.5).
    true_gain = {"des": 2.0 * 10 ** (0.4 * (29.5 - 30.0)),  # DES counts
                 "legacy": 2.0 * 10 ** (0.4 * (29.5 - 22.5)),  # nanomaggies
                 "skymapper": 2.0}
    for name, item in got.items():
        assert (item.survey, item.band, item.substituted, item.cached) == (name, "r", False,
                                                                           False)
        assert item.path.parent == tmp_path / name / "r"
        header = fits.getheader(item.path)
        assert header["FILTER"] == "r" and header["TPLSURV"] == name
        # An effective gain within a factor of two: only the host's photon noise uses it.
        assert 0.5 < header["GAIN"] / true_gain[name] < 2.0, (name, header["GAIN"])
    legacy = fits.getdata(got["legacy"].path)
    assert abs(float(np.nanmedian(legacy))) < 0.01  # sky-subtracted nanomaggies


def test_cached_template_is_used_without_a_request(
    south: tuple[SimulatedFrame, SimulatedFrame], tmp_path: Path
) -> None:
    sim, tmpl = south
    viewer = template_service_state(FakeViewer, tmpl)
    with serve_viewer(viewer):
        first = _auto(sim, tmp_path, des=viewer.url)
        n = len(viewer.requests)
        second = _auto(sim, tmp_path, des=viewer.url)
    assert n == 1 and len(viewer.requests) == 1
    assert first.cached is False and second.cached is True
    assert second.path == first.path and "cache" in second.label


def test_down_slow_or_blank_services_fall_back_to_the_next_survey(
    south: tuple[SimulatedFrame, SimulatedFrame], tmp_path: Path
) -> None:
    sim, tmpl = south
    des = template_service_state(FakeViewer, tmpl, status=503)
    legacy = template_service_state(FakeViewer, tmpl, coverage=False)
    sm = template_service_state(FakeSkyMapper, tmpl)
    with serve_viewer(des), serve_viewer(legacy), serve_skymapper(sm):
        got = auto_template(
            ra=sim.truth.ra, dec=sim.truth.dec, band="r", size_arcsec=300.0,
            cache_dir=str(tmp_path), retries=2, timeout=5,
            urls=offline_service_urls(des=des.url, legacy=legacy.url, skymapper=sm.url))
        assert len(des.requests) == 2  # retried, then given up
        des.status, des.delay_s = 200, 3.0  # now it hangs beyond the time-out
        slow = auto_template(
            ra=sim.truth.ra, dec=sim.truth.dec, band="r", size_arcsec=300.0,
            cache_dir=str(tmp_path / "other"), retries=1, timeout=0.5,
            urls=offline_service_urls(des=des.url, skymapper=sm.url))
    assert got.survey == "skymapper" and got.note is not None
    assert "the DES image cutout service failed after 2 attempt(s) (HTTP Error 503" in got.note
    assert "Legacy Survey has no r image at" in got.note and "blank there" in got.note
    assert slow.survey == "skymapper" and "timed out" in (slow.note or "")


def test_every_service_down_is_an_environment_error_naming_them_all(
    south: tuple[SimulatedFrame, SimulatedFrame], tmp_path: Path
) -> None:
    sim, _ = south
    with pytest.raises(TemplateServiceError) as info:
        _auto(sim, tmp_path)
    text = str(info.value)
    assert text.startswith("no survey template for band r at (")
    for service in ("DES", "Legacy Survey", "SkyMapper"):
        assert f"the {service} image cutout service failed after 1 attempt(s)" in text
    assert text.endswith("try again later, or give a template file")
    assert exit_code_for(info.value) == EXIT_ENVIRONMENT


def test_every_service_blank_is_a_coverage_error(
    south: tuple[SimulatedFrame, SimulatedFrame], tmp_path: Path
) -> None:
    sim, tmpl = south
    viewer = template_service_state(FakeViewer, tmpl, coverage=False)
    sm = template_service_state(FakeSkyMapper, tmpl, coverage=False)
    with serve_viewer(viewer), serve_skymapper(sm), pytest.raises(TemplateCoverageError) as info:
        _auto(sim, tmp_path, des=viewer.url, legacy=viewer.url, skymapper=sm.url)
    assert "no survey has a template for band r" in str(info.value)
    assert "SkyMapper has no r image covering" in str(info.value)
    assert exit_code_for(info.value) == EXIT_BAD_INPUT


def test_a_nanomaggy_template_in_the_nearest_band_subtracts_and_says_so(
    tmp_path: Path,
) -> None:
    # A V frame: the Legacy Survey has no V, so its r image (the nearest band) is used.
    params = SimulationParams(target_mag=19.0, hosts=HOSTS, target_xy=(420.0, 280.0),
                              bands=("B", "V"), filter="V")
    sim = simulate_frame(params, seed=31)
    sim.write(tmp_path, stem="science")
    tmpl = simulate_template(sim, TemplateParams(filter="r"), seed=32)
    viewer = template_service_state(FakeViewer, tmpl)
    with serve_viewer(viewer):
        config = MeasureConfig.model_validate({
            "target": {"ra": sim.truth.ra, "dec": sim.truth.dec},
            "catalog": {"path": str(tmp_path / "science_catalog.ecsv")},
            "subtraction": {"template": "auto", "retries": 1, "cache_dir": str(tmp_path / "c"),
                            "service_urls": offline_service_urls(legacy=viewer.url)},
        })
        result = measure(tmp_path / "science.fits", config)
    sub = result.subtraction
    assert sub is not None
    assert (sub.template_survey, sub.template_band, sub.band_substituted) == ("legacy", "r",
                                                                              True)
    assert sub.template_note == "no Legacy Survey V image: the nearest band r is used"
    assert len(viewer.requests) == 1 and "bands=r" in viewer.requests[0]
    truth = float(10 ** (-0.4 * (sim.truth.mag - 23.9)))
    assert abs(result.flux - truth) < 4 * result.fluxerr + 0.02 * truth
    assert sub.science_flux > result.flux + 5 * result.fluxerr  # the host was removed


def test_answers_in_the_wrong_format_name_the_service(
    south: tuple[SimulatedFrame, SimulatedFrame], tmp_path: Path
) -> None:
    sim, tmpl = south
    viewer = template_service_state(FakeViewer, tmpl, garbage=True)
    sm = template_service_state(FakeSkyMapper, tmpl, garbage=True)
    with serve_viewer(viewer), serve_skymapper(sm):
        with pytest.raises(TemplateServiceError) as down:
            _auto(sim, tmp_path, "des", des=viewer.url)
        with pytest.raises(TemplateServiceError) as table:
            _auto(sim, tmp_path, "skymapper", skymapper=sm.url)
    assert "the DES image cutout service returned something that is not FITS" in str(down.value)
    assert ("the SkyMapper image cutout service answered a table without a get_image column"
            in str(table.value))


def test_a_ps1_field_outside_the_survey_is_a_coverage_answer(
    south: tuple[SimulatedFrame, SimulatedFrame], tmp_path: Path
) -> None:
    from skyphot.testing.ps1 import FakePS1, serve_ps1

    sim, tmpl = south
    fake = FakePS1(data=np.asarray(tmpl.data), header=tmpl.header.copy(), coverage=False)
    with serve_ps1(fake), pytest.raises(TemplateCoverageError) as info:
        auto_template(ra=sim.truth.ra, dec=-20.0, band="r", size_arcsec=300.0,
                      survey_name="ps1", cache_dir=str(tmp_path), retries=1, timeout=5,
                      urls=offline_service_urls(ps1=fake.url))
    assert "Pan-STARRS1 has no r stack at" in str(info.value)
    assert "the field is outside the survey" in str(info.value)


def test_prefetch_survey_choices_are_the_served_surveys() -> None:
    from skyphot.templates.commands import SURVEY_NAMES
    from skyphot.templates.surveys import SURVEYS

    assert sorted(SURVEY_NAMES) == sorted(SURVEYS)
