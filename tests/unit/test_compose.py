"""docker-compose.yml describes a production shape that the code can actually run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml

from rightsledger.cli import app
from rightsledger.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def rightsledger_services() -> dict[str, Any]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image", "").startswith("rightsledger") or "build" in service
    }


def resolve(argv: list[str]) -> Any:
    """The CLI command an argument list runs, checking every option it passes."""
    command: Any = typer.main.get_command(app)
    args = list(argv)
    while hasattr(command, "get_command") and args and not args[0].startswith("-"):
        sub = command.get_command(command.context_class(command), args.pop(0))
        assert sub is not None, f"no command {argv}"
        command = sub
    assert not hasattr(command, "get_command"), f"{argv} does not name a command"
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for arg in args:
        if arg.startswith("--"):
            assert arg.split("=")[0] in known, f"{argv}: unknown option {arg}"
    return command


ONE_SHOT = {"migrate"}
"""Services that run once and exit; the others wait for them to complete."""


def test_the_production_shape_has_every_process() -> None:
    """PostgreSQL, Kafka in KRaft mode, the api, projections, relay and workers processes, and
    the one-shot migrate step; each long-running service has a health check."""
    services = compose()["services"]
    assert {"postgres", "kafka", "migrate", "api", "projections", "relay", "workers"} <= set(
        services
    )
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
        if name not in ONE_SHOT:
            assert "test" in service["healthcheck"], f"{name} has no health check"


def test_every_service_command_exists_in_the_cli() -> None:
    """Each rightsledger service runs a real command with real options."""
    services = rightsledger_services()
    assert len(services) == 5
    for name, service in services.items():
        resolve(service["command"])
        health = service["healthcheck"].get("test", [])
        if name in ONE_SHOT:
            assert service["healthcheck"] == {"disable": True}, f"{name} is a one-shot step"
        if health[:2] == ["CMD", "rightsledger"]:
            resolve(health[2:])


def test_the_schema_is_migrated_once_before_any_rightsledger_process_starts() -> None:
    """`migrate` runs `rightsledger migrate` once (restarted only on failure) after PostgreSQL
    is healthy, and every other rightsledger service waits for it to complete successfully,
    so no two processes create the schema at once."""
    services = rightsledger_services()
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "on-failure"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name, service in services.items():
        if name in ONE_SHOT:
            continue
        assert service["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }, f"{name} does not wait for the migrations"


def test_the_image_runs_the_cli() -> None:
    """The Dockerfile's entry point is the console script the services' commands are for."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["rightsledger"]' in dockerfile
    assert "pip install" in dockerfile


def test_every_environment_variable_is_a_setting() -> None:
    """No service sets a RIGHTSLEDGER_ variable that the settings do not read."""
    prefix = Settings.model_config.get("env_prefix", "")
    known = {prefix + name.upper() for name in Settings.model_fields}
    for name, service in rightsledger_services().items():
        for variable in service["environment"]:
            assert variable in known, f"{name} sets {variable}, which no setting reads"
