"""Many processes, one truth: the multi-process service decides on the store's current state.

Every test here runs `rightsledger serve` as `make run` does (the API, and the projection
worker and request workers with the relay as processes of their own; tests/e2e/service.py),
and sometimes a second API replica on the same store, and talks to them over HTTP.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.e2e.conftest import customer_body, ok
from tests.e2e.service import Service, stored_as, wait_until

pytestmark = pytest.mark.e2e



def register(http: httpx.Client, name: str = "Ada Lovelace") -> str:
    identity = {**customer_body()["identity"], "name": name}
    created = ok(http.post("/v1/customers", json=customer_body(identity=identity)), 201)
    customer_id: str = created["customer_id"]
    return customer_id


def partner(http: httpx.Client, valid_until: date) -> str:
    created = ok(
        http.post(
            "/v1/partners",
            json={
                "name": "Acme Support",
                "kind": "support_provider",
                "contract_reference": "C-1",
                "confidentiality_agreement": "NDA-1",
                "contract_valid_until": valid_until.isoformat(),
            },
        ),
        201,
    )
    partner_id: str = created["partner_id"]
    return partner_id


def disclosure(partner_id: str) -> dict[str, Any]:
    return {
        "partner_id": partner_id,
        "basis": "service_provider",
        "categories": ["identity_contact"],
        "purpose": "support",
        "reference": "ticket 42",
    }


def events_of(service: Service, event_type: str, aggregate_id: str) -> int:
    """How many events of that type the log holds for the aggregate (read from PostgreSQL,
    not through the API, so no API process loads anything)."""
    table = sql.Identifier(service.schema, "rightsledger_events")
    with psycopg.connect(service.database_url) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE originator_id = %s AND topic ~ %s").format(
                table
            ),
            (uuid.UUID(aggregate_id), stored_as(event_type)),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_partner_acknowledges_as_soon_as_it_is_notified(service: Service) -> None:
    """The acknowledgement is sent the moment `PartnersNotified` is in the log, with no read of
    the request in between: the API process decides on the request as the workers process
    left it (200), and with the last acknowledgement and the erasure carried out (whichever
    comes last) the deletion is fulfilled."""
    with service.client() as http:
        customer = register(http)
        acme = partner(http, date.today() + timedelta(days=365))
        ok(http.post(f"/v1/customers/{customer}/disclosures", json=disclosure(acme)), 201)
        request = ok(
            http.post(
                "/v1/requests",
                json={
                    "customer_id": customer,
                    "type": "deletion",
                    "channel": "email",
                    "jurisdiction": "gdpr",
                    "statement": "Please delete my data.",
                },
            ),
            202,
        )["request_id"]
        ok(
            http.post(
                f"/v1/requests/{request}/verify",
                json={"method": "id_document", "reference": "case 17"},
            )
        )
        wait_until(
            lambda: events_of(service, "PartnersNotified", request) == 1,
            30,
            "the workers process to notify the partner",
        )
        acknowledged = http.post(
            f"/v1/partners/{acme}/acknowledgements", json={"request_id": request}
        )
        assert acknowledged.status_code == 200, acknowledged.text
        # the erasure is recorded once the profile view has applied it: maybe after the ack
        wait_until(
            lambda: http.get(f"/v1/requests/{request}").json()["status"] == "fulfilled",
            30,
            "the deletion to be fulfilled",
        )


def test_a_contract_renewed_through_one_replica_is_honoured_by_another_at_once(
    start_service: Callable[..., Service],
) -> None:
    """Replica B has the partner cached with an expired contract; renewed through A, the next
    disclosure through B is accepted."""
    a = start_service("a")
    b = start_service("b", run_followers=False)
    with a.client() as via_a, b.client() as via_b:
        customer = register(via_a)
        acme = partner(via_a, date.today() - timedelta(days=1))
        refused = via_b.post(f"/v1/customers/{customer}/disclosures", json=disclosure(acme))
        assert refused.status_code == 422, refused.text
        ok(
            via_a.post(
                f"/v1/partners/{acme}/contract",
                json={
                    "contract_reference": "C-2",
                    "confidentiality_agreement": "NDA-2",
                    "valid_until": (date.today() + timedelta(days=365)).isoformat(),
                },
            )
        )
        ok(via_b.post(f"/v1/customers/{customer}/disclosures", json=disclosure(acme)), 201)


def test_a_key_revoked_by_the_cli_is_refused_by_every_api_process_within_a_second(
    start_service: Callable[..., Service],
) -> None:
    """Both API processes had the key cached; after `keys revoke` returns, both refuse it
    within one second."""
    a = start_service("a")
    b = start_service("b", run_followers=False)
    created = a.spawn_cli("keys", "create", "--role", "support", "--name", "desk")
    assert created.returncode == 0, created.stderr
    lines = dict(line.split(":", 1) for line in created.stdout.splitlines() if ":" in line)
    key_id, token = lines["key id"].strip(), lines["key"].strip()
    clients = [a.client(key=token), b.client(key=token)]

    def refused(http: httpx.Client) -> bool:
        return http.get("/v1/requests").status_code == 401

    try:
        for http in clients:
            assert http.get("/v1/requests").status_code != 401  # accepted, and now cached
        revoked = a.spawn_cli("keys", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        returned = time.monotonic()
        for http in clients:
            wait_until(partial(refused, http), 1.0, "the revoked key to be refused")
        assert time.monotonic() - returned < 1.0 * len(clients)
    finally:
        for http in clients:
            http.close()


def test_no_route_shows_erased_values_once_the_deletion_reads_fulfilled(service: Service) -> None:
    """From the moment the deletion request reads `fulfilled`, neither the profile, nor the
    state as of a moment before the deletion, nor an earlier access export show the values."""
    with service.client() as http, service.client(purpose="legal") as legal:
        customer = register(http, "Grace Hopper")
        before = datetime.now(UTC)
        access = ok(
            http.post(
                "/v1/requests",
                json={
                    "customer_id": customer,
                    "type": "access",
                    "channel": "email",
                    "jurisdiction": "gdpr",
                    "statement": "Send me my data.",
                },
            ),
            202,
        )["request_id"]
        verification = {"method": "id_document", "reference": "a"}
        ok(http.post(f"/v1/requests/{access}/verify", json=verification))
        wait_until(
            lambda: http.get(f"/v1/requests/{access}").json()["status"] == "fulfilled",
            30,
            "the access request to be fulfilled",
        )
        state = ok(
            legal.get(f"/v1/audit/customers/{customer}/state", params={"as_of": before.isoformat()})
        )
        assert "Grace Hopper" in str(state)  # the API process has read (and cached) the values
        deletion = ok(
            http.post(
                "/v1/requests",
                json={
                    "customer_id": customer,
                    "type": "deletion",
                    "channel": "email",
                    "jurisdiction": "gdpr",
                    "statement": "Delete my data.",
                },
            ),
            202,
        )["request_id"]
        ok(http.post(f"/v1/requests/{deletion}/verify", json=verification))
        wait_until(
            lambda: http.get(f"/v1/requests/{deletion}").json()["status"] == "fulfilled",
            30,
            "the deletion to be fulfilled",
        )
        later = ok(
            legal.get(f"/v1/audit/customers/{customer}/state", params={"as_of": before.isoformat()})
        )
        profile = http.get(f"/v1/customers/{customer}", headers={"X-Purpose": "account"})
        export = legal.get(f"/v1/requests/{access}/export")
        for answer in (str(later), profile.text, export.text):
            assert "Grace Hopper" not in answer
            assert "ada@example.org" not in answer


def terminate_connections(service: Service) -> int:
    """Terminate every connection of the service's processes (all but this one)."""
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchall()
    return len(rows)


def test_commands_with_keys_are_stored_exactly_once_while_connections_are_terminated(
    service: Service,
) -> None:
    """Four clients record invoices with Idempotency-Keys, retrying each (same key) until it
    is answered, while every connection of the service is terminated six times: each
    acknowledged invoice is stored exactly once, and nothing is stored that was not
    acknowledged."""
    with service.client() as http:
        customer = register(http)
    answered: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    rounds_done = threading.Event()
    failures: list[str] = []
    issued: dict[int, int] = {}

    def client(index: int) -> None:
        # at least 25 invoices each, and more until the six terminations are done, so the
        # terminations always fall under load however fast the service answers
        with service.client(timeout=60) as http:
            n = 0
            while n < 25 or not (rounds_done.is_set() or stop.is_set()):
                key = f"invoice-{index}-{n}"
                n += 1
                with lock:
                    issued[index] = n
                body = {
                    "amount": f"{index * 10_000 + n}.00",
                    "currency": "EUR",
                    "status": "issued",
                    "issued_at": "2026-11-01T10:00:00Z",
                }
                deadline = time.monotonic() + 90
                last = "no answer"
                while True:
                    try:
                        response = http.post(
                            f"/v1/customers/{customer}/invoices",
                            json=body,
                            headers={"Idempotency-Key": key},
                        )
                    except httpx.TransportError as error:
                        response = None
                        last = repr(error)
                    if response is not None and response.status_code == 201:
                        with lock:
                            answered[key] = response.json()["id"]
                        break
                    if response is not None and response.status_code not in (409, 500, 503):
                        failures.append(f"{key}: {response.status_code} {response.text}")
                        return
                    if response is not None:
                        last = f"{response.status_code} {response.text[:200]}"
                    if time.monotonic() > deadline:
                        failures.append(f"{key}: never answered; last: {last}")
                        return
                    time.sleep(0.05)

    terminated: list[int] = []

    def terminator() -> None:
        for _ in range(6):
            if stop.wait(1.0):
                return
            terminated.append(terminate_connections(service))
        rounds_done.set()

    killer = threading.Thread(target=terminator)
    killer.start()
    workers = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    killer.join(60)
    for worker in workers:
        worker.join(300)
    stop.set()
    killer.join()
    assert not failures, failures
    assert len(terminated) == 6, terminated
    assert all(terminated), terminated
    assert len(answered) == sum(issued.values()) >= 100
    table = sql.Identifier(service.schema, "rightsledger_events")
    with psycopg.connect(service.database_url) as conn:
        stored = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM {} WHERE originator_id = %s AND topic ~ %s"
            ).format(table),
            (uuid.UUID(customer), stored_as("InvoiceRecorded")),
        ).fetchone()
    assert stored is not None
    assert stored[0] == len(answered)
    with service.client(purpose="legal") as http:  # replayed from the event store
        state = ok(
            http.get(
                f"/v1/audit/customers/{customer}/state",
                params={"as_of": datetime.now(UTC).isoformat()},
            )
        )["state"]
    assert sorted(i["invoice_id"] for i in state["invoices"]) == sorted(answered.values())
