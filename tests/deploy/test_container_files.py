"""The container files agree with each other, with `make setup` and with the settings.

No Docker engine runs on the build machines: the files are parsed here, and when a Compose
client is installed (`docker compose` or Debian's `docker-compose`) it validates the file too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from skyphot.settings import Settings, load_settings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

REPO = Path(__file__).resolve().parents[2]
BROWSER_PACKAGES = {"chromium", "chromium-driver"}  # only the page tests need these


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def docker_args() -> dict[str, str]:
    args = {}
    for keyword, rest in dockerfile():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = shlex.split(value)[0]
    return args


def docker_env() -> dict[str, str]:
    env = {}
    for keyword, rest in dockerfile():
        if keyword == "ENV":
            name, _, value = rest.partition("=")
            env[name] = value
    return env


def makefile_packages() -> list[str]:
    match = re.search(r"^APT_PACKAGES\s*:=\s*(.+)$", (REPO / "Makefile").read_text(), re.M)
    assert match, "the Makefile no longer defines APT_PACKAGES"
    return match.group(1).split()


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def extras() -> set[str]:
    """The optional-dependency extras pyproject.toml defines."""
    if tomllib is None:
        pytest.skip("reading pyproject.toml needs Python 3.11 (tomllib)")
    with (REPO / "pyproject.toml").open("rb") as stream:
        return set(tomllib.load(stream)["project"]["optional-dependencies"])


# --- Dockerfile --------------------------------------------------------------------------------


def test_image_has_exactly_the_analysis_tools_of_make_setup() -> None:
    analysis = [p for p in makefile_packages() if p not in BROWSER_PACKAGES]
    image = docker_args()["ANALYSIS_PACKAGES"].split()
    assert sorted(image) == sorted(analysis)
    assert {"source-extractor", "scamp", "psfex", "swarp", "astrometry.net"} <= set(image)
    assert any(p.startswith("astrometry-data-tycho2") for p in image)
    installs = [rest for kw, rest in dockerfile() if kw == "RUN" and "apt-get install" in rest]
    assert len(installs) == 1 and "${ANALYSIS_PACKAGES}" in installs[0]
    assert "chromium" not in (REPO / "Dockerfile").read_text().replace(
        "without Chromium", "")


def test_image_base_user_command_and_healthcheck() -> None:
    instructions = dockerfile()
    (base,) = [rest for kw, rest in instructions if kw == "FROM"]
    match = re.fullmatch(r"python:(3)\.(\d+)-slim-bookworm", base)
    assert match, base
    assert (int(match.group(1)), int(match.group(2))) >= (3, 10)  # requires-python
    users = [rest for kw, rest in instructions if kw == "USER"]
    assert users and users[-1] not in ("root", "0")
    (command,) = [rest for kw, rest in instructions if kw == "CMD"]
    assert json.loads(command) == ["skyphot", "serve", "--host", "0.0.0.0"]
    assert any(kw == "HEALTHCHECK" and "/api/info" in rest for kw, rest in instructions)
    env = docker_env()
    assert env["SKYPHOT_DATA_DIR"] == "/data" and env["SKYPHOT_UPLOAD_DIR"] == "/uploads"
    for key in ("SKYPHOT_DATA_DIR", "SKYPHOT_UPLOAD_DIR", "SKYPHOT_PORT"):
        assert key.removeprefix("SKYPHOT_").lower() in Settings.model_fields, key


def test_image_installs_the_extras_the_services_need() -> None:
    wanted = {"web", "online", "postgres"} | ({"celery"} & extras())
    installed = set(docker_args()["SKYPHOT_EXTRAS"].split(","))
    assert wanted <= installed
    assert installed - {"celery"} <= extras(), "the image asks for an extra that does not exist"


def test_dockerignore_keeps_the_build_inputs() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", "config.yaml", ".env"} <= ignored
    assert not {"src", "pyproject.toml", "README.md"} & ignored
    copied = [rest for kw, rest in dockerfile() if kw == "COPY"]
    assert copied == ["pyproject.toml README.md /tmp/skyphot/", "src /tmp/skyphot/src"]


# --- docker-compose.yml ------------------------------------------------------------------------


def test_compose_services_commands_and_volumes() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) == {"web", "worker", "postgres", "redis"}
    assert set(spec["volumes"]) >= {"data", "uploads", "postgres"}
    web, worker = services["web"], services["worker"]
    assert web["command"] == ["skyphot", "serve", "--host", "0.0.0.0"]
    assert worker["command"] == ["skyphot", "worker"]
    # --scale worker=N needs a worker without a fixed name or a published port.
    assert "container_name" not in worker and "ports" not in worker
    assert web["ports"] == ["${SKYPHOT_BIND:-127.0.0.1}:${SKYPHOT_PORT:-5000}:5000"]
    env = docker_env()
    for service in (web, worker):
        mounts = service["volumes"]
        assert f"data:{env['SKYPHOT_DATA_DIR']}" in mounts
        assert f"uploads:{env['SKYPHOT_UPLOAD_DIR']}" in mounts
        (config,) = [m for m in mounts if isinstance(m, dict)]
        assert config["read_only"] is True and config["type"] == "bind"
        assert config["target"] == service["environment"]["SKYPHOT_CONFIG"]
        assert service["environment"]["SKYPHOT_QUEUE"] == "celery"
        assert service["environment"]["SKYPHOT_BROKER_URL"] == "redis://redis:6379/0"
        assert service["environment"]["SKYPHOT_DATABASE_URL"].startswith(
            "postgresql+psycopg://skyphot:${POSTGRES_PASSWORD:?")
    assert "postgres:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "ports" not in services["postgres"] and "ports" not in services["redis"]
    assert worker["depends_on"]["web"]["condition"] == "service_healthy"


def compose_environment(tmp_path: Path) -> dict[str, str]:
    """The web service's SKYPHOT_* variables with the password filled in."""
    env = dict(compose()["services"]["web"]["environment"])
    env["SKYPHOT_DATABASE_URL"] = re.sub(r"\$\{POSTGRES_PASSWORD[^}]*\}", "secret",
                                         env["SKYPHOT_DATABASE_URL"])
    env["SKYPHOT_CONFIG"] = str(tmp_path / "config.yaml")
    (tmp_path / "config.yaml").write_text("max_body_size: 200\n")
    return env


def test_compose_environment_names_real_settings(tmp_path: Path) -> None:
    env = compose_environment(tmp_path)
    keys = {name.removeprefix("SKYPHOT_").lower() for name in env if name != "SKYPHOT_CONFIG"}
    missing = keys - set(Settings.model_fields)
    if missing <= {"broker_url"} and "celery" not in str(
            Settings.model_fields["queue"].annotation):
        pytest.skip("the Celery queue settings (queue: celery, broker_url) are not in this "
                    "tree yet")
    assert not missing, f"docker-compose.yml sets unknown settings {sorted(missing)}"
    settings = load_settings(env=env, data_dir=tmp_path / "data")
    assert settings.db_url == "postgresql+psycopg://skyphot:secret@postgres:5432/skyphot"
    assert settings.queue == "celery" and settings.max_body_size == 200


def compose_client() -> list[str] | None:
    """`docker compose` (plugin) or `docker-compose`, whichever works here."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_client_accepts_the_file(tmp_path: Path) -> None:
    client = compose_client()
    if client is None:
        pytest.skip("no Compose client installed (docker compose / docker-compose)")
    (tmp_path / "config.yaml").write_text("max_body_size: 200\n")
    base = [*client, "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yml"),
            "config"]
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "DOCKER_HOST")}
    env["SKYPHOT_CONFIG_FILE"] = str(tmp_path / "config.yaml")
    refused = subprocess.run([*base, "-q"], capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode != 0 and "set POSTGRES_PASSWORD in .env" in refused.stderr
    env["POSTGRES_PASSWORD"] = "secret"
    done = subprocess.run(base, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == {"web", "worker", "postgres", "redis"}
    url = resolved["services"]["worker"]["environment"]["SKYPHOT_DATABASE_URL"]
    assert url == "postgresql+psycopg://skyphot:secret@postgres:5432/skyphot"


def test_deploy_guide_covers_the_commands() -> None:
    text = (REPO / "docs" / "deploy.md").read_text()
    for needle in ("docker compose up", "--scale worker=", "skyphot admin-token",
                   "POSTGRES_PASSWORD", "config.yaml", "skyphot worker", "skyphot batch"):
        assert needle in text, needle
