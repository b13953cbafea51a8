from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rightsledger.api.app import create_app
from rightsledger.bootstrap import Container, build
from rightsledger.security.keys import Role
from rightsledger.storage.database import Database
from tests.conftest import ADMIN_KEY, make_settings


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


EVIDENCE = {
    "method": "web_form_checkbox",
    "wording_version": "mkt-v3",
    "captured_at": "2026-11-01T10:00:00Z",
}
