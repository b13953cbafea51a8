"""The partners page: every partner with its contract's validity and what it still owes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.helpers import sign_in
from tests.e2e.service import Service, wait_until


def test_the_partners_list_shows_validity_and_an_outstanding_acknowledgement_until_it_is_recorded(
    service: Service, make_key: Callable[..., tuple[str, str]], page: Page
) -> None:
    """A privacy officer's partners list shows each partner's contract validity and the
    deletion notice a partner has still to acknowledge (from the notifications route);
    recording the acknowledgement there removes it from the list and fulfils the deletion.
    An auditor sees the list and the validity, not the notifications."""
    with service.client() as api:
        acme = api.post(
            "/v1/partners",
            json={"name": "Acme Payments", "kind": "payment_processor",
                  "contract_reference": "C-2026-4", "confidentiality_agreement": "NDA-17",
                  "contract_valid_until": "2099-01-01"},
        ).json()["partner_id"]
        police = api.post(
            "/v1/partners", json={"name": "Police", "kind": "law_enforcement"}
        ).json()["partner_id"]
        customer = api.post(
            "/v1/customers",
            json={"policy_version": "2026-01",
                  "identity": {"name": "Ada Lovelace", "email": "ada@example.org"}},
        ).json()["customer_id"]
        api.post(
            f"/v1/customers/{customer}/disclosures",
            json={"partner_id": acme, "basis": "service_provider",
                  "categories": ["identity_contact"], "purpose": "account",
                  "reference": "onboarding"},
        ).raise_for_status()
        request_id = api.post(
            "/v1/requests",
            json={"customer_id": customer, "type": "deletion", "channel": "postal_mail",
                  "jurisdiction": "gdpr", "statement": "Delete my data."},
        ).json()["request_id"]
        api.post(
            f"/v1/requests/{request_id}/verify",
            json={"method": "id_document", "reference": "passport seen"},
        ).raise_for_status()

        def awaited() -> list[Any] | None:
            answer = api.get(
                f"/v1/partners/{acme}/notifications", params={"status": "awaiting"}
            )
            # 404 until the partners view has the partner
            items: list[Any] = answer.json()["items"] if answer.status_code == 200 else []
            return items or None

        wait_until(awaited, 60, "the partner is notified of the deletion")

    _, officer = make_key("privacy_officer", "Grace")
    sign_in(page, service, officer)
    page.get_by_role("navigation", name="Console pages").get_by_role(
        "link", name="Partners"
    ).click()
    row = page.locator(f'tr[data-partner="{acme}"]')
    expect(row).to_contain_text("Acme Payments")
    expect(row).to_contain_text("2099-01-01")
    expect(row.locator("[data-validity]")).to_have_text("valid")
    expect(row.locator("[data-outstanding]")).to_have_attribute("data-outstanding", "1")
    owed = row.locator(f'li[data-request="{request_id}"]')
    expect(owed).to_contain_text("deletion request")
    expect(page.locator(f'tr[data-partner="{police}"] [data-outstanding]')).to_have_text("none")
    expect(page.locator(f'tr[data-partner="{police}"] [data-validity]')).to_have_text("no contract")

    owed.get_by_role("button", name="Record acknowledgement of request").click()
    expect(page.get_by_role("status")).to_contain_text("acknowledged")
    expect(row.locator("[data-outstanding]")).to_have_attribute("data-outstanding", "0")
    expect(row.locator(f'li[data-request="{request_id}"]')).to_have_count(0)
    with service.client() as api:
        wait_until(
            lambda: api.get(f"/v1/requests/{request_id}").json()["status"] == "fulfilled",
            60,
            "the deletion is fulfilled",
        )
    # the partner's own page lists the notice as acknowledged
    row.get_by_role("link", name="Acme Payments").click()
    expect(page.locator(f'tr[data-notice="{request_id}"]')).to_contain_text("acknowledged")
    expect(page.get_by_text("None.")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    _, auditor = make_key("auditor", "Ida")
    sign_in(page, service, auditor)
    page.get_by_role("navigation", name="Console pages").get_by_role(
        "link", name="Partners"
    ).click()
    expect(page.locator(f'tr[data-partner="{acme}"] [data-validity]')).to_have_text("valid")
    expect(page.get_by_role("columnheader", name="Acknowledgements outstanding")).to_have_count(0)
    expect(page.get_by_role("button", name="Record acknowledgement of request")).to_have_count(0)
