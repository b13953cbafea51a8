"""Duplicate data-rights requests, decided on the store's state across API processes.

Two submissions of the same type for the same customer, sent at the same moment (one through
each of two `rightsledger serve` processes on one store, or both through one), are decided one
after the other by the version check on the customer's stream: exactly one is accepted, the
other answers 409 naming it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.e2e.conftest import customer_body, request_body
from tests.e2e.service import Service, stored_as

pytestmark = pytest.mark.e2e

ROUNDS = 6


def register(http: httpx.Client) -> str:
    created = http.post("/v1/customers", json=customer_body())
    assert created.status_code == 201, created.text
    customer_id: str = created.json()["customer_id"]
    return customer_id


def at_once(clients: list[httpx.Client], body: dict[str, Any]) -> list[httpx.Response]:
    """The same submission through each client, released together."""
    start = threading.Barrier(len(clients))
    answers: list[httpx.Response | None] = [None] * len(clients)

    def send(index: int) -> None:
        start.wait()
        answers[index] = clients[index].post("/v1/requests", json=body)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(answer is not None for answer in answers), "a submission never answered"
    return [answer for answer in answers if answer is not None]


def received(service: Service, customer: str) -> int:
    """Requests the customer's stream records (read from PostgreSQL, not through the API)."""
    events = sql.Identifier(service.schema, "rightsledger_events")
    with psycopg.connect(service.database_url) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE originator_id = %s AND topic ~ %s").format(
                events
            ),
            (uuid.UUID(customer), stored_as("Customer.RequestReceived")),
        ).fetchone()
    assert row is not None
    return int(row[0])


def exactly_one_accepted(answers: list[httpx.Response]) -> str:
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [202, 409], [answer.text for answer in answers]
    accepted = next(a for a in answers if a.status_code == 202).json()["request_id"]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["type"] == "/problems/duplicate-request"
    assert problem["request_id"] == accepted
    assert problem["href"] == f"/v1/requests/{accepted}"
    request_id: str = accepted
    return request_id


def test_two_submissions_at_once_through_two_api_processes_accept_exactly_one(
    start_service: Callable[..., Service],
) -> None:
    """For each of several customers, known to both processes (each has the customer cached),
    the same request sent through both processes at once: one 202, one 409 naming it, and the
    store holds one request of that type for the customer."""
    a = start_service("a")
    b = start_service("b", run_followers=False)
    with a.client() as via_a, b.client() as via_b:
        for _ in range(ROUNDS):
            customer = register(via_a)
            for http, kind in ((via_a, "opt_out"), (via_b, "correction")):
                body = request_body(customer, type=kind)
                if kind == "correction":
                    body["corrections"] = {"identity_contact": {"email": "ada@new.example.org"}}
                warmed = http.post("/v1/requests", json=body)  # both now hold the customer
                assert warmed.status_code == 202, warmed.text
            accepted = exactly_one_accepted(at_once([via_a, via_b], request_body(customer)))
            assert via_b.get(f"/v1/requests/{accepted}").json()["status"] == "open"
            assert received(a, customer) == 3  # the two others and one access request
            again = via_b.post("/v1/requests", json=request_body(customer))
            assert again.status_code == 409, again.text
            assert again.json()["request_id"] == accepted


def test_two_submissions_at_once_through_one_api_process_accept_exactly_one(
    service: Service,
) -> None:
    """Two clients of one process submitting the same request at once (written together by the
    group commit, or one after the other): exactly one accepted."""
    with service.client() as first, service.client() as second:
        for _ in range(ROUNDS):
            customer = register(first)
            exactly_one_accepted(at_once([first, second], request_body(customer, type="deletion")))
            assert received(service, customer) == 1
