"""The HTTP API end to end, on real PostgreSQL: commands, roles and problem responses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from rightsledger.security.keys import Role
from tests.e2e.conftest import EVIDENCE, customer_body

Headers = Callable[[Role | str], dict[str, str]]


def head(client: TestClient) -> int:
    response = client.get("/ready")
    assert response.status_code == 200
    return int(response.json()["position"])


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


def new_customer(client: TestClient, admin: dict[str, str], **overrides: Any) -> str:
    response = client.post("/v1/customers", json=customer_body(**overrides), headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["customer_id"])


def wait_for_queue(client: TestClient, admin: dict[str, str], position: int) -> dict[str, Any]:
    response = client.get(f"/v1/requests?min_position={position}", headers=admin)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def test_health_ready_and_openapi(client: TestClient) -> None:
    """Liveness needs nothing; readiness reports the store's head; the schema is published."""
    assert client.get("/health").json() == {"status": "ok"}
    assert head(client) >= 0
    spec = client.get("/openapi.json").json()
    for path in ("/v1/customers", "/v1/requests/{request_id}/verify", "/v1/partners/{partner_id}"):
        assert path in spec["paths"]


def test_register_read_and_correct_a_customer(client: TestClient, admin: dict[str, str]) -> None:
    """Registration returns the id and position; a PATCH is recorded as a correction."""
    response = client.post("/v1/customers", json=customer_body(), headers=admin)
    assert response.status_code == 201
    created = response.json()
    assert created["position"] >= 1
    customer_id = created["customer_id"]
    view = client.get(
        f"/v1/customers/{customer_id}?min_position={created['position']}",
        headers={**admin, "X-Purpose": "billing"},
    ).json()
    assert view["policy_version"] == "2026-01"
    assert view["categories"]["payment_method"]["fields"] == {
        "processor": "Acme Payments",
        "token": "tok_abc123",
    }
    assert view["categories"]["identity_contact"]["purposes"] == [
        "account",
        "billing",
        "support",
        "legal",
    ]
    patched = client.patch(
        f"/v1/customers/{customer_id}",
        json={"identity_contact": {"email": "ada@new.example.org"}},
        headers=admin,
    )
    assert patched.status_code == 200
    assert patched.json()["position"] > created["position"]
    response = client.get(
        f"/v1/customers/{customer_id}?min_position={patched.json()['position']}",
        headers={**admin, "X-Purpose": "account"},
    )
    assert int(response.headers["x-position"]) >= patched.json()["position"]
    view = response.json()
    assert view["categories"]["identity_contact"]["fields"]["email"] == "ada@new.example.org"
    assert view["version"] == 2  # registration and correction; reads have streams of their own


def test_consents_current_and_history(client: TestClient, admin: dict[str, str]) -> None:
    """Grant then withdraw: the current state says withdrawn, the history keeps both."""
    customer_id = new_customer(client, admin)
    url = f"/v1/customers/{customer_id}/consents"
    grant = {"purpose": "marketing", "channel": "email", "granted": True, "evidence": EVIDENCE}
    granted = client.post(url, json=grant, headers=admin)
    assert granted.status_code == 200
    view = client.get(
        f"/v1/customers/{customer_id}?min_position={granted.json()['position']}",
        headers={**admin, "X-Purpose": "account"},
    ).json()
    assert "marketing" in view["categories"]["identity_contact"]["purposes"]
    withdrawn = client.post(url, json={**grant, "granted": False}, headers=admin)
    assert withdrawn.status_code == 200
    consents = client.get(
        f"{url}?min_position={withdrawn.json()['position']}", headers=admin
    ).json()
    assert [c["granted"] for c in consents["current"]] == [False]
    assert [h["granted"] for h in consents["history"]] == [True, False]
    assert consents["history"][0]["evidence"]["wording_version"] == "mkt-v3"
    withdrawn_again = client.post(url, json={**grant, "granted": False}, headers=admin)
    assert_problem(withdrawn_again, 409)


def test_consent_is_only_for_marketing(client: TestClient, admin: dict[str, str]) -> None:
    """The consent route records marketing consent only; other purposes are refused."""
    customer_id = new_customer(client, admin)
    body = {"purpose": "billing", "channel": "email", "granted": True, "evidence": EVIDENCE}
    assert_problem(
        client.post(f"/v1/customers/{customer_id}/consents", json=body, headers=admin), 422
    )


def test_invoices_and_activity(client: TestClient, admin: dict[str, str]) -> None:
    """Billing records and activity entries are recorded and shown with the customer."""
    customer_id = new_customer(client, admin)
    invoice = client.post(
        f"/v1/customers/{customer_id}/invoices",
        json={"amount": "49.90", "currency": "EUR", "issued_at": "2026-11-01T00:00:00Z"},
        headers=admin,
    )
    assert invoice.status_code == 201
    activity = client.post(
        f"/v1/customers/{customer_id}/activity",
        json={
            "kind": "account",
            "reason": "security",
            "detail": "password reset",
            "occurred_at": "2026-11-02T08:00:00Z",
        },
        headers=admin,
    )
    assert activity.status_code == 201
    view = client.get(
        f"/v1/customers/{customer_id}?min_position={activity.json()['position']}",
        headers={**admin, "X-Purpose": "legal"},
    ).json()
    assert view["invoices"][0]["amount"] == "49.90"
    assert view["activity"][0]["detail"] == "password reset"
    assert view["categories"]["billing"]["purposes"] == ["billing", "legal"]


def test_partners_and_disclosures(client: TestClient, admin: dict[str, str]) -> None:
    """A share with a contracted processor is recorded; a sale is refused with a clear problem."""
    customer_id = new_customer(client, admin)
    partner = client.post(
        "/v1/partners",
        json={
            "name": "Acme Payments",
            "kind": "payment_processor",
            "contract_reference": "C-9",
            "confidentiality_agreement": "NDA-9",
            "contract_valid_until": "2099-12-31",
        },
        headers=admin,
    )
    assert partner.status_code == 201
    partner_id = partner.json()["partner_id"]
    shown = client.get(f"/v1/partners/{partner_id}", headers=admin).json()
    assert shown["contract_valid_today"] is True
    share = {
        "partner_id": partner_id,
        "basis": "service_provider",
        "categories": ["payment_method"],
        "purpose": "billing",
        "reference": "run 11",
    }
    assert (
        client.post(
            f"/v1/customers/{customer_id}/disclosures", json=share, headers=admin
        ).status_code
        == 201
    )
    before = head(client)
    sale = client.post(
        f"/v1/customers/{customer_id}/disclosures", json={**share, "basis": "sale"}, headers=admin
    )
    body = assert_problem(sale, 422)
    assert "never sold" in body["detail"]
    assert body["field"] == "basis"
    assert head(client) == before
    missing_contract = client.post(
        "/v1/partners", json={"name": "Cheap Support", "kind": "support_provider"}, headers=admin
    )
    assert assert_problem(missing_contract, 422)["field"] == "contract_reference"


def test_a_role_shares_only_for_the_purposes_it_may_read_for(
    client: TestClient, admin: dict[str, str], headers: Headers
) -> None:
    """A support key may not share a customer's data with the police for the legal purpose,
    nor a billing key for support: 403 purpose-not-allowed and nothing written; the privacy
    officer, whose role holds the legal purpose, may."""
    customer_id = new_customer(client, admin)
    police = client.post(
        "/v1/partners", json={"name": "Police", "kind": "law_enforcement"}, headers=admin
    ).json()["partner_id"]
    share = {
        "partner_id": police,
        "basis": "legal_obligation",
        "categories": ["identity_contact"],
        "purpose": "legal",
        "reference": "warrant 2026/4",
    }
    before = head(client)
    for role, purpose in ((Role.SUPPORT, "legal"), (Role.BILLING, "support")):
        refused = client.post(
            f"/v1/customers/{customer_id}/disclosures",
            json={**share, "purpose": purpose},
            headers=headers(role),
        )
        body = assert_problem(refused, 403)
        assert body["type"] == "/problems/purpose-not-allowed", body
    assert head(client) == before
    officer = headers(Role.PRIVACY_OFFICER)
    shared = client.post(f"/v1/customers/{customer_id}/disclosures", json=share, headers=officer)
    assert shared.status_code == 201, shared.text


def test_request_lifecycle_through_the_api(client: TestClient, admin: dict[str, str]) -> None:
    """Submit, verify, extend once, deny; a closed request refuses further steps with 409."""
    customer_id = new_customer(client, admin)
    submitted = client.post(
        "/v1/requests",
        json={
            "customer_id": customer_id,
            "type": "access",
            "channel": "email",
            "jurisdiction": "gdpr",
            "statement": "Please send me my data.",
        },
        headers=admin,
    )
    assert submitted.status_code == 202
    request = submitted.json()
    assert request["status"] == "open"
    request_id = request["request_id"]
    due = datetime.fromisoformat(request["due_at"])
    verify = {"method": "id_document", "reference": "case-file 77"}
    verified = client.post(f"/v1/requests/{request_id}/verify", json=verify, headers=admin)
    assert verified.json()["status"] == "in_progress"
    assert_problem(
        client.post(f"/v1/requests/{request_id}/verify", json=verify, headers=admin), 409
    )
    extended = client.post(
        f"/v1/requests/{request_id}/extend", json={"reason": "complex"}, headers=admin
    )
    assert datetime.fromisoformat(extended.json()["due_at"]) > due
    again = client.post(f"/v1/requests/{request_id}/extend", json={"reason": "x"}, headers=admin)
    assert_problem(again, 409)
    denied = client.post(
        f"/v1/requests/{request_id}/deny", json={"reason": "unfounded"}, headers=admin
    )
    assert denied.json()["status"] == "denied"
    revoked = client.post(f"/v1/requests/{request_id}/revoke", json={}, headers=admin)
    assert assert_problem(revoked, 409)["type"] == "/problems/request-closed"
    shown = client.get(f"/v1/requests/{request_id}", headers=admin).json()
    assert shown["statement"] is None  # the requester's words need a declared purpose
    declared = client.get(
        f"/v1/requests/{request_id}", headers={**admin, "X-Purpose": "legal"}
    ).json()
    assert declared["statement"] == "Please send me my data."
    assert shown["status"] == "denied"
    assert shown["reason"] == "unfounded"
    assert shown["extension_reason"] == "complex"


def test_request_queue_lists_and_filters(client: TestClient, admin: dict[str, str]) -> None:
    """The inbox lists open work by default and other statuses when asked (several at once),
    filters by type, and says which position it reflects."""
    customer_id = new_customer(client, admin)
    ids = []
    position = 0
    for kind in ("access", "deletion", "opt_out"):
        response = client.post(
            "/v1/requests",
            json={
                "customer_id": customer_id,
                "type": kind,
                "channel": "web_form",
                "jurisdiction": "ccpa",
                "statement": f"{kind} please",
            },
            headers=admin,
        )
        ids.append(response.json()["request_id"])
        position = response.json()["position"]
    revoked = client.post(f"/v1/requests/{ids[0]}/revoke", json={"reason": "done"}, headers=admin)
    page = wait_for_queue(client, admin, revoked.json()["position"])
    assert page["position"] >= position
    assert {item["request_id"] for item in page["items"]} == set(ids[1:])
    every = client.get("/v1/requests?status=open&status=revoked", headers=admin).json()
    assert {item["request_id"] for item in every["items"]} == set(ids)
    revoked_only = client.get("/v1/requests?status=revoked", headers=admin).json()
    assert [item["request_id"] for item in revoked_only["items"]] == [ids[0]]
    deletions = client.get("/v1/requests?type=deletion", headers=admin).json()
    assert [item["request_id"] for item in deletions["items"]] == [ids[1]]
    overdue = client.get("/v1/requests?overdue=true", headers=admin).json()
    assert overdue["items"] == []
    bad = client.get("/v1/requests?status=lost", headers=admin)
    assert_problem(bad, 422)


def test_requests_not_in_writing_are_refused(client: TestClient, admin: dict[str, str]) -> None:
    """A phone call is not a written request: 422 naming the channel, nothing stored."""
    customer_id = new_customer(client, admin)
    before = head(client)
    response = client.post(
        "/v1/requests",
        json={
            "customer_id": customer_id,
            "type": "deletion",
            "channel": "phone",
            "jurisdiction": "gdpr",
            "statement": "delete me",
        },
        headers=admin,
    )
    assert assert_problem(response, 422)["field"] == "channel"
    unknown = client.post(
        "/v1/requests",
        json={
            "customer_id": str(uuid4()),
            "type": "access",
            "channel": "email",
            "jurisdiction": "gdpr",
            "statement": "s",
        },
        headers=admin,
    )
    assert_problem(unknown, 404)
    assert head(client) == before


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/v1/customers",
            customer_body(identity={"name": "Bob", "postal_address": "4111-1111-1111-1111"}),
            "identity",
        ),
        (
            "/v1/customers",
            customer_body(payment_method={"processor": "Acme", "token": "5500000000000004"}),
            "payment_method",
        ),
        ("/v1/customers", customer_body(policy_version="card 4111111111111111"), "policy_version"),
    ],
)
def test_card_numbers_are_refused_naming_the_field(
    client: TestClient, admin: dict[str, str], path: str, body: dict[str, Any], field: str
) -> None:
    """Any string holding a card number refuses the command with 422 and stores nothing."""
    before = head(client)
    problem = assert_problem(client.post(path, json=body, headers=admin), 422)
    assert problem["type"] == "/problems/card-number"
    assert problem["field"].startswith(field)
    assert head(client) == before


def test_card_numbers_in_requests_and_corrections_are_refused(
    client: TestClient, admin: dict[str, str]
) -> None:
    """Statements, corrections and reasons are scanned too."""
    customer_id = new_customer(client, admin)
    before = head(client)
    patch = client.patch(
        f"/v1/customers/{customer_id}",
        json={"identity_contact": {"postal_address": "pay with 4111 1111 1111 1111"}},
        headers=admin,
    )
    assert assert_problem(patch, 422)["type"] == "/problems/card-number"
    request = client.post(
        "/v1/requests",
        json={
            "customer_id": customer_id,
            "type": "access",
            "channel": "email",
            "jurisdiction": "gdpr",
            "statement": "my card 4111111111111111 was charged",
        },
        headers=admin,
    )
    assert assert_problem(request, 422)["field"] == "statement"
    assert head(client) == before


def test_authentication_and_roles(client: TestClient, headers: Headers) -> None:
    """No key: 401 with a challenge; a wrong key: 401; a role without the right: 403."""
    missing = client.post("/v1/customers", json=customer_body())
    assert assert_problem(missing, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = client.post(
        "/v1/customers", json=customer_body(), headers={"Authorization": "Bearer rlk_nope"}
    )
    assert_problem(wrong, 401)
    assert (
        client.post("/v1/customers", json=customer_body(), headers=headers(Role.INTAKE)).status_code
        == 201
    )
    forbidden = client.post("/v1/customers", json=customer_body(), headers=headers(Role.MARKETING))
    assert assert_problem(forbidden, 403)["type"] == "/problems/forbidden"
    assert_problem(client.get("/v1/requests", headers=headers(Role.PARTNER)), 403)


def test_revoked_keys_stop_working(client: TestClient, container: Any) -> None:
    """Revoking a key refuses it at once."""
    key_id, token = container.keys.create(Role.AUDITOR, "temp")
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/requests", headers=auth).status_code == 200
    assert container.keys.revoke(key_id)
    assert_problem(client.get("/v1/requests", headers=auth), 401)


def test_bad_input_never_gives_a_500(client: TestClient, admin: dict[str, str]) -> None:
    """Unknown ids, malformed ids, unknown fields, broken JSON and huge bodies get 4xx problems."""
    legal = {**admin, "X-Purpose": "legal"}
    assert_problem(client.get(f"/v1/customers/{uuid4()}", headers=legal), 404)
    assert_problem(client.get("/v1/customers/not-a-uuid", headers=admin), 422)
    assert_problem(client.get(f"/v1/requests/{uuid4()}", headers=admin), 404)
    unknown_field = client.post(
        "/v1/customers", json={**customer_body(), "ssn": "x"}, headers=admin
    )
    assert assert_problem(unknown_field, 422)["errors"][0]["field"] == "ssn"
    broken = client.post(
        "/v1/customers", content=b"{not json", headers={**admin, "content-type": "application/json"}
    )
    assert_problem(broken, 422)
    huge = client.post(
        "/v1/customers",
        content=b'{"policy_version": "' + b"x" * 70_000 + b'"}',
        headers={**admin, "content-type": "application/json"},
    )
    assert_problem(huge, 413)
    assert_problem(client.get("/v1/nothing-here", headers=admin), 404)
    assert_problem(client.delete("/v1/customers", headers=admin), 405)


def test_text_postgres_cannot_hold_is_refused_not_stored(
    client: TestClient, admin: dict[str, str]
) -> None:
    """A NUL character in any field is a 422 naming it; nothing reaches the log or the views."""
    before = head(client)
    body = customer_body(identity={"name": "Ada\u0000Lovelace"})
    problem = assert_problem(client.post("/v1/customers", json=body, headers=admin), 422)
    assert problem["errors"][0]["field"].startswith("identity")
    assert head(client) == before
    ok = client.post("/v1/customers", json=customer_body(), headers=admin).json()
    assert (
        client.get(f"/v1/requests?min_position={ok['position']}", headers=admin).status_code == 200
    )  # the views keep up
