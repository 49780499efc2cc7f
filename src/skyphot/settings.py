"""Settings of the web application, workers and commands (pydantic-settings).

Three layers, later ones win: the packaged ``config/defaults.yaml``, a user ``config.yaml``
(``--config``, ``$SKYPHOT_CONFIG`` or ``<data_dir>/config.yaml``) and ``SKYPHOT_*``
environment variables (nested keys joined by ``__``, e.g. ``SKYPHOT_CATALOG__NAME=ps1``),
read by pydantic-settings' environment source. An unknown key in a file or an unknown
``SKYPHOT_*`` variable is a start-up error naming it (a typo must not be ignored silently).

A nested section is a pydantic ``BaseModel`` field of ``Settings`` (like ``catalog``): its
keys are written nested in ``config.yaml`` and as ``SKYPHOT_<SECTION>__<KEY>`` in the
environment, and ``ENV_NAMES`` learns them by itself.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from skyphot.errors import ConfigError

ENV_PREFIX = "SKYPHOT_"
NESTED_DELIMITER = "__"
# SKYPHOT_* variables that are not settings: the file to read, the `skyphot` API client's
# server and token, and the test suite's service URLs (SKYPHOT_TEST_*).
OTHER_ENV_NAMES = frozenset({"SKYPHOT_CONFIG", "SKYPHOT_URL", "SKYPHOT_TOKEN"})
TEST_ENV_PREFIX = "SKYPHOT_TEST_"


class CatalogSettings(BaseModel):
    """Reference catalog used when an upload does not choose one."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None, description="Default catalog name for online/automatic selection (e.g. 'ps1')."
    )
    path: str | None = Field(
        None, description="Default local catalog file (for sites without internet access)."
    )
    magsys: Literal["AB", "Vega"] = Field("AB", description="Magnitude system of `path`.")


class TemplateSettings(BaseModel):
    """Survey templates for image subtraction ('auto' in the Image Analysis form)."""

    model_config = ConfigDict(extra="forbid")

    cache_dir: Path | None = Field(
        None, description="Directory of the workers' template cache; None: "
        "$SKYPHOT_TEMPLATE_DIR or ~/.cache/skyphot/templates."
    )
    ps1_url: str | None = Field(
        None, description="Pan-STARRS1 image cutout service base URL (its cgi-bin); None: "
        "https://ps1images.stsci.edu/cgi-bin."
    )
    legacy_url: str | None = Field(
        None, description="Legacy Survey viewer base URL for Legacy Survey templates; None: "
        "https://www.legacysurvey.org/viewer."
    )
    des_url: str | None = Field(
        None, description="Legacy Survey viewer base URL for DES templates; None: "
        "https://www.legacysurvey.org/viewer."
    )
    skymapper_url: str | None = Field(
        None, description="SkyMapper SIAP base URL; None: "
        "https://api.skymapper.nci.org.au/public/siap/dr4."
    )
    timeout_s: float = Field(60.0, description="Seconds per cutout request.", gt=0)
    retries: int = Field(3, description="Attempts per cutout request (with back-off).", ge=1)

    @field_validator("ps1_url", "legacy_url", "des_url", "skymapper_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {value!r})")
        return value.strip().rstrip("/")

    def service_urls(self) -> dict[str, str]:
        """The URLs set, by survey name (as ``SubtractionConfig.service_urls`` takes them)."""
        urls = {"ps1": self.ps1_url, "legacy": self.legacy_url, "des": self.des_url,
                "skymapper": self.skymapper_url}
        return {name: url for name, url in urls.items() if url is not None}


class SkyPortalSettings(BaseModel):
    """The SkyPortal instance points are imported from and pushed to."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, description="Base URL of the SkyPortal server, e.g. https://fritz.science; "
        "None: SkyPortal is not used."
    )
    token: SecretStr | None = Field(
        None, description="SkyPortal API token (sent as 'Authorization: token ...'); never "
        "logged nor shown in pages."
    )
    group_ids: list[int] = Field(
        default_factory=list, description="SkyPortal group ids every pushed point is shared "
        "with."
    )
    instruments: dict[str, int | str] = Field(
        default_factory=dict, description="skyphot instrument name -> SkyPortal instrument id "
        "(integer) or name (resolved through GET /api/instrument)."
    )
    filters: dict[str, str] = Field(
        default_factory=dict, description="Extra skyphot filter name -> SkyPortal bandpass "
        "name (e.g. {clear: sdssr}); wins over the built-in map."
    )
    push: Literal["auto", "manual", "off"] = Field(
        "manual", description="auto: push every new point of a SkyPortal source after its job "
        "succeeds; manual: only on the button/command; off: never."
    )
    timeout_s: float = Field(
        20.0, description="Seconds to wait for one SkyPortal answer before the attempt fails.",
        gt=0,
    )
    max_attempts: int = Field(
        5, description="Attempts of one push before it stays failed (retried on time-outs, "
        "5xx and refused connections, never on 4xx).", ge=1
    )
    backoff_s: float = Field(
        10.0, description="Wait before the first retry of a push, s; doubled each retry.",
        ge=0,
    )

    @field_validator("group_ids", mode="before")
    @classmethod
    def _split_group_ids(cls, value: Any) -> Any:
        # From the environment: "3" arrives as 3 and "3,7" as text.
        if isinstance(value, int):
            return [value]
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("url")
    @classmethod
    def _strip_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {value!r})")
        return value.strip().rstrip("/")

    @property
    def configured(self) -> bool:
        """True when both a URL and a token are set."""
        return self.url is not None and self.token is not None


class Settings(BaseSettings):
    """Everything `skyphot serve`, its workers and `skyphot admin-token` need.

    Build it with ``load_settings`` (all layers); ``Settings()`` alone reads the defaults
    and the environment only.
    """

    model_config = SettingsConfigDict(
        extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter=NESTED_DELIMITER,
        env_parse_none_str="null", case_sensitive=False,
    )

    image_analysis: bool = Field(
        True, description="Feature flag: when false the Image Analysis button, page and "
        "endpoint are absent (HTTP 404)."
    )
    max_body_size: float = Field(
        100.0, description="Largest accepted upload, MB (10^6 bytes); larger ones get 413.", gt=0
    )
    data_dir: Path = Field(
        Path("~/.local/share/skyphot"),
        description="Directory holding the SQLite database, uploads, job logs and secrets.",
    )
    upload_dir: Path | None = Field(
        None, description="Where uploaded frames are kept; None: <data_dir>/uploads."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL (sqlite or postgresql); None: SQLite in data_dir."
    )
    workers: int = Field(2, description="Analysis worker processes started by serve.", ge=0)
    queue: Literal["embedded", "celery"] = Field(
        "embedded", description="Job queue backend: 'embedded' = worker processes of serve; "
        "'celery' = a Redis broker and `skyphot worker` processes on any machine."
    )
    broker_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Celery broker (queue: celery), a Redis URL."
    )
    celery_queue: str = Field(
        "skyphot", description="Name of the broker queue jobs are sent to and workers consume.",
        min_length=1,
    )
    worker_concurrency: int = Field(
        2, description="Jobs one `skyphot worker` runs at the same time (processes).", ge=1
    )
    job_time_limit_s: float = Field(
        1800.0, description="Hard time limit of one analysis, s; a soft limit a little before "
        "it ends the job as failed with a clear message, the hard one kills a stuck worker.",
        ge=2,
    )
    job_heartbeat_s: float = Field(
        10.0, description="Seconds between the 'still alive' stamps a running job writes.", gt=0
    )
    job_stale_after_s: float = Field(
        60.0, description="A running job not stamped for this long lost its worker and is "
        "re-queued; a queued job this old that the broker no longer holds is sent again.", gt=0
    )
    job_sweep_interval_s: float = Field(
        30.0, description="Seconds between a Celery worker's sweeps for lost jobs.", gt=0
    )
    job_max_attempts: int = Field(
        3, description="Runs a job gets when its workers keep dying (crash, out of memory) "
        "before it is marked failed.", ge=1
    )
    max_image_pixels: int = Field(
        200_000_000, description="Largest image (pixels, NAXIS1 x NAXIS2 or ZNAXISn of a "
        "tile-compressed image) a job or the header check accepts; checked on the headers "
        "before anything is decompressed. The default (e.g. 14000x14000) keeps two workers "
        "within 24 GB.", ge=1,
    )
    upload_retention_days: float | None = Field(
        None, description="Days the upload of an ended job is kept (for retries) before it "
        "is deleted; None: kept for ever (see upload_quota_mb).", gt=0,
    )
    shutdown_grace_s: float = Field(
        30.0, description="On SIGTERM or SIGINT, seconds running jobs get to finish before "
        "their workers are stopped and the jobs handed back to the queue; the server exits "
        "within this time. Give Docker/systemd a longer stop timeout.", ge=1,
    )
    upload_quota_mb: float | None = Field(
        None, description="Most space the kept uploads may take, MB (10^6 bytes); an upload "
        "that would exceed it gets HTTP 507. None: unlimited.", gt=0
    )
    host: str = Field("127.0.0.1", description="Address the web server listens on.")
    port: int = Field(5000, description="TCP port of the web server.", ge=0, le=65535)
    job_poll_interval: float = Field(
        0.5, description="Seconds an idle worker waits before looking for queued jobs.", gt=0
    )
    worker_nice: int = Field(
        5, description="Niceness added to worker processes so pages stay responsive.", ge=0
    )
    catalog: CatalogSettings = Field(
        default_factory=lambda: CatalogSettings(), description="Default reference catalog."
    )
    skyportal: SkyPortalSettings = Field(
        default_factory=lambda: SkyPortalSettings(),
        description="SkyPortal import and push (url, token, group_ids, instruments, push).",
    )
    light_curve_color_window_d: float = Field(
        1.0, description="Colours from the light curve: points within this many days of a "
        "frame's epoch give its colour (interpolated at the epoch).", gt=0
    )
    cache_dir: Path | None = Field(
        None, description="Directory of the online catalog cache used by the workers; None: "
        "~/.cache/skyphot/catalogs."
    )
    vizier_server: str | None = Field(
        None, description="VizieR server (mirror host or URL) the workers query; None: "
        "astroquery's default."
    )
    name_table: Path | None = Field(
        None, description="Local name table for new sources given by name: a CSV or ECSV "
        "file with columns name, ra, dec (degrees or sexagesimal) and optionally aliases "
        "(separated by ';' or '|'); looked up after your own sources, before the online "
        "resolver. None: no table."
    )
    name_resolver_online: bool = Field(
        True, description="Resolve names found neither among your sources nor in the name "
        "table through CDS Sesame (the only part of name resolution needing the network)."
    )
    name_resolver_url: str = Field(
        "https://cds.unistra.fr/cgi-bin/nph-sesame", description="Base URL of the Sesame "
        "name resolver (CDS or a mirror, e.g. http://vizier.cfa.harvard.edu/viz-bin/"
        "nph-sesame); '/-oI/SNV?<name>' is appended."
    )
    name_resolver_timeout_s: float = Field(
        10.0, description="Seconds to wait for the Sesame answer before giving up.", gt=0
    )

    @field_validator("name_resolver_url")
    @classmethod
    def _check_resolver_url(cls, value: str) -> str:
        if not value.strip().startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {value!r})")
        return value.strip().rstrip("/")

    @property
    def name_table_path(self) -> Path | None:
        """The name table, user-expanded and absolute (None: no table)."""
        return None if self.name_table is None else self.name_table.expanduser().resolve()
    templates: TemplateSettings = Field(
        default_factory=lambda: TemplateSettings(),
        description="Survey templates for subtraction: cache directory, cutout service URLs "
        "(ps1_url, legacy_url, des_url, skymapper_url), timeout_s, retries.",
    )

    @property
    def data_path(self) -> Path:
        """The data directory, user-expanded and absolute."""
        return self.data_dir.expanduser().resolve()

    @property
    def upload_path(self) -> Path:
        """The upload directory, absolute."""
        base = self.upload_dir if self.upload_dir is not None else self.data_path / "uploads"
        return base.expanduser().resolve()

    @property
    def jobs_path(self) -> Path:
        """Directory of per-job logs and diagnostic images."""
        return self.data_path / "jobs"

    @property
    def db_url(self) -> str:
        """The database URL actually used."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_path / 'skyphot.db'}"

    @property
    def max_body_bytes(self) -> int:
        """``max_body_size`` in bytes."""
        return int(self.max_body_size * 1_000_000)

    @property
    def upload_quota_bytes(self) -> int | None:
        """``upload_quota_mb`` in bytes (None: unlimited)."""
        return None if self.upload_quota_mb is None else int(self.upload_quota_mb * 1_000_000)

    def for_process(self) -> dict[str, Any]:
        """The settings as plain data for a worker process, secrets included (a JSON dump
        masks them, and the worker needs the SkyPortal token to push)."""
        data = self.model_dump(mode="json")
        if self.skyportal.token is not None:
            data["skyportal"]["token"] = self.skyportal.token.get_secret_value()
        return data

    @model_validator(mode="after")
    def _check_job_timing(self) -> Settings:
        if self.job_stale_after_s <= 2 * self.job_heartbeat_s:
            # Otherwise a healthy job between two stamps would look abandoned.
            raise ValueError(
                f"job_stale_after_s ({self.job_stale_after_s:g}) must exceed twice "
                f"job_heartbeat_s ({self.job_heartbeat_s:g})"
            )
        return self


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read configuration file {path}: {err.strerror}") from err
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"configuration file {path} is not valid YAML: {err}") from err
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping of keys to values")
    return loaded


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _sections() -> dict[str, type[BaseModel]]:
    """Nested sections of ``Settings``: field name -> model."""
    found = {}
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found[name] = kind
    return found


def env_names() -> frozenset[str]:
    """Every ``SKYPHOT_*`` variable that sets something (upper case)."""
    names = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    for section, model in _sections().items():
        names |= {f"{ENV_PREFIX}{section.upper()}{NESTED_DELIMITER}{key.upper()}"
                  for key in model.model_fields}
    return frozenset(names)


def _documented_spellings(env: Mapping[str, str]) -> dict[str, str]:
    """The environment with the documented SkyPortal spellings made pydantic-settings' own:
    ``SKYPHOT_SKYPORTAL_URL`` is ``SKYPHOT_SKYPORTAL__URL``, and a comma-separated
    ``..._GROUP_IDS`` (``3,7``) is the JSON list pydantic-settings reads for a list."""
    short = f"{ENV_PREFIX}SKYPORTAL_"
    out: dict[str, str] = {}
    for name, value in env.items():
        upper = name.upper()
        if upper.startswith(short) and not upper.startswith(short[:-1] + NESTED_DELIMITER):
            name = short[:-1] + NESTED_DELIMITER + upper[len(short):]
            upper = name
        if upper.endswith(f"{NESTED_DELIMITER}GROUP_IDS") and not value.strip().startswith("["):
            value = "[" + value + "]"
        out[name] = value
    return out


def _check_env_names(env: Mapping[str, str]) -> None:
    known = env_names()
    unknown = sorted(
        name for name in env
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
        and name.upper() not in OTHER_ENV_NAMES and not name.upper().startswith(TEST_ENV_PREFIX)
    )
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.8)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise ConfigError(
            f"unknown environment variable(s) {', '.join(hints)}: not a skyphot setting; "
            "fix or unset them (settings are listed in docs/web.md)"
        )


def _check_keys(values: Mapping[str, Any], origin: str) -> None:
    sections = _sections()
    unknown = [str(k) for k in values if k not in Settings.model_fields]
    for section, model in sections.items():
        nested = values.get(section)
        if isinstance(nested, Mapping):
            unknown += [f"{section}.{k}" for k in nested if k not in model.model_fields]
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(repr(k) for k in unknown)} in {origin}; "
            "settings are listed in docs/web.md"
        )


class _EnvLayer(EnvSettingsSource):
    """pydantic-settings' environment source reading a given mapping (``os.environ`` by
    default), so callers and tests can pass their own."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): (None if value == self.env_parse_none_str else value)
                for name, value in self._environ.items()}


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    env = _documented_spellings(env)
    _check_env_names(env)
    return dict(_EnvLayer(env)())


def defaults_file() -> Path:
    """The packaged defaults file."""
    return Path(str(resources.files("skyphot") / "config" / "defaults.yaml"))


def load_settings(
    *,
    config_file: str | Path | None = None,
    data_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults, then the user file, then environment, then ``overrides`` (e.g. CLI options).

    ``data_dir`` (a CLI option) wins over every layer and is where ``config.yaml`` is looked
    for when no file is named. Raises ``ConfigError`` naming the bad key.
    """
    environ = os.environ if env is None else env
    values = _read_yaml(defaults_file())
    _check_keys(values, str(defaults_file()))
    env_values = _env_layer(environ)
    chosen_dir = data_dir or env_values.get("data_dir") or values.get("data_dir")
    user_file: Path | None = None
    if config_file is not None:
        user_file = Path(config_file)
    elif environ.get("SKYPHOT_CONFIG"):
        user_file = Path(environ["SKYPHOT_CONFIG"])
    elif chosen_dir is not None:
        candidate = Path(str(chosen_dir)).expanduser() / "config.yaml"
        user_file = candidate if candidate.is_file() else None
    if user_file is not None:
        user_values = _read_yaml(user_file)
        _check_keys(user_values, f"configuration file {user_file}")
        values = _merge(values, user_values)
    values = _merge(values, env_values)
    if overrides:
        values = _merge(values, {k: v for k, v in overrides.items() if v is not None})
    if data_dir is not None:
        values["data_dir"] = str(data_dir)
    try:
        return Settings.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if not where:  # a rule across several keys
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"configuration is invalid: {message}") from err
        raise ConfigError(f"configuration value {where!r} is invalid: {first['msg']}") from err
