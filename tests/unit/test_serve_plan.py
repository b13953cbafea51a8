"""What `serve` runs is derived from the settings before it starts, into new values."""

from __future__ import annotations

import os
from typing import Any

import pytest

from rightsledger.cli import plan_serve
from rightsledger.config import Settings


def settings(**values: Any) -> Settings:
    """Settings as an operator would set them, whatever this shell holds."""
    base: dict[str, Any] = {  # validated by the settings, as the environment's text is
        "database_url": "postgresql://u:p@db:5432/ledger",
        "admin_key": None,
        "kafka_bootstrap": None,
        "follower_processes": True,
        "run_projections": True,
        "run_workers": True,
    }
    base.update(values)
    return Settings(**base)


def test_the_plan_is_a_copy_and_the_settings_read_stay_as_they_were() -> None:
    """Options, the embedded broker's address and the followers taken out of the API are in
    the plan's settings; the settings read are unchanged."""
    read = settings(kafka_port=9123, admin_key="rlk_given")
    before = read.model_dump()
    plan = plan_serve(read, host="0.0.0.0", port=8100, workers=3)
    assert read.model_dump() == before
    derived = plan.settings
    assert (derived.host, derived.port, derived.web_workers) == ("0.0.0.0", 8100, 3)
    assert plan.api_processes == 3
    assert plan.broker_port == 9123
    assert derived.kafka_bootstrap == "127.0.0.1:9123"
    assert plan.followers == {
        "projections run": ["projections", "run"],
        "workers run": ["workers", "run"],
    }
    assert (derived.run_projections, derived.run_workers) == (False, False)
    assert plan.generated_key is None


def test_a_configured_broker_and_followers_as_threads() -> None:
    """With Kafka configured no broker is started; with the followers as threads of the API
    they stay in the API processes, which are told so in their environment."""
    plan = plan_serve(settings(kafka_bootstrap="kafka:9092", follower_processes=False))
    assert plan.broker_port is None
    assert plan.followers == {}
    assert (plan.settings.run_projections, plan.settings.run_workers) == (True, True)
    env = plan.api_env("postgresql://u:p@db:5432/ledger", "/tmp/metrics")
    assert env["RIGHTSLEDGER_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert (env["RIGHTSLEDGER_RUN_PROJECTIONS"], env["RIGHTSLEDGER_RUN_WORKERS"]) == (
        "true",
        "true",
    )


def test_the_api_processes_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An API process is given serve's environment with the store, the schema, the broker,
    the followers left to their processes and the metrics directory, but not the admin key
    (serve seeds it); the followers get the store and broker too. serve's own environment
    is left as it was."""
    monkeypatch.setenv("RIGHTSLEDGER_ADMIN_KEY", "rlk_secret")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    before = dict(os.environ)
    plan = plan_serve(settings(database_schema="tenant", kafka_port=9200), workers=2)
    url = "postgresql://u:p@127.0.0.1:5433/x"
    env = plan.api_env(url, "/run/metrics")
    assert env["RIGHTSLEDGER_DATABASE_URL"] == url
    assert env["RIGHTSLEDGER_DATABASE_SCHEMA"] == "tenant"
    assert env["RIGHTSLEDGER_KAFKA_BOOTSTRAP"] == "127.0.0.1:9200"
    assert env["RIGHTSLEDGER_RUN_PROJECTIONS"] == env["RIGHTSLEDGER_RUN_WORKERS"] == "false"
    assert env["PROMETHEUS_MULTIPROC_DIR"] == "/run/metrics"
    assert env["SOMETHING_ELSE"] == "kept"
    assert "RIGHTSLEDGER_ADMIN_KEY" not in env
    followers = plan.follower_env(url)
    assert followers["RIGHTSLEDGER_DATABASE_URL"] == url
    assert followers["RIGHTSLEDGER_KAFKA_BOOTSTRAP"] == "127.0.0.1:9200"
    assert "PROMETHEUS_MULTIPROC_DIR" not in followers
    assert dict(os.environ) == before


def test_a_run_on_the_embedded_store_without_a_key_gets_one_of_its_own() -> None:
    """With neither an admin key nor a database URL, the plan holds a generated key."""
    plan = plan_serve(settings(database_url=None))
    assert plan.generated_key is not None
    assert plan.generated_key.startswith("rlk_local_")
    assert plan.settings.admin_key is not None
    assert plan.settings.admin_key.get_secret_value() == plan.generated_key
