"""The console by keyboard alone, and on a narrow window."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.e2e.service import Service, wait_until


def test_signing_in_by_keyboard_and_reading_the_inbox_on_a_narrow_window(
    service: Service, make_key: Callable[..., tuple[str, str]], page: Page
) -> None:
    """The sign-in form works with the keyboard only (the key field has focus, Enter
    submits); the inbox's filters are labelled and reachable by Tab, and on a 375 px
    window nothing makes the page scroll sideways. Nothing the pages load is missing (the
    icon included)."""
    with service.client() as api:
        customer = api.post(
            "/v1/customers",
            json={"policy_version": "2026-01", "identity": {"name": "Ada", "email": "a@x.org"}},
        ).json()["customer_id"]
        submitted = api.post(
            "/v1/requests",
            json={"customer_id": customer, "type": "deletion", "channel": "web_form",
                  "jurisdiction": "ccpa", "statement": "Delete my data."},
        )
        submitted.raise_for_status()
        # the inbox is a view: wait until it holds the request before the page is drawn
        position = submitted.json()["position"]

        def listed() -> bool:
            return api.get("/v1/requests", params={"min_position": position}).status_code == 200

        wait_until(listed, 30, "the inbox view to hold the request")
    _, officer = make_key("privacy_officer", "Grace")
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{service.base_url}/console/sign-in")
    page.keyboard.type(officer)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    for label in ("Type", "Status", "Jurisdiction", "Overdue"):
        expect(page.get_by_label(label, exact=True)).to_be_visible()
    page.get_by_label("Type", exact=True).focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Status", exact=True)).to_be_focused()
    expect(page.locator("table.inbox tbody tr")).to_have_count(1)
    wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0, f"the page is {wide} px wider than a 375 px window"
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert icon is not None
    assert page.request.get(f"{service.base_url}{icon}").ok
    assert not missing, f"the pages asked for what is not there: {missing}"
