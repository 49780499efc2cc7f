"""Template cache, the PS1 cutout client against a local stand-in, and --template auto."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from skyphot.cli import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_OK, exit_code_for, main
from skyphot.errors import StageError
from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig
from skyphot.templates.cache import TemplateCache
from skyphot.templates.ps1 import asinh_to_linear
from skyphot.testing import SimulatedFrame, SimulationParams, simulate_frame
from skyphot.testing.cutouts import offline_service_urls
from skyphot.testing.galaxy import HostComponent
from skyphot.testing.ps1 import FakePS1, serve_ps1
from skyphot.testing.template import TemplateParams, simulate_template

HOSTS = (HostComponent(mag=17.0, r_eff_arcsec=3.0, offset_arcsec=(1.0, -1.0)),)


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulatedFrame, SimulatedFrame, Path]:
    d = tmp_path_factory.mktemp("tplfield")
    sim = simulate_frame(
        SimulationParams(target_mag=19.0, hosts=HOSTS, target_xy=(420.0, 280.0)), seed=21
    )
    sim.write(d, stem="science")
    tmpl = simulate_template(sim, TemplateParams(), seed=22)
    tmpl.write(d, stem="template")
    return sim, tmpl, d


def _config(sim: SimulatedFrame, d: Path, **sub: object) -> MeasureConfig:
    t = sim.truth
    return MeasureConfig.model_validate(
        {
            "target": {"ra": t.ra, "dec": t.dec},
            "catalog": {"path": str(d / "science_catalog.ecsv")},
            "subtraction": {"template": "auto", **sub},
        }
    )


def _true_ujy(sim: SimulatedFrame) -> float:
    return float(10 ** (-0.4 * (sim.truth.mag - 23.9)))


def test_import_then_auto_measures_offline_from_the_cache(
    field: tuple[SimulatedFrame, SimulatedFrame, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim, _, d = field
    cache = tmp_path / "cache"
    assert (
        main(
            [
                "template",
                "import",
                str(d / "template.fits"),
                "--survey",
                "ps1",
                "--cache-dir",
                str(cache),
            ]
        )
        == EXIT_OK
    )
    stored = json.loads(capsys.readouterr().out)
    assert stored["band"] == "r" and Path(stored["path"]).is_file()
    assert not list(cache.rglob(".part-*"))  # atomic write leaves no partial file
    result = measure(
        d / "science.fits",
        _config(sim, d, cache_dir=str(cache), service_urls=offline_service_urls()),
    )
    sub = result.subtraction
    assert sub is not None and sub.template_origin == "survey"
    assert "cache" in sub.template
    assert abs(result.flux - _true_ujy(sim)) < 4 * result.fluxerr + 0.01 * _true_ujy(sim)


def test_auto_fetches_from_the_cutout_service_once_then_uses_the_cache(
    field: tuple[SimulatedFrame, SimulatedFrame, Path], tmp_path: Path
) -> None:
    sim, tmpl, d = field
    fake = FakePS1(data=np.asarray(tmpl.data), header=tmpl.header.copy())
    cache = tmp_path / "cache"
    with serve_ps1(fake):
        urls = offline_service_urls(ps1=fake.url)
        config = _config(sim, d, cache_dir=str(cache), service_urls=urls, survey="ps1",
                         retries=1)
        first = measure(d / "science.fits", config)
        n_requests = len(fake.requests)
        second = measure(d / "science.fits", config)
    assert n_requests == 2  # file listing + cutout
    assert len(fake.requests) == n_requests  # the second run came from the cache
    assert first.subtraction is not None and "Pan-STARRS1 r cutout" in first.subtraction.template
    assert (first.subtraction.template_survey, first.subtraction.template_band) == ("ps1", "r")
    assert first.subtraction.band_substituted is False
    assert second.subtraction is not None and "cache" in second.subtraction.template
    truth = _true_ujy(sim)
    # the service's asinh scaling was undone: fluxes are right
    assert abs(first.flux - truth) < 4 * first.fluxerr + 0.01 * truth
    assert len(list(cache.glob("ps1/r/*.fits"))) == 1


def test_service_down_is_an_environment_error_naming_the_service(
    field: tuple[SimulatedFrame, SimulatedFrame, Path], tmp_path: Path
) -> None:
    sim, tmpl, d = field
    fake = FakePS1(data=np.asarray(tmpl.data), header=tmpl.header.copy(), status=503)
    with serve_ps1(fake), pytest.raises(StageError) as info:
        measure(
            d / "science.fits",
            _config(sim, d, cache_dir=str(tmp_path), survey="ps1", retries=2, timeout_s=5,
                    service_urls=offline_service_urls(ps1=fake.url)),
        )
    assert "Pan-STARRS1 image cutout service failed after 2 attempt(s)" in str(info.value)
    assert "HTTP Error 503" in str(info.value)
    assert exit_code_for(info.value) == EXIT_ENVIRONMENT
    assert len(fake.requests) == 2


def test_prefetch_fills_the_cache_and_is_idempotent(
    field: tuple[SimulatedFrame, SimulatedFrame, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim, tmpl, _ = field
    fake = FakePS1(data=np.asarray(tmpl.data), header=tmpl.header.copy())
    argv = [
        "template",
        "prefetch",
        "--ra",
        repr(sim.truth.ra),
        "--dec",
        repr(sim.truth.dec),
        "--filter",
        "r",
        "--radius",
        "0.02",
        "--cache-dir",
        str(tmp_path),
    ]
    with serve_ps1(fake):
        assert main([*argv, "--survey", "ps1", "--service-url", fake.url]) == EXIT_OK
        first = json.loads(capsys.readouterr().out)
        assert main([*argv, "--survey", "ps1", "--service-url", fake.url]) == EXIT_OK
        second = json.loads(capsys.readouterr().out)
    assert [f["cached"] for f in first["files"]] == [False]
    assert [f["cached"] for f in second["files"]] == [True]
    assert len(fake.requests) == 2


def test_lru_eviction_keeps_the_newest(
    tmp_path: Path, field: tuple[SimulatedFrame, SimulatedFrame, Path]
) -> None:
    _, _, d = field
    src = d / "template.fits"
    cache = TemplateCache(tmp_path, max_bytes=int(src.stat().st_size * 1.5))
    a = cache.store(src, survey="ps1", band="r", ra=10.0, dec=1.0, size_px=100)
    os.utime(a.path, (1, 1))  # long unused
    b = cache.store(src, survey="ps1", band="r", ra=20.0, dec=1.0, size_px=100)
    assert b.path.is_file() and not a.path.exists()


def test_prefetch_service_url_needs_a_survey(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["template", "prefetch", "--ra", "150", "--dec", "2", "--filter", "r", "--radius",
            "0.1", "--service-url", "http://127.0.0.1:9/x"]
    assert main(argv) == EXIT_BAD_INPUT
    assert "--service-url needs --survey" in capsys.readouterr().err


def test_asinh_scaling_is_inverted() -> None:
    linear = np.array([-50.0, 0.0, 10.0, 1e4])
    a = 2.5 / np.log(10.0)
    scaled = a * np.arcsinh((linear - 100.0) / (2 * 50.0))
    assert np.allclose(asinh_to_linear(scaled, 100.0, 50.0), linear)


def test_import_of_a_file_without_wcs_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from astropy.io import fits

    path = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(data=np.zeros((50, 50), np.float32)).writeto(path)
    assert (
        main(["template", "import", str(path), "--band", "r", "--cache-dir", str(tmp_path / "c")])
        == EXIT_BAD_INPUT
    )
    assert "has no celestial WCS" in capsys.readouterr().err
