"""``skyphot catalog prefetch|import|list`` and measuring offline from what they stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_vizier_server import FakeVizier, votable_document

from skyphot.cli import EXIT_ENVIRONMENT, main
from skyphot.testing import SimulationParams, simulate_frame

PS1_COLUMNS = [
    ("RAJ2000", "double", "deg"),
    ("DEJ2000", "double", "deg"),
    ("gmag", "float", "mag"),
    ("e_gmag", "float", "mag"),
    ("rmag", "float", "mag"),
    ("e_rmag", "float", "mag"),
]


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return json.loads(out[0])  # type: ignore[no-any-return]


def test_prefetch_from_the_service_then_list(
    fake_vizier: FakeVizier, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [[150.0 + 0.01 * k, 2.0, 15.0 + 0.01 * k, 0.01, 14.6, 0.01] for k in range(30)]
    fake_vizier.body = votable_document("II/349/ps1", PS1_COLUMNS, rows)
    cache = str(tmp_path / "cache")
    argv = [
        "catalog",
        "prefetch",
        "--ra",
        "150.1",
        "--dec",
        "2.0",
        "--radius",
        "0.3",
        "--server",
        fake_vizier.url,
        "--retries",
        "1",
        "--cache-dir",
        cache,
    ]
    assert main(argv) == 0
    answer = _json(capsys)
    assert answer["catalog"] == "ps1"  # the automatic choice for r at Dec +2
    assert answer["stars"] == 30
    assert fake_vizier.count == 1
    assert main(["catalog", "list", "--cache-dir", cache]) == 0
    listing = _json(capsys)
    assert "ps1" in listing["catalogs"]  # type: ignore[operator]


def test_prefetch_with_the_service_down_names_it(
    closed_port_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "catalog",
        "prefetch",
        "--ra",
        "150",
        "--dec",
        "2",
        "--radius",
        "0.3",
        "--name",
        "ps1",
        "--server",
        closed_port_url,
        "--retries",
        "1",
        "--timeout",
        "1",
        "--cache-dir",
        str(tmp_path),
    ]
    assert main(argv) == EXIT_ENVIRONMENT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Pan-STARRS" in captured.err and "did not answer" in captured.err


def test_imported_catalog_calibrates_a_frame_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = simulate_frame(SimulationParams(shape=(500, 700), target_mag=18.0), seed=8)
    paths = sim.write(tmp_path, stem="obs")
    cache = str(tmp_path / "cache")
    assert (
        main(["catalog", "import", str(paths.catalog), "--name", "my-field", "--cache-dir", cache])
        == 0
    )
    assert _json(capsys)["stars"] == len(sim.catalog)
    argv = [
        "measure",
        str(paths.image),
        "--ra",
        repr(sim.truth.ra),
        "--dec",
        repr(sim.truth.dec),
        "--catalog-name",
        "my-field",
        "--cache-dir",
        cache,
        "--target-color",
        f"g-r={sim.truth.color}",
        "--json",
    ]
    assert main(argv) == 0
    result = _json(capsys)
    assert result["catalog"] == "my-field"
    assert abs(result["mag"] - sim.truth.mag) < 4 * result["magerr"]  # type: ignore[operator]


def test_import_under_an_online_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = simulate_frame(SimulationParams(shape=(300, 300), target_mag=None), seed=1)
    paths = sim.write(tmp_path)
    assert (
        main(
            [
                "catalog",
                "import",
                str(paths.catalog),
                "--name",
                "ps1",
                "--cache-dir",
                str(tmp_path / "c"),
            ]
        )
        == 3
    )
    assert "is the name of an online catalog" in capsys.readouterr().err


def test_import_without_name_uses_the_file_stem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = simulate_frame(SimulationParams(shape=(300, 300), target_mag=None), seed=1)
    paths = sim.write(tmp_path, stem="m67")
    cache = str(tmp_path / "cache")
    assert main(["catalog", "import", str(paths.catalog), "--cache-dir", cache]) == 0
    answer = _json(capsys)
    assert answer["catalog"] == "m67_catalog" == paths.catalog.stem
    assert answer["stars"] == len(sim.catalog)
    assert main(["catalog", "list", "--cache-dir", cache]) == 0
    listing = _json(capsys)["catalogs"]
    assert listing["m67_catalog"]["imported"] is True  # type: ignore[index]


def test_import_whose_stem_is_an_online_name_asks_for_a_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = simulate_frame(SimulationParams(shape=(300, 300), target_mag=None), seed=1)
    catalog = sim.write(tmp_path).catalog
    renamed = catalog.rename(tmp_path / "apass.ecsv")
    assert main(["catalog", "import", str(renamed), "--cache-dir", str(tmp_path / "c")]) == 3
    err = capsys.readouterr().err
    assert "'apass' is the name of an online catalog" in err and "--name NAME" in err


def test_imported_catalog_is_chosen_automatically_with_vizier_down(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    closed_port_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An observatory without internet: import once, then measure without naming a catalog.
    Nothing listens at the VizieR address, so any online attempt would fail the run."""
    monkeypatch.setenv("SKYPHOT_VIZIER_SERVER", closed_port_url)
    sim = simulate_frame(SimulationParams(shape=(500, 700), target_mag=18.0), seed=8)
    paths = sim.write(tmp_path, stem="obs")
    cache = str(tmp_path / "cache")
    assert main(["catalog", "import", str(paths.catalog), "--cache-dir", cache]) == 0
    assert _json(capsys)["catalog"] == "obs_catalog"
    argv = [
        "measure", str(paths.image), "--ra", repr(sim.truth.ra), "--dec", repr(sim.truth.dec),
        "--cache-dir", cache, "--target-color", f"g-r={sim.truth.color}", "--json",
    ]
    assert main(argv) == 0
    result = _json(capsys)
    assert result["catalog"] == "obs_catalog"
    assert abs(result["mag"] - sim.truth.mag) < 4 * result["magerr"]  # type: ignore[operator]


def test_imported_catalog_of_another_field_is_not_chosen(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    closed_port_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A catalog imported for another field is ignored: the online choice is tried (and,
    with the service down, named in the error)."""
    monkeypatch.setenv("SKYPHOT_VIZIER_SERVER", closed_port_url)
    elsewhere = simulate_frame(
        SimulationParams(shape=(300, 300), target_mag=None, center=(20.0, -10.0)), seed=2
    )
    cache = str(tmp_path / "cache")
    other = elsewhere.write(tmp_path / "other", stem="other").catalog
    assert main(["catalog", "import", str(other), "--cache-dir", cache]) == 0
    capsys.readouterr()
    sim = simulate_frame(SimulationParams(shape=(300, 300), target_mag=17.0), seed=8)
    paths = sim.write(tmp_path, stem="obs")
    argv = [
        "measure", str(paths.image), "--ra", repr(sim.truth.ra), "--dec", repr(sim.truth.dec),
        "--cache-dir", cache, "--json",
    ]
    assert main(argv) == EXIT_ENVIRONMENT
    err = capsys.readouterr().err
    assert "Pan-STARRS" in err and "did not answer" in err
