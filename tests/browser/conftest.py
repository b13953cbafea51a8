"""The console in a real browser: Playwright driving the operating system's Chromium.

Chromium comes from the system's packages (Debian's ``chromium``, which ``make install``
installs when it may), never from a browser download: its path is passed to Playwright as
``executable_path`` (``RIGHTSLEDGER_CHROMIUM`` overrides ``/usr/bin/chromium``). When it is
missing the tests fail with one line naming the package. Each test runs the real service
(``tests/e2e/service.py``) and leaves a screenshot of its last page in ``build/screenshots``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)
from psycopg_pool import ConnectionPool

from rightsledger.security.keys import ApiKeyStore, Role
from rightsledger.storage.database import Database
from tests.e2e.conftest import service, start_service  # noqa: F401 - fixtures used here

CHROMIUM = Path(os.environ.get("RIGHTSLEDGER_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
WIDE: ViewportSize = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"browser tests need Chromium at {CHROMIUM}: install the Debian package 'chromium'"
            " (apt-get install chromium, or make install as root)",
            pytrace=False,
        )
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # --no-sandbox: the tests may run as root (CI does), where Chromium's sandbox refuses
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport=WIDE, accept_downloads=True)
    made.set_default_timeout(15_000)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page; after the test, a screenshot of whatever it shows last (the last tab opened),
    and no page of the test may have broken its Content-Security-Policy."""
    refused: list[str] = []

    def note(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(f"{message.page.url if message.page else '?'}: {message.text}")

    context.on("console", note)
    opened = context.new_page()
    try:
        yield opened
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        last = context.pages[-1] if context.pages else opened
        if not last.is_closed():
            last.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    assert not refused, f"the page broke its Content-Security-Policy: {refused}"


@pytest.fixture
def make_key(database: Database, schema: str) -> Iterator[Any]:
    """``make_key(role, name)`` -> (key id, token): a fresh API key on the test's schema."""
    with ConnectionPool(database.url, min_size=1, max_size=1, open=True) as pool:
        store = ApiKeyStore(pool, schema)

        def make(role: Role | str, name: str | None = None, **extra: Any) -> tuple[str, str]:
            role = Role(role)
            key_id, token = store.create(role, name or f"{role.value}-operator", **extra)
            return str(key_id), token

        yield make
