"""Liveness and readiness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter

from rightsledger.api import schemas as s
from rightsledger.api.deps import ContainerDep
from rightsledger.api.offload import OffloadedRoute
from rightsledger.api.problems import ApiProblemError
from rightsledger.bootstrap import Container
from rightsledger.storage.followers import Health, assess

router = APIRouter(tags=["health"], route_class=OffloadedRoute)


@router.get("/health", response_model=s.Health)
def health() -> s.Health:
    """The process is up (liveness only: says nothing of the store or the followers)."""
    return s.Health(status="ok")


def oldest_waiting(container: Container, position: int) -> datetime | None:
    """When the first event after ``position`` was recorded (None when there is none)."""
    ledger = container.ledger
    found = ledger.recorder.select_notifications(start=position, limit=1, inclusive_of_start=False)
    if not found:
        return None
    recorded = ledger.mapper.transcoder.decode(found[0].state).get("timestamp")
    return recorded if isinstance(recorded, datetime) else None


def followers_health(container: Container, head: int) -> Health:
    """Every follower that has reported: alive, not parked, not too far behind."""
    settings = container.settings
    return assess(
        container.board.statuses(),
        head=head,
        oldest_waiting=lambda position: oldest_waiting(container, position),
        now=datetime.now(UTC),
        stale_after=timedelta(seconds=settings.ready_stale_seconds),
        lag_limit=timedelta(seconds=settings.ready_lag_seconds),
    )


@router.get("/ready", response_model=s.Ready)
def ready(container: ContainerDep) -> s.Ready:
    """Ready to serve: the event store is reachable and every follower (projection worker,
    request workers, relay) is alive, not parked, and has no event waiting for it longer
    than `RIGHTSLEDGER_READY_LAG_SECONDS`. Otherwise 503 naming what is wrong."""
    try:
        position = container.ledger.recorder.max_notification_id() or 0
        state = followers_health(container, position)
    except Exception as error:
        raise ApiProblemError(
            503, "Not ready", f"the event store is unreachable: {error}", slug="not-ready"
        ) from None
    if not state.ok:
        raise ApiProblemError(
            503,
            "Not ready",
            "; ".join(state.problems),
            slug="not-ready",
            headers={"Retry-After": "5"},
        )
    return s.Ready(
        status="ready",
        position=position,
        followers={status.name: status.position for status in state.statuses},
    )
