"""Requests fulfilled end to end through the API, with the workers and the relay running."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from rightsledger.api.app import create_app
from rightsledger.bootstrap import Container, build
from rightsledger.security.keys import Role
from rightsledger.storage.database import Database
from rightsledger.workers.broker import EmbeddedBroker
from tests.conftest import ADMIN_KEY, make_settings
from tests.e2e.conftest import EVIDENCE, customer_body
from tests.integration.scans import consume_all

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
LEGAL = {**ADMIN, "X-Purpose": "legal"}
BILLING = {**ADMIN, "X-Purpose": "billing"}


@pytest.fixture
def working(database: Database, schema: str, broker: EmbeddedBroker) -> Iterator[Container]:
    settings = make_settings(
        database,
        schema,
        run_projections=True,
        run_workers=True,
        kafka_bootstrap=broker.bootstrap,
        billing_retention_days=30,
    )
    built = build(settings, database=database)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def api(working: Container) -> Iterator[TestClient]:
    with TestClient(create_app(working)) as client:
        yield client


def call(client: TestClient, method: str, path: str, auth: dict[str, str], **kw: Any) -> Any:
    response = client.request(method, path, headers=auth, **kw)
    assert response.status_code < 300, response.text
    return response.json()


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def status_of(client: TestClient, request_id: str) -> str:
    status: str = call(client, "GET", f"/v1/requests/{request_id}", ADMIN)["status"]
    return status


def test_access_request_from_submission_to_export(api: TestClient, working: Container) -> None:
    """Verified access requests are fulfilled by the worker; the export holds everything."""
    customer = call(api, "POST", "/v1/customers", ADMIN, json=customer_body())["customer_id"]
    call(
        api,
        "POST",
        f"/v1/customers/{customer}/consents",
        ADMIN,
        json={"channel": "email", "granted": True, "evidence": EVIDENCE},
    )
    police = call(
        api, "POST", "/v1/partners", ADMIN, json={"name": "Police", "kind": "law_enforcement"}
    )["partner_id"]
    call(
        api,
        "POST",
        f"/v1/customers/{customer}/disclosures",
        ADMIN,
        json={
            "partner_id": police,
            "basis": "legal_obligation",
            "categories": ["identity_contact"],
            "purpose": "legal",
            "reference": "warrant 9",
        },
    )
    request = call(
        api,
        "POST",
        "/v1/requests",
        ADMIN,
        json={
            "customer_id": customer,
            "type": "access",
            "channel": "web_form",
            "jurisdiction": "gdpr",
            "statement": "Send me my data",
        },
    )["request_id"]
    assert api.get(f"/v1/requests/{request}/export", headers=LEGAL).status_code == 404
    call(
        api,
        "POST",
        f"/v1/requests/{request}/verify",
        ADMIN,
        json={"method": "id_document", "reference": "case 1"},
    )
    wait_for(lambda: status_of(api, request) == "fulfilled")
    export = call(api, "GET", f"/v1/requests/{request}/export", LEGAL)
    document = export["document"]
    identity = document["categories"]["identity_contact"]
    assert identity["fields"]["name"] == "Ada Lovelace"
    assert "marketing" in identity["purposes"]
    assert identity["source"]
    assert document["marketing_consents"][0]["evidence"]["wording_version"] == "mkt-v3"
    assert document["disclosures"][0]["partner_name"] == "Police"
    assert document["disclosures"][0]["basis"] == "legal_obligation"
    assert "kept for 30 days after erasure" in document["retention"]
    head = api.get("/ready").json()["position"]
    trail = call(
        api, "GET", f"/v1/audit/customers/{customer}/trail?limit=100&min_position={head}", ADMIN
    )
    assert "DataRightsRequest.ExportPrepared" in [row["event_type"] for row in trail["items"]]
    intake = working.keys.create(Role.INTAKE, "desk")[1]
    denied = api.get(
        f"/v1/requests/{request}/export",
        headers={"Authorization": f"Bearer {intake}", "X-Purpose": "legal"},
    )
    assert denied.status_code == 403


def test_deletion_from_submission_to_fulfilment(api: TestClient, working: Container) -> None:
    """Erase, notify every recipient, wait for each acknowledgement (the request can no longer
    be denied meanwhile), then fulfil; nothing of the customer's personal data remains in any
    view or export, the profile says when it was erased; billing records remain."""
    body = customer_body()
    customer = call(api, "POST", "/v1/customers", ADMIN, json=body)["customer_id"]
    call(
        api,
        "POST",
        f"/v1/customers/{customer}/invoices",
        ADMIN,
        json={"amount": "30.00", "currency": "EUR", "issued_at": "2026-10-01T00:00:00Z"},
    )
    call(
        api,
        "POST",
        f"/v1/customers/{customer}/activity",
        ADMIN,
        json={
            "kind": "account",
            "reason": "security",
            "detail": "Ada reset her password",
            "occurred_at": "2026-10-02T00:00:00Z",
        },
    )
    police = call(
        api, "POST", "/v1/partners", ADMIN, json={"name": "Police", "kind": "law_enforcement"}
    )["partner_id"]
    processor = call(
        api,
        "POST",
        "/v1/partners",
        ADMIN,
        json={
            "name": "Acme Payments",
            "kind": "payment_processor",
            "contract_reference": "C",
            "confidentiality_agreement": "NDA",
            "contract_valid_until": "2099-01-01",
        },
    )["partner_id"]
    for partner, basis, purpose in (
        (police, "legal_obligation", "legal"),
        (processor, "service_provider", "billing"),
    ):
        call(
            api,
            "POST",
            f"/v1/customers/{customer}/disclosures",
            ADMIN,
            json={
                "partner_id": partner,
                "basis": basis,
                "categories": ["identity_contact"],
                "purpose": purpose,
                "reference": "ref",
            },
        )
    access = call(
        api,
        "POST",
        "/v1/requests",
        ADMIN,
        json={
            "customer_id": customer,
            "type": "access",
            "channel": "email",
            "jurisdiction": "gdpr",
            "statement": "copy",
        },
    )["request_id"]
    call(
        api, "POST", f"/v1/requests/{access}/verify", ADMIN, json={"method": "m", "reference": "r"}
    )
    wait_for(lambda: status_of(api, access) == "fulfilled")
    deletion = call(
        api,
        "POST",
        "/v1/requests",
        ADMIN,
        json={
            "customer_id": customer,
            "type": "deletion",
            "channel": "postal_mail",
            "jurisdiction": "gdpr",
            "document_reference": "letter 2026-117",
        },
    )["request_id"]
    call(
        api,
        "POST",
        f"/v1/requests/{deletion}/verify",
        ADMIN,
        json={"method": "id_document", "reference": "r"},
    )

    def notified() -> bool:
        row = working.ledger.get_request(UUID(deletion))
        return bool(row.notified)

    wait_for(notified)
    assert status_of(api, deletion) == "in_progress"
    settings = working.settings
    notices = consume_all(settings.kafka_bootstrap or "", settings.notifications_topic, 2)
    assert {r.key.decode() for r in notices} == {police, processor}
    assert {json.loads(r.value)["data"]["request_id"] for r in notices} == {deletion}

    police_key = working.keys.create(Role.PARTNER, "police", partner_id=UUID(police))[1]
    as_police = {"Authorization": f"Bearer {police_key}"}
    wrong = api.post(
        f"/v1/partners/{processor}/acknowledgements",
        headers=as_police,
        json={"request_id": deletion},
    )
    assert wrong.status_code == 403
    first = call(
        api,
        "POST",
        f"/v1/partners/{police}/acknowledgements",
        as_police,
        json={"request_id": deletion},
    )
    assert first["status"] == "in_progress"
    denied = api.post(
        f"/v1/requests/{deletion}/deny", headers=ADMIN, json={"reason": "changed our mind"}
    )
    assert denied.status_code == 409, denied.text  # erased already: it ends fulfilled
    assert denied.json()["type"] == "/problems/illegal-transition"
    again = api.post(
        f"/v1/partners/{police}/acknowledgements", headers=as_police, json={"request_id": deletion}
    )
    assert again.status_code == 200  # a repeat confirms, writing nothing
    assert {k: v for k, v in again.json().items() if k != "position"} == {
        k: v for k, v in first.items() if k != "position"
    }
    last = call(
        api,
        "POST",
        f"/v1/partners/{processor}/acknowledgements",
        ADMIN,
        json={"request_id": deletion},
    )
    assert last["status"] == "fulfilled"

    profile = call(api, "GET", f"/v1/customers/{customer}?min_position={last['position']}", BILLING)
    assert "identity_contact" not in profile["categories"]
    assert profile["erased_at"] is not None
    assert profile["activity"] == []
    assert profile["invoices"][0]["amount"] == "30.00"
    assert profile["categories"]["payment_method"]["fields"]["token"] == "tok_abc123"
    assert api.get(f"/v1/requests/{access}/export", headers=LEGAL).status_code == 404
    views = json.dumps(
        [
            call(api, "GET", f"/v1/customers/{customer}/consents", ADMIN),
            call(api, "GET", f"/v1/audit/customers/{customer}/trail?limit=1000", ADMIN),
            call(api, "GET", f"/v1/customers/{customer}/disclosures", ADMIN),
            call(api, "GET", f"/v1/requests?customer_id={customer}", ADMIN),
            profile,
        ]
    )
    for value in (*body["identity"].values(), "fibre-500", "Ada reset her password"):
        assert value not in views, f"{value!r} is still in a view"
    refused = api.post(
        f"/v1/customers/{customer}/consents",
        headers=ADMIN,
        json={"channel": "sms", "granted": True, "evidence": EVIDENCE},
    )
    assert refused.status_code == 409


def test_opt_out_withdraws_every_channel_at_once(api: TestClient) -> None:
    """An opt-out request withdraws marketing consent on every channel, linked to the request."""
    customer = call(api, "POST", "/v1/customers", ADMIN, json=customer_body())["customer_id"]
    for channel in ("email", "sms", "post"):
        call(
            api,
            "POST",
            f"/v1/customers/{customer}/consents",
            ADMIN,
            json={"channel": channel, "granted": True, "evidence": EVIDENCE},
        )
    request = call(
        api,
        "POST",
        "/v1/requests",
        ADMIN,
        json={
            "customer_id": customer,
            "type": "opt_out",
            "channel": "email",
            "jurisdiction": "ccpa",
            "statement": "no more marketing",
        },
    )["request_id"]
    call(
        api, "POST", f"/v1/requests/{request}/verify", ADMIN, json={"method": "m", "reference": "r"}
    )
    wait_for(lambda: status_of(api, request) == "fulfilled")
    consents = wait_for(
        lambda: (
            (c := call(api, "GET", f"/v1/customers/{customer}/consents", ADMIN))
            and all(not x["granted"] for x in c["current"])
            and c
        )
    )
    withdrawals = [h for h in consents["history"] if not h["granted"]]
    assert {h["channel"] for h in withdrawals} == {"email", "sms", "post"}
    assert {h["request_id"] for h in withdrawals} == {request}
