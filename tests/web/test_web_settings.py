"""Settings: packaged defaults < user file < environment < explicit options."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyphot.errors import ConfigError
from skyphot.settings import Settings, load_settings


def test_defaults(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, env={})
    assert s.image_analysis is True and s.max_body_size == 100 and s.workers == 2
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'skyphot.db'}"
    assert s.upload_path == tmp_path.resolve() / "uploads"
    assert s.max_body_bytes == 100_000_000


def test_layers(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "image_analysis: false\nmax_body_size: 5\ncatalog:\n  name: ps1\nworkers: 3\n")
    s = load_settings(data_dir=tmp_path, env={"SKYPHOT_WORKERS": "4",
                                              "SKYPHOT_CATALOG__MAGSYS": "Vega",
                                              "SKYPHOT_DATABASE_URL": "postgresql://db/x",
                                              "UNRELATED": "1"})
    assert s.image_analysis is False and s.max_body_size == 5
    assert s.workers == 4 and s.catalog.name == "ps1" and s.catalog.magsys == "Vega"
    assert s.db_url == "postgresql://db/x"
    s2 = load_settings(data_dir=tmp_path, env={"SKYPHOT_WORKERS": "4"},
                       overrides={"workers": 1, "port": None})
    assert s2.workers == 1 and s2.port == 5000


def test_every_field_is_described() -> None:
    assert all(f.description for f in Settings.model_fields.values())


def test_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'max_body_size' is invalid: Input should be greater"):
        load_settings(data_dir=tmp_path, env={"SKYPHOT_MAX_BODY_SIZE": "-1"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("workers: [1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML"):
        load_settings(config_file=bad, env={})
    bad.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_settings(config_file=bad, env={})
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_settings(config_file=tmp_path / "missing.yaml", env={})
    bad.write_text("colour: blue\n")
    with pytest.raises(ConfigError, match="'colour' is invalid: Extra inputs"):
        load_settings(config_file=bad, env={})
