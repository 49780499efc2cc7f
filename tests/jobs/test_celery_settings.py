"""The Celery configuration, the queue choice and `skyphot worker` start-up errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from webtest_helpers import make_settings

from skyphot import cli
from skyphot.errors import ConfigError, ToolNotFoundError
from skyphot.jobs import commands
from skyphot.jobs.queue import EmbeddedQueue, make_queue
from skyphot.settings import load_settings

celery_app = pytest.importorskip("skyphot.jobs.celery_app",
                                 reason="Celery is not installed (pip install 'skyphot[celery]')")


def test_reliability_settings_reach_celery(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, queue="celery", job_time_limit_s=600,
                             worker_concurrency=3, broker_url="redis://10.0.0.5:6390/2")
    config = celery_app.celery_config(settings)
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["task_time_limit"] == 600
    assert config["broker_transport_options"]["visibility_timeout"] == 1200
    assert config["broker_connection_retry_on_startup"]
    assert config["worker_concurrency"] == 3
    assert config["result_backend"] is None and config["task_ignore_result"]
    assert config["broker_url"] == "redis://10.0.0.5:6390/2"
    assert celery_app.visibility_timeout_s(100) == 400  # never less than limit + 5 min
    app = celery_app.make_celery(settings)
    assert app.conf.task_acks_late and app.conf.task_default_queue == "skyphot"
    assert celery_app.TASK_NAME in app.tasks
    assert app.tasks[celery_app.TASK_NAME].Request is celery_app.JobRequest


def test_queue_choice_and_environment(tmp_path: Path) -> None:
    assert isinstance(make_queue(make_settings(tmp_path)), EmbeddedQueue)
    from skyphot.jobs.celery_queue import CeleryQueue

    queue = make_queue(make_settings(tmp_path, queue="celery"))
    assert isinstance(queue, CeleryQueue)
    queue.stop()
    settings = load_settings(data_dir=tmp_path, env={
        "SKYPHOT_QUEUE": "celery", "SKYPHOT_BROKER_URL": "redis://broker:6379/1",
        "SKYPHOT_JOB_TIME_LIMIT_S": "120", "SKYPHOT_UPLOAD_QUOTA_MB": "5000"})
    assert settings.queue == "celery" and settings.broker_url == "redis://broker:6379/1"
    assert settings.job_time_limit_s == 120 and settings.upload_quota_bytes == 5_000_000_000
    defaults = load_settings(data_dir=tmp_path, env={})
    assert (defaults.queue, defaults.broker_url, defaults.job_time_limit_s,
            defaults.worker_concurrency, defaults.upload_quota_mb) == (
        "embedded", "redis://127.0.0.1:6379/0", 1800, 2, None)


def test_invalid_reliability_settings_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^configuration is invalid: job_stale_after_s \(5\) "
                       r"must exceed twice job_heartbeat_s \(10\)$"):
        load_settings(data_dir=tmp_path, env={"SKYPHOT_JOB_STALE_AFTER_S": "5"})
    with pytest.raises(ConfigError, match="configuration value 'queue' is invalid"):
        load_settings(data_dir=tmp_path, env={"SKYPHOT_QUEUE": "rabbit"})
    with pytest.raises(ConfigError, match="configuration value 'job_time_limit_s' is invalid"):
        load_settings(data_dir=tmp_path, env={"SKYPHOT_JOB_TIME_LIMIT_S": "1"})
    with pytest.raises(ConfigError, match="configuration value 'upload_quota_mb' is invalid"):
        load_settings(data_dir=tmp_path, env={"SKYPHOT_UPLOAD_QUOTA_MB": "0"})


@pytest.fixture
def worker_args(tmp_path: Path) -> Iterator[argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(prog="skyphot")
    commands.add_parsers(parser.add_subparsers(dest="command", required=True))
    yield parser


def test_worker_refuses_the_embedded_queue(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["worker", "--data-dir", str(tmp_path)])
    assert status == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith(
        "skyphot: error: the configuration says queue: embedded, but workers serve the Celery "
        "queue: set 'queue: celery' (and broker_url)")


def test_worker_explains_an_unreachable_database(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.yaml").write_text(
        "queue: celery\ndatabase_url: postgresql+psycopg://u:secret@127.0.0.1:9/none\n")
    status = cli.main(["worker", "--data-dir", str(tmp_path), "--database-wait", "0"])
    err = capsys.readouterr().err
    assert status == cli.EXIT_BAD_INPUT
    assert err.startswith("skyphot: error: cannot use the database "
                          "postgresql+psycopg://u:***@127.0.0.1:9/none (")
    assert err.rstrip().endswith("check database_url and that the database server is running")
    assert "secret" not in err


def test_worker_options_override_the_configuration(
        tmp_path: Path, worker_args: argparse.ArgumentParser) -> None:
    (tmp_path / "config.yaml").write_text("queue: celery\nworker_concurrency: 4\n")
    args = worker_args.parse_args(["worker", "--data-dir", str(tmp_path), "--concurrency",
                                   "1", "--queue", "night"])
    settings = commands.worker_settings(args)
    assert settings.worker_concurrency == 1 and settings.celery_queue == "night"
    args = worker_args.parse_args(["worker", "--data-dir", str(tmp_path)])
    settings = commands.worker_settings(args)
    assert settings.worker_concurrency == 4 and settings.celery_queue == "skyphot"


def test_worker_explains_an_unusable_database_url(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.yaml").write_text("queue: celery\ndatabase_url: 'nosuchdb://x/y'\n")
    assert cli.main(["worker", "--data-dir", str(tmp_path)]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith(
        "skyphot: error: database_url is unusable (NoSuchModuleError: ")


def test_missing_celery_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("skyphot.jobs.celery_queue", "skyphot.jobs.celery_app"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "celery", None)  # as if not installed
    with pytest.raises(ToolNotFoundError, match=r"^queue: celery needs Celery \(celery is not "
                       r"installed\): pip install 'skyphot\[celery\]'$"):
        make_queue(make_settings(tmp_path, queue="celery"))
    (tmp_path / "config.yaml").write_text("queue: celery\n")
    assert cli.main(["worker", "--data-dir", str(tmp_path)]) == cli.EXIT_ENVIRONMENT
    assert capsys.readouterr().err == (
        "skyphot: error: skyphot worker needs Celery (celery is not installed): "
        "pip install 'skyphot[celery]'\n")
