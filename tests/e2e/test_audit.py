"""Auditors through the API: the ordered log, trails, registers and state as of a moment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from rightsledger.security.keys import Role
from tests.e2e.conftest import EVIDENCE, customer_body

Headers = Callable[[Role | str], dict[str, str]]


def post(client: TestClient, path: str, body: dict[str, Any], auth: dict[str, str]) -> Any:
    response = client.post(path, json=body, headers=auth)
    assert response.status_code in (200, 201, 202), response.text
    return response.json()


def test_auditors_page_through_the_whole_log(client: TestClient, headers: Headers) -> None:
    """The log comes back in order, page by page (cursor), with types, actors and payloads."""
    admin = headers(Role.ADMIN)
    customer = post(client, "/v1/customers", customer_body(), admin)["customer_id"]
    for granted in (True, False, True):
        post(
            client,
            f"/v1/customers/{customer}/consents",
            {"channel": "post", "granted": granted, "evidence": EVIDENCE},
            admin,
        )
    auditor = headers(Role.AUDITOR)
    first = client.get("/v1/audit/events?limit=2", headers=auditor).json()
    assert [e["position"] for e in first["items"]] == [1, 2]
    assert first["items"][0]["type"] == "Customer.Registered"
    registered = first["items"][0]["payload"]
    assert registered["data"]["identity_contact"] == "[personal]"
    assert "Ada" not in str(registered)
    assert first["items"][1]["payload"]["channel"] == "post"
    assert first["items"][1]["actor"] == "admin:seeded admin"
    assert first["next_cursor"] is not None
    rest = client.get(f"/v1/audit/events?cursor={first['next_cursor']}", headers=auditor).json()
    assert [e["position"] for e in rest["items"]] == [3, 4]
    assert rest["next_cursor"] is None
    assert rest["head"] == rest["position"] == 4
    assert client.get("/v1/audit/events", headers=headers(Role.SUPPORT)).status_code == 403


def test_state_as_of_a_moment_is_replayed_from_the_events(
    client: TestClient, headers: Headers
) -> None:
    """Before registration there is nothing; between changes, the state then."""
    admin = headers(Role.ADMIN)
    before = datetime.now(UTC).isoformat()
    customer = post(client, "/v1/customers", customer_body(), admin)["customer_id"]
    post(
        client,
        f"/v1/customers/{customer}/consents",
        {"channel": "sms", "granted": True, "evidence": EVIDENCE},
        admin,
    )
    between = datetime.now(UTC).isoformat()
    post(
        client,
        f"/v1/customers/{customer}/consents",
        {"channel": "sms", "granted": False, "evidence": EVIDENCE},
        admin,
    )
    auditor = {**headers(Role.AUDITOR), "X-Purpose": "legal"}
    url = f"/v1/audit/customers/{customer}/state"
    empty = client.get(url, params={"as_of": before}, headers=auditor).json()
    assert empty["registered"] is False
    assert empty["state"] is None
    then = client.get(url, params={"as_of": between}, headers=auditor).json()
    assert then["state"]["consents"][0]["granted"] is True
    assert "marketing" in then["state"]["categories"]["identity_contact"]["purposes"]
    now = client.get(url, params={"as_of": datetime.now(UTC).isoformat()}, headers=auditor)
    assert now.json()["state"]["consents"][0]["granted"] is False
    naive = client.get(url, params={"as_of": "2026-01-01T00:00:00"}, headers=auditor)
    assert naive.status_code == 422


def test_trail_and_disclosure_registers(client: TestClient, headers: Headers) -> None:
    """The customer's trail and both sides of the disclosures register, read-your-writes;
    the share is in the customer's state replayed as of now."""
    admin = headers(Role.ADMIN)
    customer = post(client, "/v1/customers", customer_body(), admin)["customer_id"]
    police = post(client, "/v1/partners", {"name": "Police", "kind": "law_enforcement"}, admin)[
        "partner_id"
    ]
    shared = post(
        client,
        f"/v1/customers/{customer}/disclosures",
        {
            "partner_id": police,
            "basis": "legal_obligation",
            "categories": ["identity_contact"],
            "purpose": "legal",
            "reference": "warrant 2026/117",
        },
        admin,
    )
    auditor = headers(Role.AUDITOR)
    at = shared["position"]
    register = client.get(f"/v1/partners/{police}/disclosures?min_position={at}", headers=auditor)
    assert register.status_code == 200
    assert int(register.headers["x-position"]) >= at
    (item,) = register.json()["items"]
    assert item["reference"] == "warrant 2026/117"
    assert item["partner_name"] == "Police"
    mine = client.get(f"/v1/customers/{customer}/disclosures", headers=auditor).json()
    assert [d["disclosure_id"] for d in mine["items"]] == [item["disclosure_id"]]
    trail = client.get(
        f"/v1/audit/customers/{customer}/trail?min_position={at}", headers=auditor
    ).json()
    assert [row["event_type"] for row in trail["items"]] == [
        "Customer.Registered",
        "Customer.DataDisclosed",
    ]
    assert trail["items"][1]["actor"] == "admin:seeded admin"
    assert trail["items"][1]["purpose"] == "legal"
    state = client.get(
        f"/v1/audit/customers/{customer}/state",
        params={"as_of": datetime.now(UTC).isoformat()},
        headers={**auditor, "X-Purpose": "legal"},
    ).json()["state"]
    (replayed,) = state["disclosures"]
    assert replayed["disclosure_id"] == item["disclosure_id"]
    assert replayed["partner_id"] == police
    assert replayed["categories"] == ["identity_contact"]
    assert replayed["reference"] == "warrant 2026/117"


def test_a_position_not_reached_answers_503_with_retry_after(
    client: TestClient, admin: dict[str, str], container: Any
) -> None:
    """Read-your-writes is bounded: a position the view cannot reach in time is a 503."""
    beyond = client.get("/v1/requests?min_position=999999", headers=admin)
    assert beyond.status_code == 422
    assert beyond.json()["type"] == "/problems/position-beyond-head"
    container.stop.set()  # the projection worker stops: the view can no longer catch up
    for thread in container.threads:
        thread.join(5)
    customer_body_ = customer_body()
    made = client.post("/v1/customers", json=customer_body_, headers=admin).json()
    response = client.get(f"/v1/requests?min_position={made['position']}", headers=admin)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("application/problem+json")
    fine = client.get("/v1/requests", headers=admin)
    assert fine.status_code == 200
    assert "x-position" in fine.headers


def test_auditors_verify_the_chain_through_the_api(client: TestClient, headers: Headers) -> None:
    """POST /v1/audit/verify walks the whole log; other roles may not."""
    admin = headers(Role.ADMIN)
    post(client, "/v1/customers", customer_body(), admin)
    response = client.post("/v1/audit/verify", headers=headers(Role.AUDITOR))
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["checked"] == 1
    assert body["first_break"] is None
    assert client.post("/v1/audit/verify", headers=headers(Role.SUPPORT)).status_code == 403
