"""Idempotency-Key through HTTP: a retry replays the first answer and writes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rightsledger.bootstrap import Container
from rightsledger.storage.idempotency import caller_of, fingerprint
from tests.e2e.conftest import customer_body

pytestmark = pytest.mark.e2e


def head(container: Container) -> int:
    return container.ledger.recorder.max_notification_id() or 0


def test_a_repeat_with_the_same_key_and_body_replays_the_first_answer(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    """Same key, same body: the same status, body and position, and one set of events."""
    headers = {**admin, "Idempotency-Key": "register-ada-1"}
    first = client.post("/v1/customers", json=customer_body(), headers=headers)
    assert first.status_code == 201
    after_first = head(container)
    second = client.post("/v1/customers", json=customer_body(), headers=headers)
    assert second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert head(container) == after_first
    without = client.post("/v1/customers", json=customer_body(), headers=admin)
    assert without.json()["customer_id"] != first.json()["customer_id"]


def test_a_refusal_is_replayed_too(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    """A command refused by a rule is answered the same way on a retry, writing nothing."""
    created = client.post("/v1/customers", json=customer_body(), headers=admin).json()
    headers = {**admin, "Idempotency-Key": "consent-without-evidence"}
    body: dict[str, Any] = {
        "channel": "carrier_pigeon",
        "granted": True,
        "evidence": {"method": "x", "wording_version": "v", "captured_at": "2026-01-01T00:00Z"},
    }
    path = f"/v1/customers/{created['customer_id']}/consents"
    first = client.post(path, json=body, headers=headers)
    assert first.status_code == 422
    before = head(container)
    second = client.post(path, json=body, headers=headers)
    assert (second.status_code, second.json()) == (first.status_code, first.json())
    assert head(container) == before


def test_the_same_key_with_another_body_is_refused(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    """A key belongs to one request: reused for another body, 422 and nothing recorded."""
    headers = {**admin, "Idempotency-Key": "k-1"}
    assert client.post("/v1/customers", json=customer_body(), headers=headers).status_code == 201
    before = head(container)
    other = customer_body(identity={"name": "Grace Hopper", "email": "grace@example.org"})
    reused = client.post("/v1/customers", json=other, headers=headers)
    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["type"] == "/problems/idempotency-key-reused"
    assert head(container) == before


def test_a_repeat_while_the_first_is_running_answers_409(
    client: TestClient, admin: dict[str, str], container: Container
) -> None:
    """While an attempt holds the key, a repeat is told to come back, and nothing runs twice."""
    body = json.dumps(customer_body()).encode()
    caller = caller_of(admin["Authorization"])
    running = container.idempotency.claim(
        caller, "k-running", fingerprint("POST", "/v1/customers", "", body)
    )
    assert running.tag is not None  # the first attempt, still working
    before = head(container)
    repeat = client.post(
        "/v1/customers",
        content=body,
        headers={**admin, "Idempotency-Key": "k-running", "content-type": "application/json"},
    )
    assert repeat.status_code == 409
    assert repeat.json()["type"] == "/problems/idempotency-key-in-use"
    assert int(repeat.headers["retry-after"]) >= 1
    assert head(container) == before


def test_keys_are_scoped_to_the_caller(
    client: TestClient, admin: dict[str, str], headers: Any
) -> None:
    """Two callers using the same key value are two different requests."""
    intake = headers("intake")
    first = client.post(
        "/v1/customers", json=customer_body(), headers={**admin, "Idempotency-Key": "shared"}
    )
    second = client.post(
        "/v1/customers", json=customer_body(), headers={**intake, "Idempotency-Key": "shared"}
    )
    assert first.status_code == second.status_code == 201
    assert first.json()["customer_id"] != second.json()["customer_id"]


def test_an_invalid_key_is_refused(client: TestClient, admin: dict[str, str]) -> None:
    """A key with spaces or over 255 characters is a 422 problem, not a silent pass."""
    for bad in ("has space", "x" * 256):
        response = client.post(
            "/v1/customers", json=customer_body(), headers={**admin, "Idempotency-Key": bad}
        )
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/idempotency-key-invalid"


def test_the_header_is_documented_on_every_command(client: TestClient) -> None:
    """Every POST and PATCH in the OpenAPI document lists the optional Idempotency-Key."""
    document = client.get("/openapi.json").json()
    commands = [
        operation
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in ("post", "patch")
    ]
    assert commands
    for operation in commands:
        names = [p["name"] for p in operation.get("parameters", [])]
        assert "Idempotency-Key" in names, operation["operationId"]


def test_unauthenticated_answers_are_not_kept(client: TestClient, container: Container) -> None:
    """A 401 is not kept as the key's answer: nothing ran, so nothing is replayed."""
    bad = {"Authorization": "Bearer rlk_wrong_key_000000000000", "Idempotency-Key": "k-401"}
    assert client.post("/v1/customers", json=customer_body(), headers=bad).status_code == 401
    again = client.post("/v1/customers", json=customer_body(), headers=bad)
    assert again.status_code == 401
    assert "idempotent-replayed" not in again.headers
    caller = caller_of(bad["Authorization"])
    body = json.dumps(customer_body()).encode()
    claim = container.idempotency.claim(
        caller, "k-401", fingerprint("POST", "/v1/customers", "", body)
    )
    assert claim.tag is not None  # the key is free again
