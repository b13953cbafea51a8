"""The console's pure parts: inbox cursors, days-left tags, roles read from the API, and the
security headers of its answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient

from rightsledger.api import letters
from rightsledger.api.console.gates import may, roles_of
from rightsledger.api.console.router import CONSOLE_POLICY, ConsoleRoute, days_left, nav
from rightsledger.api.routers import audit, partners, requests
from rightsledger.security.keys import Principal, Role

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("due", "text", "level"),
    [
        (NOW + timedelta(days=20), "20 days left", "ok"),
        (NOW + timedelta(days=5), "5 days left", "due-soon"),
        (NOW + timedelta(hours=2), "due today", "due-soon"),
        (NOW - timedelta(hours=2), "1 day overdue", "overdue"),
        (NOW - timedelta(days=3), "3 days overdue", "overdue"),
    ],
)
def test_days_left_marks_overdue_and_due_soon(due: datetime, text: str, level: str) -> None:
    """The days-left tag counts calendar days and marks what is late or due within the
    reminder window."""
    assert days_left(due, NOW, remind_before=7) == {"text": text, "level": level}


def principal(role: Role) -> Principal:
    return Principal(key_id=uuid4(), name="someone", role=role)


def test_the_console_takes_its_roles_from_the_api_routes() -> None:
    """Who may verify, acknowledge or read the trail is what the API's gates say."""
    assert roles_of(requests.verify_request) == {Role.PRIVACY_OFFICER, Role.ADMIN}
    assert roles_of(partners.acknowledge) == {Role.PARTNER, Role.PRIVACY_OFFICER, Role.ADMIN}
    assert may(principal(Role.AUDITOR), audit.verify_history)
    assert not may(principal(Role.AUDITOR), requests.verify_request)
    with pytest.raises(LookupError):
        roles_of(days_left)


def test_pages_a_role_may_not_use_are_not_in_its_navigation() -> None:
    """An auditor is not offered the intake form; intake is not offered the audit page."""
    auditor = [label for _, label in nav(principal(Role.AUDITOR))]
    intake = [label for _, label in nav(principal(Role.INTAKE))]
    assert "Record a request" not in auditor
    assert "Audit" in auditor
    assert "Record a request" in intake
    assert "Audit" not in intake
    assert nav(principal(Role.PARTNER)) == []


def _app_with(answer: Response) -> TestClient:
    app = FastAPI()
    console = APIRouter(route_class=ConsoleRoute)

    @console.get("/page")
    def page() -> Response:
        return answer

    app.include_router(console)
    return TestClient(app)


def test_console_pages_carry_the_console_policy() -> None:
    """A console answer gets the console's strict Content-Security-Policy (own scripts and
    styles only, framed by nothing) and its other security headers."""
    answer = _app_with(HTMLResponse("<p>page</p>")).get("/page")
    assert answer.headers["content-security-policy"] == CONSOLE_POLICY
    assert "frame-ancestors 'none'" in CONSOLE_POLICY
    assert "'unsafe-inline'" not in CONSOLE_POLICY
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_letter_keeps_its_own_policy_through_the_console() -> None:
    """A letter answered through a console route keeps the letter's policy (it loads and
    runs nothing), not the console's."""
    letter = letters.letter("receipt.html", None, request_id=uuid4(), receipt=None)
    assert _app_with(letter).get("/page").headers["content-security-policy"] == (
        letters.LETTER_POLICY
    )
