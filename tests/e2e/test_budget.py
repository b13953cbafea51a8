"""The connection budget: `make run`'s whole deployment stays within the documented number of
PostgreSQL connections, idle and under a load of commands (docs/architecture.md)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import pytest

from tests.e2e.conftest import EVIDENCE, customer_body
from tests.e2e.service import Service

pytestmark = pytest.mark.e2e

BUDGET = 27
"""The documented most for one API process and the two follower processes."""


def connections(service: Service, name: str) -> int:
    """Connections the service's processes hold now (tagged by libpq's PGAPPNAME)."""
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_make_run_stays_within_its_connection_budget(
    start_service: Callable[..., Service],
) -> None:
    """Idle and while eight clients send commands (with the followers applying them), the API
    and its follower processes together hold at most the documented number of connections."""
    name = "rightsledger-budget"
    service = start_service("budget", env={"PGAPPNAME": name})
    idle = connections(service, name)
    assert 0 < idle <= BUDGET, idle
    with service.client() as http:
        customers = [
            http.post("/v1/customers", json=customer_body()).json()["customer_id"]
            for _ in range(8)
        ]
    peak = [idle]
    stop = threading.Event()
    failures: list[str] = []

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], connections(service, name))

    def client(customer: str) -> None:
        with service.client() as http:
            for n in range(60):
                response = http.post(
                    f"/v1/customers/{customer}/consents",
                    json={"channel": "email", "granted": n % 2 == 0, "evidence": EVIDENCE},
                )
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    sampler = threading.Thread(target=sample)
    sampler.start()
    clients = [threading.Thread(target=client, args=(c,)) for c in customers]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(120)
    stop.set()
    sampler.join()
    print(f"connections: idle {idle}, peak under load {peak[0]}")  # shown with -s
    assert not failures, failures[:3]
    assert peak[0] <= BUDGET, f"{peak[0]} connections under load (idle: {idle})"
