"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from rightsledger.api import schemas as s
from rightsledger.api.deps import ContainerDep
from rightsledger.api.problems import ApiProblemError

router = APIRouter(tags=["health"])


@router.get("/health", response_model=s.Health)
def health() -> s.Health:
    """The process is up."""
    return s.Health(status="ok")


@router.get("/ready", response_model=s.Ready)
def ready(container: ContainerDep) -> s.Ready:
    """The event store is reachable; answers with the log's head position."""
    try:
        position = container.ledger.recorder.max_notification_id() or 0
    except Exception as error:
        raise ApiProblemError(
            503, "Not ready", f"the event store is unreachable: {error}"
        ) from None
    return s.Ready(status="ready", position=position)
