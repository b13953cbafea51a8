"""Working data-rights requests in the console, from the written request to fulfilment."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from rightsledger.api.console.router import CONSOLE_POLICY
from rightsledger.api.letters import LETTER_POLICY
from tests.browser.helpers import find_customer, sign_in, snapshot
from tests.e2e.service import Service


def register_customer(service: Service, email: str = "ada@example.org") -> str:
    with service.client() as api:
        answer = api.post(
            "/v1/customers",
            json={
                "policy_version": "2026-01",
                "identity": {"name": "Ada Lovelace", "email": email, "phone": "+44 20 7946 0000"},
                "account": {"plan": "fibre-500"},
            },
        )
        answer.raise_for_status()
        customer: str = answer.json()["customer_id"]
        return customer


def record_request(page: Page, customer: str, type_: str, text: str, channel: str) -> str:
    """Fill the intake form; the request id from the page it lands on."""
    page.get_by_role("link", name="Record a request").click()
    page.get_by_label("Customer id").fill(customer)
    page.get_by_label("Type").select_option(type_)
    page.get_by_label("Received by").select_option(channel)
    page.get_by_label("Jurisdiction").select_option("gdpr")
    page.get_by_label("The statement").fill(text)
    page.get_by_role("button", name="Record the request").click()
    page.wait_for_url(re.compile(r"/console/requests/[0-9a-f-]{36}\?done=recorded"))
    found = re.search(r"/requests/([0-9a-f-]{36})", page.url)
    assert found is not None
    return found.group(1)


def verify_identity(page: Page) -> None:
    page.get_by_label("Method").select_option("id_document")
    page.get_by_label("Reference (where the evidence is kept)").fill("passport seen, case 17")
    page.get_by_role("button", name="Verify identity").click()
    expect(page.get_by_role("status").first).to_contain_text("verified")


def test_a_written_access_request_is_recorded_verified_fulfilled_and_exported(
    service: Service, make_key: Callable[..., tuple[str, str]], page: Page, tmp_path: Path
) -> None:
    """Intake finds the customer of an emailed access request by email (the lookup, for the
    account purpose, recorded) and records the request for the customer found; the privacy
    officer finds it in the inbox with its days left, reads the statement after declaring a
    purpose, verifies identity, watches the request reach fulfilled, downloads the export,
    and opens the letter to the customer and the receipt, each in its own tab under the
    letter's own security policy (the console's stays strict)."""
    customer = register_customer(service)
    _, intake = make_key("intake", "front desk")
    sign_in(page, service, intake)
    page.get_by_role("link", name="Record a request").click()
    find_customer(page, "email", "  Ada@Example.ORG ", "account")
    found = page.locator(f'li[data-customer="{customer}"]')
    expect(found).to_contain_text("Ada Lovelace")
    found.get_by_role("link", name="Record the request for this customer").click()
    expect(page.get_by_label("Customer id")).to_have_value(customer)
    page.get_by_label("Type").select_option("access")
    page.get_by_label("Received by").select_option("email")
    page.get_by_label("Jurisdiction").select_option("gdpr")
    page.get_by_label("The statement").fill("Please send me a copy of my data.")
    page.get_by_role("button", name="Record the request").click()
    page.wait_for_url(re.compile(r"/console/requests/[0-9a-f-]{36}\?done=recorded"))
    matched = re.search(r"/requests/([0-9a-f-]{36})", page.url)
    assert matched is not None
    request_id = matched.group(1)
    expect(page.locator("[data-status]")).to_have_text("open")
    # intake may record and read, not verify
    expect(page.get_by_role("button", name="Verify identity")).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()

    _, officer = make_key("privacy_officer", "Grace")
    sign_in(page, service, officer)
    row = page.locator(f'tr[data-request="{request_id}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("access")
    expect(row).to_contain_text("gdpr")
    expect(row.locator(".tag")).to_have_text(re.compile(r"\d+ days left"))
    expect(page.locator('[data-count="open"]')).to_have_text("1")
    snapshot(page, "console-inbox")
    # filters narrow the inbox in place (htmx)
    page.get_by_label("Type").select_option("deletion")
    expect(page.get_by_text("No open request matches.")).to_be_visible()
    page.get_by_label("Type").select_option("access")
    expect(row).to_be_visible()
    row.get_by_role("link").click()

    expect(page.get_by_text("Please send me a copy of my data.")).to_have_count(0)
    page.get_by_label("Purpose").select_option("legal")
    page.get_by_role("button", name="Show the statement").click()
    expect(page.locator("[data-statement]")).to_have_text("Please send me a copy of my data.")

    verify_identity(page)
    expect(page.locator("[data-status]")).to_have_text("fulfilled", timeout=60_000)
    expect(page.locator("[data-receipt]")).to_be_visible()
    expect(page.locator("[data-receipt]")).to_contain_text("identity_contact")
    snapshot(page, "console-receipt")
    with page.expect_download() as downloading:
        page.get_by_role("link", name="Download the export").click()
    saved = tmp_path / "export.json"
    downloading.value.save_as(saved)
    export = json.loads(saved.read_text())
    assert export["request_id"] == request_id
    assert export["customer_id"] == customer
    assert export["document"]["categories"]
    with page.expect_download() as downloading:
        page.get_by_role("link", name="Receipt as JSON").click()
    assert downloading.value.suggested_filename == f"rightsledger-receipt-{request_id}.json"
    receipt_file = tmp_path / "receipt.json"
    downloading.value.save_as(receipt_file)
    assert json.loads(receipt_file.read_text())["access"]["digest"] == export["digest"]

    console_policy = page.request.get(page.url).headers["content-security-policy"]
    assert console_policy == CONSOLE_POLICY
    with page.context.expect_page() as opening:
        page.get_by_role("link", name="Open the letter").click()
    letter = opening.value
    letter.wait_for_load_state()
    expect(letter.get_by_text("Ada Lovelace").first).to_be_visible()
    expect(letter.get_by_text(export["digest"])).to_be_visible()
    answer = page.request.get(letter.url)
    assert answer.headers["content-security-policy"] == LETTER_POLICY
    assert answer.headers["content-type"].startswith("text/html")
    with page.context.expect_page() as opening:
        page.get_by_role("link", name="Open the receipt").click()
    receipt = opening.value
    receipt.wait_for_load_state()
    expect(receipt.locator("h1")).to_be_visible()
    expect(receipt.get_by_text(request_id).first).to_be_visible()
    assert page.request.get(receipt.url).headers["content-security-policy"] == LETTER_POLICY
    # the lookup, the statement, the export and the letter are all reads in the trail
    with service.client() as api:
        head = api.get("/ready").json()["position"]
        trail = api.get(
            f"/v1/audit/customers/{customer}/trail", params={"min_position": head, "limit": 500}
        ).json()["items"]
    reads = [e["summary"] for e in trail if e["event_type"].endswith("DataAccessed")]
    assert any("lookup" in summary for summary in reads), reads
    assert any("access export (letter)" in summary for summary in reads), reads
    assert any("data-rights request" in summary for summary in reads), reads


def test_a_deletion_awaits_its_partner_then_is_acknowledged_and_fulfilled(
    service: Service, make_key: Callable[..., tuple[str, str]], page: Page
) -> None:
    """A deletion for a customer whose data went to a payment processor shows the partner
    as awaited once identity is verified; recording its acknowledgement fulfils it."""
    customer = register_customer(service, "grace@example.org")
    with service.client() as api:
        partner = api.post(
            "/v1/partners",
            json={
                "name": "Acme Payments",
                "kind": "payment_processor",
                "contract_reference": "C-2026-4",
                "confidentiality_agreement": "NDA-17",
                "contract_valid_until": "2099-01-01",
            },
        ).json()["partner_id"]
        api.post(
            f"/v1/customers/{customer}/disclosures",
            json={
                "partner_id": partner,
                "basis": "service_provider",
                "categories": ["identity_contact"],
                "purpose": "account",
                "reference": "onboarding",
            },
        ).raise_for_status()
    _, officer = make_key("privacy_officer", "Grace")
    sign_in(page, service, officer)
    request_id = record_request(
        page, customer, "deletion", "Delete everything you hold about me.", "postal_mail"
    )
    verify_identity(page)
    awaited = page.locator(f'li.awaited[data-partner="{partner}"]')
    expect(awaited).to_contain_text("Acme Payments", timeout=60_000)
    expect(awaited).to_contain_text("acknowledgement awaited")
    expect(page.locator("[data-status]")).to_have_text("in progress")
    # the customer is erased already: the request ends fulfilled, it can no longer be denied
    expect(page.get_by_role("button", name="Deny the request")).to_have_count(0)
    snapshot(page, "console-request")
    # the partner's page lists what it still has to acknowledge
    page.goto(f"{service.base_url}/console/partners/{partner}")
    expect(page.get_by_role("link", name="deletion request")).to_be_visible()
    expect(page.get_by_text("valid today")).to_be_visible()
    page.get_by_role("link", name="deletion request").click()
    page.get_by_role("button", name="Record acknowledgement from Acme Payments").click()
    expect(page.locator(f'li.acknowledged[data-partner="{partner}"]')).to_be_visible()
    expect(page.locator("[data-status]")).to_have_text("fulfilled", timeout=60_000)
    # the receipt says what was erased; a deletion has no letter of an export
    expect(page.locator("[data-receipt]")).to_be_visible()
    expect(page.get_by_role("link", name="Open the receipt")).to_be_visible()
    expect(page.get_by_role("link", name="Open the letter")).to_have_count(0)
    # a closed request offers no action any more (the page reloaded on the new status)
    expect(page.get_by_role("button", name="Extend")).to_have_count(0)
    expect(page.get_by_role("button", name="Deny the request")).to_have_count(0)
    with service.client() as api:
        assert api.get(f"/v1/requests/{request_id}").json()["status"] == "fulfilled"
    # the customer's page says their data was erased, and shows none of it
    page.goto(f"{service.base_url}/console/customers/{customer}")
    page.get_by_label("Purpose").select_option("billing")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("[data-erased]")).to_contain_text("personal data was erased")
