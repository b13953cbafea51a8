from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from rightsledger.api.app import create_app
from rightsledger.bootstrap import Container, build
from rightsledger.security.keys import Role
from rightsledger.storage.database import Database
from tests.conftest import ADMIN_KEY, make_settings
from tests.e2e.service import Service


@pytest.fixture
def container(database: Database, schema: str) -> Iterator[Container]:
    settings = make_settings(
        database, schema, run_projections=True, max_body_bytes=64 * 1024, read_wait_seconds=0.5
    )
    built = build(settings, database=database)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container)) as test_client:
        yield test_client


@pytest.fixture
def working(database: Database, schema: str) -> Iterator[Container]:
    """The API's container with the projection worker and the request workers in its process."""
    settings = make_settings(database, schema, run_projections=True, run_workers=True)
    built = build(settings, database=database)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def api(working: Container) -> Iterator[TestClient]:
    """The API on :func:`working`: commands are carried out as they are in production."""
    with TestClient(create_app(working)) as client:
        yield client


@pytest.fixture
def headers(container: Container) -> Callable[[Role | str], dict[str, str]]:
    """Authorization headers for a fresh key of the given role ('admin' uses the seeded key)."""
    made: dict[str, str] = {}

    def for_role(role: Role | str) -> dict[str, str]:
        role = Role(role)
        if role is Role.ADMIN:
            return {"Authorization": f"Bearer {ADMIN_KEY}"}
        if role.value not in made:
            partner = None
            if role is Role.PARTNER:
                import uuid

                partner = uuid.uuid4()
            _, token = container.keys.create(role, f"test-{role.value}", partner_id=partner)
            made[role.value] = token
        return {"Authorization": f"Bearer {made[role.value]}"}

    return for_role


@pytest.fixture
def admin(headers: Callable[[Role | str], dict[str, str]]) -> dict[str, str]:
    return headers(Role.ADMIN)


def customer_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "policy_version": "2026-01",
        "identity": {
            "name": "Ada Lovelace",
            "email": "ada@example.org",
            "phone": "+44 20 7946 0000",
            "postal_address": "12 St James's Square, London",
        },
        "account": {"plan": "fibre-500", "activated_at": "2026-01-15T09:00:00Z"},
        "payment_method": {"processor": "Acme Payments", "token": "tok_abc123"},
    }
    body.update(overrides)
    return body


def request_body(customer: str, **overrides: Any) -> dict[str, Any]:
    """The body of ``POST /v1/requests``: an access request by email under the GDPR."""
    body: dict[str, Any] = {
        "customer_id": customer,
        "type": "access",
        "channel": "email",
        "jurisdiction": "gdpr",
        "statement": "Please send me a copy of my data.",
    }
    body.update(overrides)
    return body


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that has ``status``; otherwise fail naming the URL."""
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    return response.json()


EVIDENCE = {
    "method": "web_form_checkbox",
    "wording_version": "mkt-v3",
    "captured_at": "2026-11-01T10:00:00Z",
}


# -- the service as `make run` starts it: `python -m rightsledger serve` with its followers ----


@pytest.fixture
def start_service(
    database: Database, schema: str, tmp_path: Path
) -> Iterator[Callable[..., Service]]:
    """Start `rightsledger serve` processes on the test's schema: ``start_service(name, **kw)``
    takes :class:`tests.e2e.service.Service`'s keywords (``workers``, ``run_followers``,
    ``env``). All are stopped afterwards, and no process of theirs may survive."""
    started: list[Service] = []

    def start(name: str = "service", **options: Any) -> Service:
        service = Service(database.url, schema, tmp_path / name, name=name, **options)
        started.append(service)
        return service.start()

    try:
        yield start
    finally:
        left: list[str] = []
        for service in reversed(started):
            left += [f"{service.name}: {p.pid} {p.command}" for p in service.stop()]
        assert not left, "processes survived stop():\n  " + "\n  ".join(left)


@pytest.fixture
def service(start_service: Callable[..., Service]) -> Service:
    """One `rightsledger serve` (API, projection worker, request workers, relay, broker)."""
    return start_service("service")
