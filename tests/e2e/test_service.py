"""The service as `make run` starts it: `rightsledger serve` and the processes it starts.

These tests go through real sockets to a `serve` subprocess whose projection worker, request
workers, relay and Kafka broker are processes of their own (tests/e2e/service.py).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import customer_body, ok
from tests.e2e.service import FOLLOWERS, Service, alive, wait_until

pytestmark = pytest.mark.e2e



def register(http: httpx.Client, name: str) -> tuple[str, int]:
    """Register a customer called ``name``; its id and the command's log position."""
    identity = {**customer_body()["identity"], "name": name}
    created = ok(http.post("/v1/customers", json=customer_body(identity=identity)), 201)
    return created["customer_id"], created["position"]


def read_name(http: httpx.Client, customer_id: str, position: int) -> str:
    """The customer's name as the profile view holds it once it has applied ``position``."""
    profile = ok(
        http.get(
            f"/v1/customers/{customer_id}",
            params={"min_position": position},
            headers={"X-Purpose": "account"},
        )
    )
    assert profile["customer_id"] == customer_id
    fields = profile["categories"].get("identity_contact", {}).get("fields", {})
    assert "name" in fields, f"no name in the account view of {customer_id}: {profile}"
    name: str = fields["name"]
    return name


def test_serve_runs_the_api_the_projection_worker_and_the_workers_as_processes(
    service: Service,
) -> None:
    """`serve` alone runs the whole service: a registration is applied to the views by the
    projection-worker process (read back with min_position), and a verified access request is
    fulfilled by the workers process; stopping the service leaves no process behind."""
    serve = service.processes()[0]
    followers = {match: service.child(match) for match in FOLLOWERS}
    service.child("tansu")  # the embedded Kafka broker
    assert all(proc.pid != serve.pid for proc in followers.values())

    with service.client() as http:
        customer_id, position = register(http, "Ada Lovelace")
        assert read_name(http, customer_id, position) == "Ada Lovelace"

        submitted = ok(
            http.post(
                "/v1/requests",
                json={
                    "customer_id": customer_id,
                    "type": "access",
                    "channel": "email",
                    "jurisdiction": "gdpr",
                    "statement": "Please send me a copy of my data.",
                },
            ),
            202,
        )
        request_id = submitted["request_id"]
        assert submitted["status"] == "open"
        ok(
            http.post(
                f"/v1/requests/{request_id}/verify",
                json={"method": "id_document", "reference": "case 17"},
            )
        )

        def status() -> str | None:
            current: str = ok(http.get(f"/v1/requests/{request_id}"))["status"]
            return current if current == "fulfilled" else None

        wait_until(status, 30, f"request {request_id} to be fulfilled by the workers process")
        export = ok(http.get(f"/v1/requests/{request_id}/export", headers={"X-Purpose": "legal"}))
        assert str(customer_id) in str(export)

    listed = service.spawn_cli("projections", "status")
    assert listed.returncode == 0, listed.stderr
    assert "customer_profile" in listed.stdout
    assert "log head" in listed.stdout

    recorded = service.processes()
    assert {p.pid for p in recorded} >= {serve.pid, *(p.pid for p in followers.values())}
    assert service.stop() == []
    assert not [proc for proc in recorded if alive(proc)]
    assert service.killed == [], "processes ignored SIGTERM and had to be killed"


def test_an_api_replica_on_the_same_schema_sees_the_full_services_writes(
    start_service: Callable[..., Service],
) -> None:
    """Two `serve` processes on one schema, one with the followers and one API-only replica,
    both answer, and each reads what was written through the other (min_position)."""
    full = start_service("full")
    replica = start_service("replica", run_followers=False)
    assert replica.port != full.port
    assert replica.pids() == [replica.pid], "an API-only replica starts no other process"

    with full.client() as a, replica.client() as b:
        assert ok(a.get("/ready"))["status"] == "ready"
        assert ok(b.get("/ready"))["status"] == "ready"

        through_b, position = register(b, "Grace Hopper")
        assert read_name(a, through_b, position) == "Grace Hopper"
        through_a, position = register(a, "Edsger Dijkstra")
        assert read_name(b, through_a, position) == "Edsger Dijkstra"

    worker = full.kill("projections run", signal.SIGKILL)
    wait_until(lambda: not alive(worker), 10, "the killed projection worker to exit")


class OrphanedError(AssertionError):
    """Processes that serve started outlived it."""


def test_sigterm_to_serve_alone_stops_every_process_it_started(service: Service) -> None:
    """A supervisor signals only the main process (docker stop, systemd): on SIGTERM serve
    stops its followers and its broker before it exits, and leaves no orphan behind."""
    started = service.processes()
    assert len(started) == len(FOLLOWERS) + 2  # serve, the followers and the broker
    service.send_signal(signal.SIGTERM)
    service.wait_exit(20)
    try:
        # serve waits for its children as it stops; a little slack for the last ones to go
        wait_until(lambda: not [p for p in started if alive(p)], 3, "serve's children to exit")
    except AssertionError:
        left = "\n  ".join(f"{p.pid} {p.command}" for p in started if alive(p))
        raise OrphanedError(f"still running after serve exited:\n  {left}") from None
