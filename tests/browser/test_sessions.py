"""Signing in and out of the console, and what ends a session."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.helpers import csrf_token, sign_in
from tests.e2e.service import Service, wait_until


def test_sign_in_holds_across_api_processes_and_sign_out_ends_it(
    start_service: Callable[..., Service],
    make_key: Callable[..., tuple[str, str]],
    page: Page,
    context: BrowserContext,
) -> None:
    """An API key signs in to a session cookie (HttpOnly, SameSite=Strict, not the key)
    that every API process honours: signed in on one service, the operator is signed in on
    a second API replica of the same store (and on a two-process service's workers);
    signing out ends it everywhere, and the old cookie opens nothing any more."""
    first = start_service("first", workers=2)
    replica = start_service("replica", run_followers=False)
    _, token = make_key("privacy_officer", "Grace")
    sign_in(page, first, token)
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    expect(page.locator("[data-role]")).to_have_text("privacy_officer")
    cookie = next(c for c in context.cookies() if c["name"] == "rl_console")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # served over plain HTTP here; Secure over TLS
    assert token not in cookie["value"]
    # cookies are per host, not per port: the replica gets the same cookie
    for base in (first.base_url, replica.base_url) * 4:
        page.goto(f"{base}/console/inbox")
        expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()  # on the replica
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    for base in (first.base_url, replica.base_url):
        page.goto(f"{base}/console/inbox")
        expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    # the cookie as it was before signing out no longer opens a page, in any process
    context.add_cookies([cookie])  # type: ignore[list-item]
    for base in (first.base_url, replica.base_url):
        page.goto(f"{base}/console/inbox")
        expect(page).to_have_url(re.compile(r"/console/sign-in$"))


def test_revoking_the_key_ends_its_session(
    service: Service, make_key: Callable[..., tuple[str, str]], page: Page
) -> None:
    """Revoking the key a session was opened with (rightsledger keys revoke, another
    process) ends the session at once: the open request page's next refresh (htmx) takes
    the browser to the sign-in page, and so does any page."""
    with service.client() as api:
        customer = api.post(
            "/v1/customers",
            json={"policy_version": "2026-01", "identity": {"name": "Ada", "email": "a@x.org"}},
        ).json()["customer_id"]
        request_id = api.post(
            "/v1/requests",
            json={"customer_id": customer, "type": "access", "channel": "email",
                  "jurisdiction": "gdpr", "statement": "Send me my data."},
        ).json()["request_id"]
    key_id, token = make_key("auditor", "Ida")
    sign_in(page, service, token)
    page.goto(f"{service.base_url}/console/requests/{request_id}")
    expect(page.locator("[data-status]")).to_have_text("open")
    revoked = service.spawn_cli("keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    page.wait_for_url(re.compile(r"/console/sign-in$"), timeout=20_000)
    page.goto(f"{service.base_url}/console/audit")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))


def test_a_wrong_key_is_refused_and_sign_in_needs_its_csrf_token(
    service: Service, make_key: Callable[..., tuple[str, str]], page: Page
) -> None:
    """A wrong key is refused on the sign-in page (401, no session); a sign-in posted
    without the form's CSRF token is refused (403) even with a valid key."""
    page.goto(f"{service.base_url}/console/sign-in")
    page.get_by_label("API key").fill("rlk_not_a_key_at_all_0000")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
    _, token = make_key("intake")
    answer = page.request.post(
        f"{service.base_url}/console/sign-in", form={"api_key": token}, max_redirects=0
    )
    assert answer.status == 403
    assert not any(c["name"] == "rl_console" for c in page.context.cookies())


def test_a_form_posted_without_the_csrf_token_is_refused(
    service: Service, make_key: Callable[..., tuple[str, str]], page: Page
) -> None:
    """A signed-in operator's state-changing request without the session's CSRF token (or
    with another) is refused with 403 and changes nothing."""
    with service.client() as api:
        customer = api.post(
            "/v1/customers",
            json={"policy_version": "2026-01", "identity": {"name": "Ada", "email": "a@x.org"}},
        ).json()["customer_id"]
        request_id = api.post(
            "/v1/requests",
            json={"customer_id": customer, "type": "access", "channel": "email",
                  "jurisdiction": "gdpr", "statement": "Send me my data."},
        ).json()["request_id"]
    _, token = make_key("privacy_officer")
    sign_in(page, service, token)
    url = f"{service.base_url}/console/requests/{request_id}/verify"
    form: dict[str, Any] = {"method": "id_document", "reference": "case 1"}
    assert page.request.post(url, form=form, max_redirects=0).status == 403
    wrong = {**form, "csrf_token": "x" * 43}
    assert page.request.post(url, form=wrong, max_redirects=0).status == 403
    header = {"X-CSRF-Token": "nope"}
    assert page.request.post(url, form=form, headers=header, max_redirects=0).status == 403
    with service.client() as api:
        assert api.get(f"/v1/requests/{request_id}").json()["status"] == "open"
    # the same form with the page's token goes through
    good = {**form, "csrf_token": csrf_token(page)}
    assert page.request.post(url, form=good, max_redirects=0).status == 303
    with service.client() as api:
        wait_until(
            lambda: api.get(f"/v1/requests/{request_id}").json()["status"] != "open",
            10,
            "the request to leave 'open'",
        )
    page.goto(f"{service.base_url}/console/requests/{request_id}")
