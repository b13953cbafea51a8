"""Failed authentications behind a proxy, on the service as ``serve`` runs it.

Every client here connects over loopback from an address of its own (127.0.0.2, .3, ...), so
the service sees distinct peers. Proxy headers are believed only from the addresses in
``RIGHTSLEDGER_TRUSTED_PROXIES`` (none by default).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.conftest import ADMIN_KEY
from tests.e2e.service import Service

pytestmark = pytest.mark.e2e

ALLOWED = 10


@contextmanager
def client_from(service: Service, address: str) -> Iterator[httpx.Client]:
    """An HTTP client whose connections come from ``address`` (a loopback address)."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=service.base_url, transport=transport, timeout=30.0) as http:
        yield http


def wrong_key() -> str:
    return "rlk_" + secrets.token_urlsafe(32)


def call(http: httpx.Client, key: str, forwarded_for: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return http.get("/v1/audit/events", params={"limit": 1}, headers=headers).status_code


def recorded_clients(service: Service) -> set[str]:
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL("SELECT DISTINCT client FROM {}").format(
                sql.Identifier(service.schema, "auth_failures")
            )
        ).fetchall()
    return {row[0] for row in rows}


def test_untrusted_forwarded_for_is_ignored(start_service: Callable[..., Service]) -> None:
    """With no trusted proxy, X-Forwarded-For names nobody, not even from 127.0.0.1: 300
    guesses with a rotating X-Forwarded-For meet 429 after the allowed ten, and the first
    ten, forged in another address's name, count against the sender's own address, so the
    named address keeps working with a valid key and is not limited for its own mistakes."""
    service = start_service("api", run_followers=False)
    with client_from(service, "127.0.0.1") as guesser:
        answers = [
            call(guesser, wrong_key(), forwarded_for="127.0.0.3")
            if i < ALLOWED
            else call(guesser, wrong_key(), forwarded_for=f"10.9.{i // 250}.{i % 250 + 1}")
            for i in range(300)
        ]
        refused = guesser.get(
            "/v1/audit/events", headers={"Authorization": f"Bearer {wrong_key()}"}
        )
    assert answers[:ALLOWED] == [401] * ALLOWED
    assert set(answers[ALLOWED:]) == {429}, "a guess after the limit was looked up"
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(refused.headers["Retry-After"]) <= 61

    with client_from(service, "127.0.0.3") as victim:
        assert call(victim, ADMIN_KEY) == 200
        assert call(victim, wrong_key()) == 401  # its own first failure, not the forged ten
    assert recorded_clients(service) == {"127.0.0.1", "127.0.0.3"}


def test_trusted_proxy_names_the_client(start_service: Callable[..., Service]) -> None:
    """Behind a trusted proxy the limit falls on the address it reports: one client's
    failures limit that client only; a key that already worked from a limited address goes
    on working there while new guesses from it meet 429; a wrong key retried from many
    addresses is limited itself; and X-Forwarded-For from an untrusted peer is ignored."""
    service = start_service(
        "api", run_followers=False, env={"RIGHTSLEDGER_TRUSTED_PROXIES": "127.0.0.1"}
    )
    with client_from(service, "127.0.0.1") as proxy:
        # a colleague's key works from 10.1.1.1 before anyone fails there
        assert call(proxy, ADMIN_KEY, forwarded_for="10.1.1.1") == 200
        for _ in range(ALLOWED):
            assert call(proxy, wrong_key(), forwarded_for="10.1.1.1") == 401
        assert call(proxy, wrong_key(), forwarded_for="10.1.1.1") == 429
        assert call(proxy, ADMIN_KEY, forwarded_for="10.1.1.1") == 200  # worked there before
        assert call(proxy, ADMIN_KEY, forwarded_for="10.1.1.2") == 200  # another client
        assert call(proxy, wrong_key(), forwarded_for="10.1.1.2") == 401
        # a client that prepends an address of its choosing is still named by the proxy
        assert call(proxy, wrong_key(), forwarded_for="10.1.1.5, 10.1.1.1") == 429

        # one wrong key retried from eleven addresses is refused from a twelfth
        stale = wrong_key()
        for i in range(ALLOWED):
            assert call(proxy, stale, forwarded_for=f"10.2.0.{i + 1}") == 401
        assert call(proxy, stale, forwarded_for="10.2.0.99") == 429
        assert call(proxy, wrong_key(), forwarded_for="10.2.0.99") == 401

    with client_from(service, "127.0.0.2") as untrusted:
        for _ in range(ALLOWED):
            assert call(untrusted, wrong_key(), forwarded_for="10.3.3.3") == 401
        assert call(untrusted, wrong_key(), forwarded_for="10.3.3.4") == 429
    with client_from(service, "127.0.0.1") as proxy:
        assert call(proxy, wrong_key(), forwarded_for="10.3.3.3") == 401
    clients = recorded_clients(service)
    assert "127.0.0.2" in clients
    assert "10.3.3.3" in clients  # only from the proxy's one failure in its name
    assert "127.0.0.1" not in clients
