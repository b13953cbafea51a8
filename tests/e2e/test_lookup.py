"""Finding a customer by email, phone or account reference through HTTP, via the blind index.

The index holds keyed digests only: the tests scan every table of the schema for the
identifiers, before erasure (no normalised form stored anywhere) and after it (nothing at
all). The cross-process test runs the multi-process service: the projection worker indexes,
another process looks up, with the one index key they share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi.testclient import TestClient

from rightsledger.bootstrap import Container
from rightsledger.security.keys import Role
from tests.e2e.conftest import customer_body
from tests.e2e.service import Service, wait_until
from tests.integration.scans import dump_database, encodings

Headers = Callable[[Role | str], dict[str, str]]

EMAIL = "  Ada.Byron@Example.ORG "
PHONE = "+44 20 7946 0123"
ACCOUNT = "ACC 000417"


def ada(account: str = ACCOUNT, **identity: str) -> dict[str, Any]:
    body = customer_body()
    body["identity"] = {
        "name": "Ada Byron",
        "email": EMAIL,
        "phone": PHONE,
        "postal_address": "12 St James's Square, London",
        **identity,
    }
    body["account"] = {"plan": "fibre-500", "reference": account}
    return body


def register(client: TestClient, auth: dict[str, str], body: dict[str, Any]) -> tuple[str, int]:
    created = client.post("/v1/customers", headers=auth, json=body)
    assert created.status_code == 201, created.text
    return created.json()["customer_id"], created.json()["position"]


def find(
    client: TestClient, auth: dict[str, str], query: str, position: int, purpose: str = "support"
) -> httpx.Response:
    # starlette types its client against httpx2 (not installed): its answers read as Any
    answer: httpx.Response = client.get(
        f"/v1/customers?{query}&min_position={position}",
        headers={**auth, "X-Purpose": purpose},
    )
    return answer


def test_a_customer_is_found_by_each_identifier_in_any_common_form(
    api: TestClient, headers: Headers
) -> None:
    """Email (case, spaces), phone (separators, 00 for +) and account reference (case,
    spaces) each find the customer, read-your-writes from registration; another customer's
    values do not; each customer answered is a recorded read, limited to the purpose."""
    admin = headers(Role.ADMIN)
    customer, position = register(api, admin, ada())
    register(
        api,
        admin,
        ada("GH-1", email="grace@example.org", phone="+1 212 555 0100", name="Grace Hopper"),
    )
    support = headers(Role.SUPPORT)
    for query in (
        "email=ada.byron@example.org",
        "email=ADA.BYRON%40EXAMPLE.ORG",
        "phone=%2B442079460123",
        "phone=0044%20(20)%207946-0123",
        "account=acc000417",
        "account=%20Acc%20000417%20",
    ):
        found = find(api, support, query, position)
        assert found.status_code == 200, (query, found.text)
        page = found.json()
        assert [item["customer_id"] for item in page["items"]] == [customer], query
        assert page["next_cursor"] is None
        assert int(found.headers["X-Position"]) >= position
        shown = page["items"][0]["categories"]
        assert set(shown) == {"identity_contact", "account_service"}  # held for support
        assert shown["identity_contact"]["fields"]["email"] == EMAIL.strip()
    billing = find(api, headers(Role.BILLING), "email=ada.byron@example.org", position, "billing")
    assert set(billing.json()["items"][0]["categories"]) == {"identity_contact", "payment_method"}
    for query in ("email=nobody@example.org", "phone=%2B442079460124", "account=ACC000418"):
        assert find(api, support, query, position).json()["items"] == [], query
    head = api.get("/ready").json()["position"]
    trail = api.get(
        f"/v1/audit/customers/{customer}/trail?min_position={head}&limit=1000", headers=admin
    ).json()["items"]
    reads = [row for row in trail if row["event_type"] == "Customer.DataAccessed"]
    assert len(reads) == 7  # six lookups by support, one by billing
    assert reads[0]["actor"] == "support:test-support"


def test_a_lookup_names_one_identifier_and_declares_an_allowed_purpose(
    api: TestClient, headers: Headers
) -> None:
    """None or two identifiers: 422 naming the field; no purpose: 422; a purpose the role may
    not declare: 403; a role that reads no profiles: 403."""
    admin = headers(Role.ADMIN)
    _, position = register(api, admin, ada())
    support = headers(Role.SUPPORT)
    none = api.get("/v1/customers", headers={**support, "X-Purpose": "support"})
    assert none.status_code == 422
    assert none.json()["field"] == "email"
    two = find(api, support, "email=a%40b.c&phone=123", position)
    assert two.status_code == 422
    assert two.json()["field"] == "phone"
    unstated = api.get("/v1/customers?email=ada.byron@example.org", headers=support)
    assert unstated.status_code == 422
    assert unstated.json()["type"] == "/problems/purpose-required"
    assert find(api, support, "email=x%40y.z", position, "billing").status_code == 403
    assert find(api, headers(Role.AUDITOR), "email=x%40y.z", position, "legal").status_code == 403
    empty = find(api, support, "email=%20", position)
    assert empty.status_code == 200
    assert empty.json()["items"] == []


def test_a_correction_moves_the_index_and_pages_follow_the_cursor(
    api: TestClient, headers: Headers
) -> None:
    """After a corrected email the old one finds nobody and the new one finds the customer;
    customers sharing a phone are paged with the shared cursor shape and Link header."""
    admin = headers(Role.ADMIN)
    first, _ = register(api, admin, ada())
    second, position = register(api, admin, ada(email="byron.family@example.org"))
    patched = api.patch(
        f"/v1/customers/{first}",
        headers=admin,
        json={"identity_contact": {"email": "countess@example.org"}},
    )
    assert patched.status_code == 200, patched.text
    moved = patched.json()["position"]
    support = headers(Role.SUPPORT)
    assert find(api, support, "email=ada.byron@example.org", moved).json()["items"] == []
    now = find(api, support, "email=Countess@example.org", moved).json()["items"]
    assert [item["customer_id"] for item in now] == [first]

    seen: list[str] = []
    url = f"/v1/customers?phone=%2B442079460123&limit=1&min_position={position}"
    while url:
        page = api.get(url, headers={**support, "X-Purpose": "support"})
        assert page.status_code == 200, page.text
        seen += [item["customer_id"] for item in page.json()["items"]]
        link = page.headers.get("Link")
        assert (link is None) == (page.json()["next_cursor"] is None)
        url = link.split(">")[0].lstrip("<") if link else ""
    assert sorted(seen) == sorted([first, second])
    assert len(seen) == 2


def test_after_erasure_no_lookup_finds_the_customer_and_no_table_holds_an_identifier(
    api: TestClient, headers: Headers, working: Container
) -> None:
    """Before erasure no table holds the normalised identifiers (the index keeps digests);
    after a deletion no identifier finds the customer and no table holds any of them."""
    admin = headers(Role.ADMIN)
    customer, position = register(api, admin, ada())
    support = headers(Role.SUPPORT)
    assert find(api, support, "email=ada.byron@example.org", position).json()["items"]
    normalised = ["ada.byron@example.org", "+442079460123", "acc000417"]
    blob = dump_database(working)
    for value in normalised:
        for encoded in encodings(value):
            assert encoded not in blob, f"{value!r} is stored in searchable form"

    deletion = api.post(
        "/v1/requests",
        headers=admin,
        json={
            "customer_id": customer,
            "type": "deletion",
            "channel": "email",
            "jurisdiction": "gdpr",
            "statement": "Please delete my data.",
        },
    ).json()["request_id"]
    verified = api.post(
        f"/v1/requests/{deletion}/verify",
        headers=admin,
        json={"method": "id_document", "reference": "case 9"},
    )
    assert verified.status_code == 200, verified.text
    wait_until(
        lambda: api.get(f"/v1/requests/{deletion}", headers=admin).json()["status"] == "fulfilled",
        20,
        "the deletion to be fulfilled",
    )
    head = api.get("/ready").json()["position"]
    for query in ("email=ada.byron@example.org", "phone=%2B442079460123", "account=ACC000417"):
        assert find(api, support, query, head).json()["items"] == [], query
    blob = dump_database(working)
    for value in (*normalised, EMAIL.strip(), PHONE, ACCOUNT, "Ada Byron"):
        for encoded in encodings(value):
            assert encoded not in blob, f"{value!r} is still in the database"


def test_on_the_multi_process_service_a_customer_is_found_at_once_and_not_after_erasure(
    service: Service,
) -> None:
    """The API process looks up what the projection worker process indexed (one index key for
    both), right after registration with ?min_position=, and finds nothing once erased."""
    with service.client(purpose="support") as http:
        created = http.post("/v1/customers", json=ada())
        assert created.status_code == 201, created.text
        customer, position = created.json()["customer_id"], created.json()["position"]
        for query in ("email=ada.byron@example.org", "phone=%2B442079460123", "account=acc000417"):
            found = http.get(f"/v1/customers?{query}&min_position={position}")
            assert found.status_code == 200, found.text
            assert [item["customer_id"] for item in found.json()["items"]] == [customer]
        deletion = http.post(
            "/v1/requests",
            json={
                "customer_id": customer,
                "type": "deletion",
                "channel": "email",
                "jurisdiction": "gdpr",
                "statement": "Please delete my data.",
            },
        ).json()["request_id"]
        verified = http.post(
            f"/v1/requests/{deletion}/verify", json={"method": "id_document", "reference": "c"}
        )
        assert verified.status_code == 200, verified.text
        wait_until(
            lambda: http.get(f"/v1/requests/{deletion}").json()["status"] == "fulfilled",
            30,
            "the deletion to be fulfilled",
        )
        head = http.get("/ready").json()["position"]
        for query in ("email=ada.byron@example.org", "phone=%2B442079460123", "account=acc000417"):
            found = http.get(f"/v1/customers?{query}&min_position={head}")
            assert found.status_code == 200, found.text
            assert found.json()["items"] == [], query
