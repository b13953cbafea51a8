"""Answers in writing through the API: the export as a file and as a letter, and receipts
for every kind of request, checked against the recorded events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from rightsledger.api.app import create_app
from rightsledger.bootstrap import Container, build
from rightsledger.domain.customer import Customer
from rightsledger.security.keys import Role
from rightsledger.storage.database import Database
from tests.conftest import ADMIN_KEY, make_settings
from tests.e2e.conftest import EVIDENCE, customer_body
from tests.e2e.test_fulfilment import call, status_of, wait_for

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
LEGAL = {**ADMIN, "X-Purpose": "legal"}
HTML = {"Accept": "text/html"}
SCRIPT_NAME = "<script>alert('x')</script> Ada & \"Lovelace\""


@pytest.fixture
def working(database: Database, schema: str) -> Iterator[Container]:
    """The API with the projection worker and the request workers running (no broker: the
    relay is not needed for requests to be carried out, and partners acknowledge by API)."""
    settings = make_settings(
        database, schema, run_projections=True, run_workers=True, billing_retention_days=30
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


def key(working: Container, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {working.keys.create(role, f'test-{role.value}')[1]}"}


def submit(api: TestClient, customer: str, kind: str, **extra: Any) -> str:
    body = {
        "customer_id": customer,
        "type": kind,
        "channel": "email",
        "jurisdiction": "gdpr",
        "statement": f"{kind} please",
        **extra,
    }
    request_id: str = call(api, "POST", "/v1/requests", ADMIN, json=body)["request_id"]
    return request_id


def verify(api: TestClient, request_id: str) -> None:
    call(
        api,
        "POST",
        f"/v1/requests/{request_id}/verify",
        ADMIN,
        json={"method": "id_document", "reference": "case 7"},
    )


def fulfilled(api: TestClient, request_id: str) -> None:
    verify(api, request_id)
    wait_for(lambda: status_of(api, request_id) == "fulfilled")


def receipt(api: TestClient, request_id: str, auth: dict[str, str] = ADMIN) -> Any:
    return call(api, "GET", f"/v1/requests/{request_id}/receipt", auth)


def log_events(api: TestClient, aggregate_id: str) -> list[dict[str, Any]]:
    """Every event of one aggregate, from the audit log route."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = call(api, "GET", "/v1/audit/events", ADMIN, params=params)
        found += [e for e in page["items"] if e["aggregate_id"] == aggregate_id]
        if page["next_cursor"] is None:
            return found
        params["cursor"] = page["next_cursor"]


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


def of_type(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == name]


def partner(api: TestClient, name: str, kind: str = "support_provider") -> str:
    body: dict[str, Any] = {"name": name, "kind": kind}
    if kind != "law_enforcement":
        body |= {
            "contract_reference": "C-1",
            "confidentiality_agreement": "NDA-1",
            "contract_valid_until": "2099-01-01",
        }
    partner_id: str = call(api, "POST", "/v1/partners", ADMIN, json=body)["partner_id"]
    return partner_id


def disclose(api: TestClient, customer: str, partner_id: str, basis: str, purpose: str) -> None:
    call(
        api,
        "POST",
        f"/v1/customers/{customer}/disclosures",
        ADMIN,
        json={
            "partner_id": partner_id,
            "basis": basis,
            "categories": ["identity_contact"],
            "purpose": purpose,
            "reference": "ref 1",
        },
    )


def test_access_export_downloads_as_a_file_and_reads_as_an_escaped_letter(
    api: TestClient, working: Container
) -> None:
    """The export's JSON answer is unchanged; ?download=true adds the attachment name; the
    letter shows the customer's own values as text (HTML-escaped), never as markup; the
    access receipt names what was exported with the digest the log recorded."""
    body = customer_body()
    body["identity"] = {**body["identity"], "name": SCRIPT_NAME}
    customer = call(api, "POST", "/v1/customers", ADMIN, json=body)["customer_id"]
    request = submit(api, customer, "access")
    early = api.get(f"/v1/requests/{request}/receipt", headers=ADMIN)
    assert early.status_code == 409
    assert early.headers["content-type"] == "application/problem+json"
    assert early.json()["type"] == "/problems/not-fulfilled"
    assert "open" in early.json()["detail"]
    fulfilled(api, request)

    plain = api.get(f"/v1/requests/{request}/export", headers=LEGAL)
    assert plain.status_code == 200
    assert "content-disposition" not in plain.headers
    download = api.get(f"/v1/requests/{request}/export?download=true", headers=LEGAL)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/json"
    assert download.headers["content-disposition"] == (
        f'attachment; filename="rightsledger-access-{request}.json"'
    )
    assert download.json() == plain.json()

    letter = api.get(f"/v1/requests/{request}/export", headers={**LEGAL, **HTML})
    assert letter.status_code == 200
    assert letter.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in letter.headers["content-security-policy"]
    page = letter.text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Ada &amp; &#34;Lovelace&#34;" in page
    assert "ada@example.org" in page
    assert "fibre-500" in page
    assert plain.json()["digest"] in page
    saved = api.get(f"/v1/requests/{request}/export?download=1", headers={**LEGAL, **HTML}).headers[
        "content-disposition"
    ]
    assert saved == f'attachment; filename="rightsledger-access-{request}.html"'
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    assert (
        api.get(f"/v1/requests/{request}/export", headers={**LEGAL, **browser})
        .headers["content-type"]
        .startswith("text/html")
    )
    refused = api.get(f"/v1/requests/{request}/export", headers={**LEGAL, "Accept": "image/png"})
    assert refused.status_code == 406
    assert refused.json()["type"] == "/problems/not-acceptable"

    answer = receipt(api, request)
    prepared = of_type(log_events(api, request), "DataRightsRequest.ExportPrepared")
    assert len(prepared) == 1
    assert answer["type"] == "access"
    assert answer["status"] == "fulfilled"
    assert answer["access"]["digest"] == prepared[0]["payload"]["digest"] == plain.json()["digest"]
    assert answer["access"]["categories"] == prepared[0]["payload"]["categories"]
    assert answer["access"]["items"] == prepared[0]["payload"]["items"]
    assert answer["access"]["deleted_at"] is None
    assert answer["correction"] is None
    assert answer["deletion"] is None
    assert SCRIPT_NAME not in json.dumps(answer)
    html = api.get(f"/v1/requests/{request}/receipt", headers={**ADMIN, **HTML})
    assert html.headers["content-type"].startswith("text/html")
    assert answer["access"]["digest"] in html.text

    # both state the retention schedule in force, each category its own rules
    schedule = working.ledger.retention.describe()
    assert answer["retention"] == schedule
    document = plain.json()["document"]
    assert document["retention_schedule"] == schedule
    for category, entry in document["categories"].items():
        assert entry["retention"] == [r for r in schedule if r["category"] == category]
    troubleshooting = next(r for r in schedule if r["purpose"] == "troubleshooting")
    assert troubleshooting["kept"] in html.text
    assert troubleshooting["kept"] in page
    assert "Ada" not in html.text


def test_correction_receipt_names_the_fields_changed_and_the_partners_told(
    api: TestClient, working: Container
) -> None:
    """A correction's receipt lists each category's changed fields and every partner that
    received them and was told, as the customer's and the request's events record."""
    customer = call(api, "POST", "/v1/customers", ADMIN, json=customer_body())["customer_id"]
    helpdesk = partner(api, "Helpdesk Ltd")
    disclose(api, customer, helpdesk, "service_provider", "support")
    request = submit(
        api,
        customer,
        "correction",
        corrections={
            "identity_contact": {"email": "ada@new.example", "phone": "+44 20 0000 0001"},
            "account_service": {"plan": "fibre-900"},
        },
    )
    fulfilled(api, request)
    answer = receipt(api, request)
    corrected = [
        e
        for e in working.ledger.events.get(UUID(customer))
        if isinstance(e, Customer.DetailsCorrected) and str(e.request_id) == request
    ]
    assert [
        {"category": c["category"], "fields": c["fields"]} for c in answer["correction"]["changes"]
    ] == [{"category": e.category, "fields": sorted(e.changes)} for e in corrected]
    assert {c["category"] for c in answer["correction"]["changes"]} == {
        "identity_contact",
        "account_service",
    }
    notified = of_type(log_events(api, request), "DataRightsRequest.PartnersNotified")
    assert notified[0]["payload"]["notifications"] == [
        {"partner_id": helpdesk, "categories": ["identity_contact"]}
    ]
    told = answer["correction"]["partners_told"]
    assert [(t["partner_id"], t["name"], t["categories"]) for t in told] == [
        (helpdesk, "Helpdesk Ltd", ["identity_contact"])
    ]
    text = json.dumps(answer)
    assert "ada@new.example" not in text
    assert "fibre-900" not in text
    html = api.get(f"/v1/requests/{request}/receipt", headers={**ADMIN, **HTML}).text
    assert "Helpdesk Ltd" in html
    assert "ada@new.example" not in html


def test_opt_out_receipt_lists_the_channels_withdrawn(api: TestClient) -> None:
    """An opt-out's receipt lists exactly the channels whose consent the request withdrew."""
    customer = call(api, "POST", "/v1/customers", ADMIN, json=customer_body())["customer_id"]
    for channel in ("email", "sms"):
        call(
            api,
            "POST",
            f"/v1/customers/{customer}/consents",
            ADMIN,
            json={"channel": channel, "granted": True, "evidence": EVIDENCE},
        )
    request = submit(api, customer, "opt_out")
    fulfilled(api, request)
    answer = receipt(api, request)
    withdrawals = [
        e
        for e in of_type(log_events(api, customer), "Customer.ConsentWithdrawn")
        if e["payload"]["request_id"] == request
    ]
    assert sorted(w["channel"] for w in answer["opt_out"]["withdrawn"]) == sorted(
        e["payload"]["channel"] for e in withdrawals
    )
    assert {w["channel"] for w in answer["opt_out"]["withdrawn"]} == {"email", "sms"}
    html = api.get(f"/v1/requests/{request}/receipt", headers={**ADMIN, **HTML}).text
    assert "sms" in html
    assert "opt-out" in html


def test_deletion_receipt_erased_and_kept_field_by_field_with_no_erased_value(
    api: TestClient, working: Container
) -> None:
    """A deletion's receipt lists every field erased and the billing records kept, with their
    legal ground and the purge date the erasure recorded, and the partners told; after the
    erasure no receipt (the deletion's, or an earlier correction's or access's) shows any of
    the erased values. The roles that may read a request may read its receipt."""
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
    police = partner(api, "Police", "law_enforcement")
    disclose(api, customer, police, "legal_obligation", "legal")
    correction = submit(
        api, customer, "correction", corrections={"identity_contact": {"email": "ada@fix.example"}}
    )
    fulfilled(api, correction)
    access = submit(api, customer, "access")
    fulfilled(api, access)
    deletion = submit(api, customer, "deletion")
    verify(api, deletion)
    wait_for(lambda: working.ledger.get_request(UUID(deletion)).notified)
    in_progress = api.get(f"/v1/requests/{deletion}/receipt", headers=ADMIN)
    assert in_progress.status_code == 409
    assert "in_progress" in in_progress.json()["detail"]
    call(
        api, "POST", f"/v1/partners/{police}/acknowledgements", ADMIN, json={"request_id": deletion}
    )
    wait_for(lambda: status_of(api, deletion) == "fulfilled")

    answer = receipt(api, deletion)
    part = answer["deletion"]
    erased = {(e["category"], e["field"]) for e in part["erased"]}
    assert erased == {
        ("identity_contact", "name"),
        ("identity_contact", "email"),
        ("identity_contact", "phone"),
        ("identity_contact", "postal_address"),
        ("account_service", "plan"),
        ("account_service", "activated_at"),
        ("activity", "entries"),
    }
    assert next(e for e in part["erased"] if e["category"] == "activity")["items"] == 1
    customer_log = log_events(api, customer)
    (erasure,) = of_type(customer_log, "Customer.Erased")
    assert erasure["payload"]["request_id"] == deletion
    assert moment(part["erased_at"]) == moment(erasure["recorded_at"])
    kept = {(k["category"], k["field"]): k for k in part["kept"]}
    assert set(kept) == {
        ("payment_method", "processor"),
        ("payment_method", "token"),
        ("billing", "invoices"),
    }
    assert kept[("billing", "invoices")]["items"] == 1
    for entry in kept.values():
        assert moment(entry["until"]) == moment(erasure["payload"]["retained_until"])
        assert "billing records must be retained" in entry["ground"]
        assert entry["purged_at"] is None
    (told,) = part["partners_told"]
    (acknowledged,) = of_type(log_events(api, deletion), "DataRightsRequest.PartnerAcknowledged")
    assert told["partner_id"] == police
    assert told["name"] == "Police"
    assert moment(told["acknowledged_at"]) == moment(acknowledged["recorded_at"])

    erased_values = [
        *body["identity"].values(),
        "ada@fix.example",
        "fibre-500",
        "Ada reset her password",
        "Ada",
    ]
    for request_id in (deletion, correction, access):
        text = json.dumps(receipt(api, request_id))
        page = api.get(f"/v1/requests/{request_id}/receipt", headers={**ADMIN, **HTML}).text
        for value in erased_values:
            assert value not in text, f"{value!r} in the receipt of {request_id}"
            assert value not in page, f"{value!r} in the letter of {request_id}"
    assert receipt(api, correction)["correction"]["changes"][0]["fields"] == ["email"]
    assert moment(receipt(api, access)["access"]["deleted_at"]) == moment(erasure["recorded_at"])

    for role in (Role.INTAKE, Role.AUDITOR, Role.PRIVACY_OFFICER):
        assert receipt(api, deletion, key(working, role))["request_id"] == deletion
    refused = api.get(f"/v1/requests/{deletion}/receipt", headers=key(working, Role.SUPPORT))
    assert refused.status_code == 403
    download = api.get(f"/v1/requests/{deletion}/receipt?download=true", headers=ADMIN)
    assert download.headers["content-disposition"] == (
        f'attachment; filename="rightsledger-receipt-{deletion}.json"'
    )
