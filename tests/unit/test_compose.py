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


def test_the_production_shape_has_every_process() -> None:
    """PostgreSQL, Kafka in KRaft mode, and the api, projections, relay and workers processes."""
    services = compose()["services"]
    assert {"postgres", "kafka", "api", "projections", "relay", "workers"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"


def test_every_service_command_exists_in_the_cli() -> None:
    """Each rightsledger service runs a real command with real options."""
    services = rightsledger_services()
    assert len(services) == 4
    for service in services.values():
        resolve(service["command"])
        health = service["healthcheck"]["test"]
        if health[:2] == ["CMD", "rightsledger"]:
            resolve(health[2:])


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
