"""The customer page: a purpose first, then only what is held for it, and the look logged."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.browser.helpers import find_customer, sign_in, snapshot
from tests.e2e.service import Service

EVIDENCE = {
    "method": "web_form_checkbox",
    "wording_version": "mkt-v3",
    "captured_at": "2026-11-01T10:00:00Z",
}


def test_the_customer_page_shows_data_for_the_declared_purpose_and_logs_the_look(
    service: Service, make_key: Callable[..., tuple[str, str]], page: Page
) -> None:
    """A privacy officer opens a customer, declares a purpose, and sees the categories held
    for it, consents with their history and evidence, disclosures, and the access log with
    this very look in it; before the purpose nothing personal is on the page."""
    with service.client() as api:
        customer = api.post(
            "/v1/customers",
            json={
                "policy_version": "2026-01",
                "identity": {"name": "Ada Lovelace", "email": "ada@example.org"},
                "account": {"plan": "fibre-500"},
                "payment_method": {"processor": "Acme Payments", "token": "tok_123"},
            },
        ).json()["customer_id"]
        api.post(
            f"/v1/customers/{customer}/consents",
            json={"channel": "email", "granted": True, "evidence": EVIDENCE},
        ).raise_for_status()
        police = api.post(
            "/v1/partners", json={"name": "Police", "kind": "law_enforcement"}
        ).json()["partner_id"]
        api.post(
            f"/v1/customers/{customer}/disclosures",
            json={"partner_id": police, "basis": "legal_obligation",
                  "categories": ["identity_contact"], "purpose": "legal",
                  "reference": "warrant 9"},
        ).raise_for_status()
    _, officer = make_key("privacy_officer", "Grace")
    sign_in(page, service, officer)
    pages = page.get_by_role("navigation", name="Console pages")
    pages.get_by_role("link", name="Customers").click()
    page.get_by_label("Customer id").fill(customer)
    page.get_by_role("button", name="Open").click()
    expect(page.get_by_role("heading", name="Why are you looking?")).to_be_visible()
    expect(page.get_by_text("Ada Lovelace")).to_have_count(0)

    page.get_by_label("Purpose").select_option("account")
    page.get_by_role("button", name="Show").click()
    expect(page.locator('[data-category="identity_contact"]')).to_be_visible(timeout=20_000)
    expect(page.get_by_text("Ada Lovelace")).to_be_visible()
    # the payment method is held for billing, not for account
    expect(page.locator('[data-category="payment_method"]')).to_have_count(0)
    expect(page.locator('[data-consent="email"]')).to_contain_text("granted")
    expect(page.get_by_text("wording_version: mkt-v3")).to_be_visible()
    expect(page.get_by_role("link", name="Police")).to_be_visible()
    access_log = page.locator("table.accesses")
    expect(access_log).to_contain_text("privacy_officer:Grace")
    expect(access_log.locator("tbody tr").first).to_contain_text("profile")
    expect(access_log.locator("tbody tr").first).to_contain_text("account")
    snapshot(page, "console-customer")

    page.get_by_label("Purpose").select_option("billing")
    page.get_by_role("button", name="Show").click()
    expect(page.locator('[data-category="payment_method"]')).to_be_visible()
    expect(page.locator("table.accesses tbody tr")).to_have_count(2)


def test_a_customer_is_found_by_email_and_by_phone_and_the_lookup_is_in_their_access_log(
    service: Service, make_key: Callable[..., tuple[str, str]], page: Page
) -> None:
    """A privacy officer finds a customer by email written in another case (the blind index
    normalises it), for a declared purpose; only that customer is answered, the look-up is
    in their access log, a miss says so; from the inbox, the phone in another notation finds
    the same customer and narrows the inbox to their requests."""
    with service.client() as api:
        ada, grace = (
            api.post(
                "/v1/customers",
                json={
                    "policy_version": "2026-01",
                    "identity": {"name": name, "email": email, "phone": phone},
                    "account": {"plan": "fibre-500"},
                },
            ).json()["customer_id"]
            for name, email, phone in (
                ("Ada Lovelace", "ada@example.org", "+44 20 7946 0000"),
                ("Grace Hopper", "grace@example.org", "+1 202 555 0100"),
            )
        )
        requests = {
            customer: api.post(
                "/v1/requests",
                json={"customer_id": customer, "type": "access", "channel": "email",
                      "jurisdiction": "gdpr", "statement": "A copy, please."},
            ).json()["request_id"]
            for customer in (ada, grace)
        }
    _, officer = make_key("privacy_officer", "Grace")
    sign_in(page, service, officer)
    page.get_by_role("navigation", name="Console pages").get_by_role(
        "link", name="Customers"
    ).click()
    find_customer(page, "email", "ADA@Example.org", "account")
    results = page.locator(".lookup-results")
    expect(results).to_contain_text("1 customer found")
    expect(results.locator(f'li[data-customer="{ada}"]')).to_contain_text("Ada Lovelace")
    expect(results.locator(f'li[data-customer="{grace}"]')).to_have_count(0)

    find_customer(page, "email", "nobody@example.org", "account")
    expect(page.get_by_text("No customer holds that email.")).to_be_visible()
    find_customer(page, "email", "ada@example.org", "account")
    page.locator(f'li[data-customer="{ada}"]').get_by_role(
        "link", name="Open the customer"
    ).click()
    page.get_by_label("Purpose").select_option("legal")
    page.get_by_role("button", name="Show").click()
    lookups = page.locator("table.accesses tbody tr", has_text="lookup")
    expect(lookups).to_have_count(2)
    expect(lookups.first).to_contain_text("privacy_officer:Grace")
    expect(lookups.first).to_contain_text("account")

    page.get_by_role("navigation", name="Console pages").get_by_role(
        "link", name="Inbox"
    ).click()
    expect(page.locator("table.inbox tbody tr")).to_have_count(2)
    find_customer(page, "phone", "0044 20 7946-0000", "account")
    page.locator(f'li[data-customer="{ada}"]').get_by_role(
        "link", name="Their open requests"
    ).click()
    expect(page.locator("[data-filter=customer]")).to_contain_text(ada)
    expect(page.locator("table.inbox tbody tr")).to_have_count(1)
    expect(page.locator(f'tr[data-request="{requests[ada]}"]')).to_be_visible()
