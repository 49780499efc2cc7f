"""Settings: packaged defaults < user file < environment < explicit options."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

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
    bad.write_text("colour: blue\ncatalog:\n  nmae: ps1\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'colour', 'catalog.nmae' in "
                       r"configuration file .*bad\.yaml; settings are listed in docs/web.md"):
        load_settings(config_file=bad, env={})


def test_unknown_environment_variables_are_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown environment variable\(s\) SKYPHOT_WORKRES "
                       r"\(did you mean SKYPHOT_WORKERS\?\), SKYPHOT_ZZZ: not a skyphot "
                       r"setting"):
        load_settings(data_dir=tmp_path, env={"SKYPHOT_WORKRES": "3", "SKYPHOT_ZZZ": "1"})
    with pytest.raises(ConfigError, match=r"SKYPHOT_CATALOG__NMAE \(did you mean "
                       r"SKYPHOT_CATALOG__NAME\?\)"):
        load_settings(data_dir=tmp_path, env={"SKYPHOT_CATALOG__NMAE": "ps1"})
    # Not settings, but known: the file to read, the API client's, the test suite's.
    s = load_settings(data_dir=tmp_path, env={"SKYPHOT_URL": "http://x", "SKYPHOT_TOKEN": "t",
                                              "SKYPHOT_TEST_REDIS_URL": "redis://x"})
    assert s.workers == 2


def test_cache_dir_and_vizier_server_are_settings_reaching_the_job(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from skyphot.jobs.runner import build_config

    s = load_settings(data_dir=tmp_path, env={"SKYPHOT_CACHE_DIR": str(tmp_path / "cache"),
                                              "SKYPHOT_VIZIER_SERVER": "http://127.0.0.1:9"})
    assert s.cache_dir == tmp_path / "cache" and s.vizier_server == "http://127.0.0.1:9"
    job = SimpleNamespace(params={"catalog": "ps1"})
    source = SimpleNamespace(ra=150.0, dec=2.0)
    config = build_config(job, source, s, gain=None, saturation=None)  # type: ignore[arg-type]
    assert config.catalog.cache_dir == str(tmp_path / "cache")
    assert config.catalog.server == "http://127.0.0.1:9"
    assert config.catalog.name == "ps1"


def test_template_services_are_settings_reaching_the_job(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from skyphot.jobs.runner import build_config

    s = load_settings(data_dir=tmp_path, env={
        "SKYPHOT_TEMPLATES__LEGACY_URL": "http://127.0.0.1:9/viewer/",
        "SKYPHOT_TEMPLATES__CACHE_DIR": str(tmp_path / "tpl"),
        "SKYPHOT_TEMPLATES__RETRIES": "1"})
    job = SimpleNamespace(params={"template": "auto"})
    source = SimpleNamespace(ra=150.0, dec=2.0)
    config = build_config(job, source, s, gain=None, saturation=None)  # type: ignore[arg-type]
    sub = config.subtraction
    assert (sub.template, sub.cache_dir, sub.retries) == ("auto", str(tmp_path / "tpl"), 1)
    assert sub.service_urls == {"legacy": "http://127.0.0.1:9/viewer"}
    with pytest.raises(ConfigError, match=r"'templates\.ps1_url' is invalid: .*must start "
                       r"with http:// or https://"):
        load_settings(data_dir=tmp_path, env={"SKYPHOT_TEMPLATES__PS1_URL": "ps1images"})


def test_environment_values_are_parsed_like_the_file(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, env={"SKYPHOT_IMAGE_ANALYSIS": "false",
                                              "SKYPHOT_UPLOAD_QUOTA_MB": "null",
                                              "SKYPHOT_SHUTDOWN_GRACE_S": "12.5"})
    assert s.image_analysis is False and s.upload_quota_mb is None
    assert s.shutdown_grace_s == 12.5


def _documented_keys() -> set[str]:
    """Keys in the settings table of docs/web.md (first column, `a`, `b` for several)."""
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "web.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    keys: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            keys |= set(re.findall(r"`([a-z0-9_.]+)`", first))
    return keys


def test_docs_and_settings_model_are_in_step() -> None:
    real: set[str] = set()
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and hasattr(kind, "model_fields"):
            real |= {f"{name}.{sub}" for sub in kind.model_fields}
        else:
            real.add(name)
    documented = _documented_keys()
    assert real - documented == set(), "settings missing from docs/web.md"
    assert documented - real == set(), "docs/web.md documents settings that do not exist"


def test_packaged_defaults_match_the_model(tmp_path: Path) -> None:
    """defaults.yaml holds every setting with the model's own default."""
    import yaml

    from skyphot.settings import defaults_file

    packaged = yaml.safe_load(defaults_file().read_text())
    for name, field in Settings.model_fields.items():
        assert name in packaged, name
        if name in ("catalog", "data_dir"):
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):  # a nested section: compare its keys and values
            default = default.model_dump(mode="json")
        assert packaged[name] == default, name
