"""The auditor's console: the trail and chain verification, and no action of any kind."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from tests.browser.helpers import csrf_token, sign_in
from tests.e2e.service import Service


def test_an_auditor_sees_the_trail_and_verifies_the_chain_but_cannot_act(
    service: Service, make_key: Callable[..., tuple[str, str]], page: Page
) -> None:
    """An auditor reads the whole trail and a customer's, runs chain verification and sees
    it intact, sees the followers' positions, and gets no action button on a request; a
    forged POST with the auditor's own session and CSRF token is refused (403) and the
    request stays as it was; the auditor is offered no customer lookup and a forged one is
    refused too."""
    with service.client() as api:
        customer = api.post(
            "/v1/customers",
            json={"policy_version": "2026-01", "identity": {"name": "Ada", "email": "a@x.org"}},
        ).json()["customer_id"]
        accepted = api.post(
            "/v1/requests",
            json={"customer_id": customer, "type": "access", "channel": "email",
                  "jurisdiction": "gdpr", "statement": "Send me my data."},
        ).json()
    request_id = accepted["request_id"]
    _, auditor = make_key("auditor", "Ida")
    sign_in(page, service, auditor)
    expect(page.get_by_role("link", name="Record a request")).to_have_count(0)
    page.get_by_role("link", name="Audit").click()
    trail = page.locator("table.trail")
    expect(trail).to_contain_text("Customer.Registered", timeout=20_000)
    expect(trail).to_contain_text("DataRightsRequest.Submitted")
    expect(page.locator('tr[data-follower="projections"]')).to_be_visible()
    page.get_by_role("button", name="Verify the chain").click()
    result = page.locator(".verification")
    expect(result).to_have_attribute("data-ok", "true")
    expect(result).to_contain_text("Chain intact")
    page.get_by_label("Customer id (empty: everyone)").fill(customer)
    page.get_by_role("button", name="Show the trail").click()
    expect(page.get_by_role("heading", name=re.compile("Trail of customer"))).to_be_visible()
    expect(trail).to_contain_text("Customer.Registered")
    # the customer as the log had them a moment ago, replayed (the read is recorded)
    moment = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
    page.get_by_label("As of (UTC)").fill(moment)
    expect(page.get_by_text("Read for the legal purpose")).to_be_visible()  # the one it takes
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("pre.state")).to_contain_text('"policy_version": "2026-01"')

    page.goto(f"{service.base_url}/console/requests/{request_id}")
    expect(page.locator("[data-status]")).to_have_text("open")
    for name in ("Verify identity", "Extend", "Deny the request"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    forged = page.request.post(
        f"{service.base_url}/console/requests/{request_id}/verify",
        form={"method": "id_document", "reference": "forged", "csrf_token": csrf_token(page)},
        max_redirects=0,
    )
    assert forged.status == 403
    assert "may not verify identity" in forged.text()
    with service.client() as api:
        assert api.get(f"/v1/requests/{request_id}").json()["status"] == "open"
    # the auditor is offered no lookup, and a forged one is refused and reads nothing
    page.get_by_role("navigation", name="Console pages").get_by_role(
        "link", name="Inbox"
    ).click()
    expect(page.get_by_label("Email, phone or account reference")).to_have_count(0)
    forged = page.request.post(
        f"{service.base_url}/console/customers/lookup",
        form={"kind": "email", "value": "a@x.org", "purpose": "legal",
              "csrf_token": csrf_token(page)},
        max_redirects=0,
    )
    assert forged.status == 403
    assert "may not find customers" in forged.text()
    assert "a@x.org" not in forged.text()
    page.get_by_role("link", name="Audit").click()
    page.get_by_role("button", name="Verify the chain").click()
    expect(page.locator(".verification")).to_contain_text("Chain intact")
