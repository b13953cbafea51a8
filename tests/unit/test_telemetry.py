"""FastAPI's native OpenTelemetry follows ``RIGHTSLEDGER_OPENTELEMETRY``: off by default."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from rightsledger.api.app import telemetry
from rightsledger.config import Settings

PARTS = ("tracing", "metrics", "logs", "operation_spans")


def test_the_default_settings_switch_every_part_off() -> None:
    """Spans, metrics, logs and operation spans are all off unless the setting asks."""
    config = telemetry(Settings().opentelemetry)
    assert dict(config) == dict.fromkeys(PARTS, False)


@pytest.mark.parametrize("enabled", [False, True])
def test_fastapi_takes_the_setting_for_every_part(enabled: bool) -> None:
    """The app FastAPI builds from the setting has each part as the setting says."""
    app = FastAPI(telemetry=telemetry(enabled))
    built: dict[str, object] = dict(app._telemetry)
    assert {part: built[part] for part in PARTS} == dict.fromkeys(PARTS, enabled)
