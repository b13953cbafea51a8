"""What the browser tests do often: sign in through the form, read the page's CSRF token."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.service import Service


def sign_in(page: Page, running: Service, token: str) -> None:
    """Sign in through the sign-in form and land on the role's first page."""
    page.goto(f"{running.base_url}/console/sign-in")
    page.get_by_label("API key").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console/(?!sign-in)"))


def csrf_token(page: Page) -> str:
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token, "the page carries no CSRF token"
    return token


def snapshot(page: Page, name: str) -> None:
    """Save what the page shows now as ``build/screenshots/<name>.png`` (the documentation's
    pictures are taken from these)."""
    folder = Path(__file__).resolve().parents[2] / "build" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def find_customer(page: Page, kind: str, value: str, purpose: str) -> None:
    """Fill the lookup form of the page open now (find by ``kind``, for ``purpose``) and
    wait for the results of this very search."""
    page.get_by_label("Find by").select_option(kind)
    page.get_by_label("Email, phone or account reference").fill(value)
    page.get_by_label("Purpose of the look-up").select_option(purpose)
    page.get_by_role("button", name="Find", exact=True).click()
    searched = json.dumps(f"{kind}:{value.strip()}")
    expect(page.locator(f".lookup-results[data-searched={searched}]")).to_be_visible()
