"""Followers killed in the middle of a load: `serve` restarts them, the views and the events
topic catch up, and nothing is lost or applied twice."""

from __future__ import annotations

import json
import signal
import threading
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from rightsledger.workers.cloudevents import event_id
from tests.e2e.conftest import customer_body
from tests.e2e.service import Service, wait_until
from tests.e2e.test_supervision import restarted
from tests.integration.scans import consume_all

pytestmark = pytest.mark.e2e


def log_ids(service: Service) -> tuple[int, set[str]]:
    """The log's head and the CloudEvents id of every event in it (read from PostgreSQL)."""
    table = sql.Identifier(service.schema, "rightsledger_events")
    with psycopg.connect(service.database_url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT notification_id, originator_id, originator_version FROM {}").format(
                table
            )
        ).fetchall()
    return max(r[0] for r in rows), {event_id(uuid.UUID(str(r[1])), r[2]) for r in rows}


def trail_rows(service: Service) -> int:
    """Rows of the audit trail view (one per event applied)."""
    table = sql.Identifier(service.schema, "audit_trail")
    with psycopg.connect(service.database_url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    assert row is not None
    return int(row[0])


def test_killed_followers_are_restarted_and_catch_up_without_loss_or_duplicates(
    service: Service,
) -> None:
    """While clients register customers, SIGKILL the projection worker, then the workers
    process (request workers and relay): both come back, every event reaches the audit trail
    exactly once and the events topic at least once (every id of the log is there)."""
    stop = threading.Event()
    failures: list[str] = []

    def load() -> None:
        with service.client() as http:
            while not stop.is_set():
                response = http.post("/v1/customers", json=customer_body())
                if response.status_code != 201:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    clients = [threading.Thread(target=load) for _ in range(3)]
    for thread in clients:
        thread.start()
    try:
        for match in ("projections run", "workers run"):
            old = service.child(match)
            service.kill(match, signal.SIGKILL)
            wait_until(restarted(service, match, old), 60, f"serve to restart {match}")
    finally:
        stop.set()
        for thread in clients:
            thread.join(60)
    assert not failures, failures[:3]
    head, ids = log_ids(service)

    def caught_up() -> dict[str, Any] | None:
        with service.client() as http:
            response = http.get("/ready")
        body: dict[str, Any] = response.json()
        followers = body.get("followers", {})
        done = response.status_code == 200 and all(
            followers.get(name, 0) >= head for name in ("projections", "relay")
        )
        return body if done else None

    wait_until(caught_up, 90, "the projection worker and the relay to reach the head")
    assert trail_rows(service) == len(ids)  # every event applied once: none lost, none twice
    assert service.kafka_bootstrap is not None
    records = consume_all(service.kafka_bootstrap, service.events_topic, len(ids), timeout=60)
    consumed = {json.loads(record.value)["id"] for record in records}
    assert ids <= consumed, f"{len(ids - consumed)} events never reached the topic"
