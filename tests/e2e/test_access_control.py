"""Who may do what: the route-by-role matrix, and purpose-bound reads of personal data."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from rightsledger.api.deps import RoleGate
from rightsledger.api.routers import audit, customers, health, partners, requests
from rightsledger.security.keys import Role
from tests.e2e.conftest import EVIDENCE, customer_body

Headers = Callable[[Role | str], dict[str, str]]

PUBLIC = {("GET", "/health"), ("GET", "/ready")}
MATRIX: dict[tuple[str, str], set[str]] = {
    ("POST", "/v1/customers"): {"intake"},
    ("GET", "/v1/customers"): {"billing", "intake", "marketing", "privacy_officer", "support"},
    ("GET", "/v1/customers/{customer_id}"): {
        "billing",
        "intake",
        "marketing",
        "privacy_officer",
        "support",
    },
    ("PATCH", "/v1/customers/{customer_id}"): {"privacy_officer", "support"},
    ("POST", "/v1/customers/{customer_id}/consents"): {
        "intake",
        "marketing",
        "privacy_officer",
        "support",
    },
    ("GET", "/v1/customers/{customer_id}/consents"): {
        "auditor",
        "marketing",
        "privacy_officer",
        "support",
    },
    ("GET", "/v1/customers/{customer_id}/disclosures"): {"auditor", "privacy_officer"},
    ("POST", "/v1/customers/{customer_id}/invoices"): {"billing"},
    ("POST", "/v1/customers/{customer_id}/activity"): {"support"},
    ("POST", "/v1/customers/{customer_id}/disclosures"): {"billing", "privacy_officer", "support"},
    ("POST", "/v1/partners"): {"privacy_officer"},
    ("GET", "/v1/partners"): {"auditor", "billing", "privacy_officer", "support"},
    ("GET", "/v1/partners/{partner_id}/notifications"): {"partner", "privacy_officer"},
    ("GET", "/v1/partners/{partner_id}"): {"auditor", "billing", "privacy_officer", "support"},
    ("GET", "/v1/partners/{partner_id}/disclosures"): {"auditor", "privacy_officer"},
    ("POST", "/v1/partners/{partner_id}/acknowledgements"): {"partner", "privacy_officer"},
    ("POST", "/v1/partners/{partner_id}/contract"): {"privacy_officer"},
    ("POST", "/v1/requests"): {"intake", "privacy_officer"},
    ("GET", "/v1/requests"): {"auditor", "intake", "privacy_officer"},
    ("GET", "/v1/requests/summary"): {"auditor", "intake", "privacy_officer"},
    ("GET", "/v1/requests/{request_id}"): {"auditor", "intake", "privacy_officer"},
    ("POST", "/v1/requests/{request_id}/verify"): {"privacy_officer"},
    ("POST", "/v1/requests/{request_id}/extend"): {"privacy_officer"},
    ("POST", "/v1/requests/{request_id}/deny"): {"privacy_officer"},
    ("POST", "/v1/requests/{request_id}/revoke"): {"intake", "privacy_officer"},
    ("GET", "/v1/requests/{request_id}/export"): {"privacy_officer"},
    ("GET", "/v1/requests/{request_id}/receipt"): {"auditor", "intake", "privacy_officer"},
    ("GET", "/v1/audit/events"): {"auditor", "privacy_officer"},
    ("GET", "/v1/audit/customers/{customer_id}/state"): {"auditor", "privacy_officer"},
    ("GET", "/v1/audit/customers/{customer_id}/trail"): {"auditor", "privacy_officer"},
    ("GET", "/v1/audit/trail"): {"auditor", "privacy_officer"},
    ("POST", "/v1/audit/verify"): {"auditor", "privacy_officer"},
}


def routes() -> dict[tuple[str, str], set[str] | None]:
    """Every route of the API with the roles its gate admits (None: no gate)."""

    def gates(dependant: Any) -> list[RoleGate]:
        found: list[RoleGate] = []
        for dependency in dependant.dependencies:
            if isinstance(dependency.call, RoleGate):
                found.append(dependency.call)
            found += gates(dependency)
        return found

    out: dict[tuple[str, str], set[str] | None] = {}
    for module in (customers, partners, requests, audit, health):
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            found = gates(route.dependant)
            assert len(found) <= 1, f"{route.path} has more than one role gate"
            assert route.methods is not None, f"{route.path} answers no method"
            for method in route.methods:
                out[(method, route.path)] = (
                    {r.value for r in found[0].roles} - {"admin"} if found else None
                )
    return out


def test_every_route_has_an_explicit_rule() -> None:
    """No route without a role gate except health and readiness; the table matches the code."""
    actual = routes()
    assert {k for k, v in actual.items() if v is None} == PUBLIC
    assert {k: v for k, v in actual.items() if v is not None} == MATRIX


@pytest.mark.parametrize("route", sorted(MATRIX))
def test_route_by_role(client: TestClient, headers: Headers, route: tuple[str, str]) -> None:
    """Each role gets through exactly the routes the matrix gives it; the rest get 403."""
    method, path = route
    url = path
    for name in ("customer_id", "partner_id", "request_id"):
        url = url.replace("{" + name + "}", str(uuid.uuid4()))
    assert client.request(method, url, json={}).status_code == 401
    for role in Role:
        auth = headers(role)
        purposes = {"partner": "legal", "marketing": "marketing", "billing": "billing"}
        auth = {**auth, "X-Purpose": purposes.get(role.value, "legal")}
        response = client.request(method, url, headers=auth, json={})
        body = response.json() if response.content else {}
        refused = response.status_code == 403 and body.get("type") == "/problems/forbidden"
        allowed = role is Role.ADMIN or role.value in MATRIX[route]
        assert refused is not allowed, (
            f"{role.value} {method} {path}: {response.status_code} {body}"
        )
        assert response.status_code < 500


def test_reads_show_only_what_the_purpose_needs(client: TestClient, headers: Headers) -> None:
    """Billing sees billing data; support sees support data; marketing sees contact data only
    with consent on the channel asked for; every read and refusal lands in the trail."""
    admin = headers(Role.ADMIN)
    body = customer_body()
    customer = client.post("/v1/customers", json=customer_body(), headers=admin).json()[
        "customer_id"
    ]
    consent = client.post(
        f"/v1/customers/{customer}/consents",
        json={"channel": "email", "granted": True, "evidence": EVIDENCE},
        headers=admin,
    ).json()
    at = consent["position"]
    url = f"/v1/customers/{customer}?min_position={at}"

    def read(role: Role, purpose: str | None, extra: str = "") -> Any:
        auth = headers(role)
        if purpose is not None:
            auth = {**auth, "X-Purpose": purpose}
        return client.get(url + extra, headers=auth)

    billing = read(Role.BILLING, "billing").json()
    assert set(billing["categories"]) == {"identity_contact", "payment_method"}
    support = read(Role.SUPPORT, "support").json()
    assert set(support["categories"]) == {"identity_contact", "account_service"}
    assert "payment_method" not in support["categories"]
    no_channel = read(Role.MARKETING, "marketing").json()
    assert no_channel["categories"] == {}
    wrong_channel = read(Role.MARKETING, "marketing", "&channel=sms").json()
    assert wrong_channel["categories"] == {}
    email = read(Role.MARKETING, "marketing", "&channel=email").json()
    assert set(email["categories"]) == {"identity_contact"}
    assert email["categories"]["identity_contact"]["fields"]["email"] == body["identity"]["email"]
    refused = read(Role.SUPPORT, "billing")
    assert refused.status_code == 403
    assert refused.json()["type"] == "/problems/purpose-not-allowed"
    assert read(Role.SUPPORT, None).status_code == 422
    assert read(Role.SUPPORT, "curiosity").status_code == 422
    head = client.get("/ready").json()["position"]
    trail = client.get(
        f"/v1/audit/customers/{customer}/trail?min_position={head}", headers=admin
    ).json()["items"]
    reads = [row for row in trail if row["event_type"] == "Customer.DataAccessed"]
    refusals = [row for row in trail if row["event_type"] == "Customer.AccessRefused"]
    assert len(reads) == 5
    assert len(refusals) == 1
    assert reads[0]["actor"] == "billing:test-billing"
    assert "for billing" in reads[0]["summary"]
    assert "support" in refusals[0]["summary"]


def test_failed_authentications_are_recorded_and_limited(
    client: TestClient, headers: Headers, container: Any
) -> None:
    """After ten failures in a minute the client is refused with 429, even with a good key."""
    admin = headers(Role.ADMIN)
    for _ in range(10):
        assert (
            client.get("/v1/requests", headers={"Authorization": "Bearer rlk_wrong"}).status_code
            == 401
        )
    limited = client.get("/v1/requests", headers=admin)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["content-type"].startswith("application/problem+json")
    import psycopg
    from psycopg import sql

    with psycopg.connect(container.database.url) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(container.settings.database_schema, "auth_failures")
            )
        ).fetchone()
    assert row is not None
    assert row[0] == 10
