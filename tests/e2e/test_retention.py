"""Retention schedules on the multi-process service: the request-workers process purges the
activity a schedule (from the environment) says is past, and the API stops showing it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.conftest import customer_body, ok
from tests.e2e.service import Service, wait_until

pytestmark = pytest.mark.e2e



def test_the_workers_process_purges_activity_past_its_schedule(
    start_service: Callable[..., Service],
) -> None:
    """With troubleshooting activity kept 0 days after its month, last month's entry is
    purged by the sweep of the workers process (``ActivityPurged`` in the customer's trail)
    and disappears from the profile; this month's entry and security activity stay."""
    table = {"activity": {"troubleshooting": {"keep": {"days": 0}, "basis": "test"}}}
    service = start_service(
        "service",
        env={"RIGHTSLEDGER_RETENTION": json.dumps(table), "RIGHTSLEDGER_SWEEP_SECONDS": "0.2"},
    )
    now = datetime.now(UTC)
    last_month = now.replace(day=1) - timedelta(days=1)
    with service.client() as http, service.client(purpose="legal") as legal:
        customer = ok(http.post("/v1/customers", json=customer_body()), 201)["customer_id"]

        def log(reason: str, at: datetime, detail: str) -> str:
            body = {
                "kind": "network",
                "reason": reason,
                "detail": detail,
                "occurred_at": at.isoformat(),
            }
            entry: str = ok(http.post(f"/v1/customers/{customer}/activity", json=body), 201)["id"]
            return entry

        log("troubleshooting", last_month, "line dropped last month")
        log("troubleshooting", now, "line dropped this month")
        log("security", last_month, "password reset last month")

        def details() -> list[str] | None:
            answer = legal.get(f"/v1/customers/{customer}")
            if answer.status_code == 404:  # the profile view has not caught up yet
                return None
            profile = ok(answer)
            shown = [e["detail"] for e in profile["activity"]]
            # the profile may lag the commands: wait for the security entry to be shown and
            # last month's troubleshooting entry to be gone
            done = "password reset last month" in shown and "line dropped last month" not in shown
            return shown if done else None

        kept = wait_until(details, 30, "last month's troubleshooting activity to be purged")
        assert sorted(kept) == ["line dropped this month", "password reset last month"]
        trail = ok(http.get(f"/v1/audit/customers/{customer}/trail"))["items"]
        purged = [t for t in trail if t["event_type"] == "Customer.ActivityPurged"]
        assert len(purged) == 1
        assert purged[0]["actor"] == "worker:requests"
