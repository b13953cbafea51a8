"""Several containers on one store decide on its current state, and forget at once.

Each container has its own aggregate cache, key caches and invalidation listener, as
each process of a deployment does. (The same behaviours through HTTP on the
multi-process service are in tests/e2e/test_processes.py.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from psycopg import sql

from rightsledger.bootstrap import Container, build
from rightsledger.config import Settings
from rightsledger.domain.ledger import CommandSlot, CommandTag, current_command
from rightsledger.security.keys import Role
from rightsledger.storage.chain import ChainedRecorder
from rightsledger.storage.database import Database
from rightsledger.storage.idempotency import fingerprint
from rightsledger.storage.keyvault import PERSONAL
from tests import scenarios


@pytest.fixture
def other(settings: Settings, database: Database) -> Iterator[Container]:
    """A second container on the same schema: another process's caches."""
    built = build(settings, database=database)
    try:
        yield built
    finally:
        built.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition``; the seconds it took, or fail naming ``what``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - started


def register(container: Container, name: str = "Ada") -> UUID:
    return scenarios.billed_customer(container.ledger, name)


def acme_support(container: Container, valid_until: date) -> UUID:
    """A support provider whose contract runs until ``valid_until``."""
    return scenarios.contracted_partner(
        container.ledger,
        "Acme Support",
        contract="C-1",
        agreement="NDA-1",
        valid_until=valid_until,
        actor="privacy_officer:p",
    )


def test_an_acknowledgement_is_decided_on_the_request_as_another_process_left_it(
    container: Container, other: Container
) -> None:
    """A request cached here, then changed elsewhere: the next command here sees the change."""
    customer = register(container)
    partner = acme_support(container, date.today() + timedelta(days=365))
    request = scenarios.shared_then_deleted(
        container.ledger,
        customer,
        partner,
        statement="erase me",
        reference="ticket 1",
        actor="support:s",
    ).request
    assert container.ledger.get_request(request).status.value == "in_progress"  # cached here
    other.ledger.start_deletion(request, retain_for=timedelta(days=10), actor="worker")
    other.ledger.confirm_erasure(request, actor="worker")  # keys and exports destroyed
    container.ledger.acknowledge(request, partner_id=partner, actor="partner:acme")
    assert other.ledger.get_request(request).status.value == "fulfilled"


def test_a_renewed_contract_is_honoured_by_another_process_at_once(
    container: Container, other: Container
) -> None:
    """A partner loaded (and cached) here, renewed elsewhere: a disclosure here sees the renewal."""
    customer = register(container)
    partner = acme_support(container, date.today() - timedelta(days=1))
    with pytest.raises(Exception, match="contract"):
        container.ledger.disclose(
            customer,
            partner_id=partner,
            basis="service_provider",
            categories=["identity_contact"],
            purpose="support",
            reference="ticket 1",
            actor="support:s",
        )
    other.ledger.renew_partner_contract(
        partner,
        contract_reference="C-2",
        confidentiality_agreement="NDA-2",
        valid_until=date.today() + timedelta(days=365),
        actor="privacy_officer:p",
    )
    outcome = container.ledger.disclose(
        customer,
        partner_id=partner,
        basis="service_provider",
        categories=["identity_contact"],
        purpose="support",
        reference="ticket 2",
        actor="support:s",
    )
    assert outcome.position > 0


def test_a_revoked_key_is_refused_by_every_process_within_a_second(
    container: Container, other: Container
) -> None:
    """Revoked through one container, the key is refused by the other, which had cached it."""
    key_id, token = container.keys.create(Role.SUPPORT, "desk")
    assert other.keys.authenticate(token) is not None
    assert other.keys.cached(token) is not None  # cached in the other process
    assert container.keys.revoke(key_id)
    took = wait_until(
        lambda: other.keys.cached(token) is None and other.keys.authenticate(token) is None,
        1.0,
        "the other process refuses the revoked key",
    )
    assert took < 1.0


def test_destroyed_keys_are_forgotten_by_every_process(
    container: Container, other: Container
) -> None:
    """After one process destroys a customer's keys, the other no longer decrypts their data."""
    customer = register(container, "Grace")
    assert other.ledger.get_customer(customer).data["identity_contact"]["name"] == "Grace"
    container.vault.destroy(customer, PERSONAL)
    wait_until(
        lambda: other.ledger.get_customer(customer).data["identity_contact"]["name"] == "[erased]",
        1.0,
        "the other process shows the customer as erased",
    )
    before = other.ledger.customer_as_of(customer, container.ledger.clock())
    assert before is not None
    assert before.data["identity_contact"]["name"] == "[erased]"


def test_caches_are_bypassed_while_the_listener_is_down(
    container: Container, other: Container
) -> None:
    """With its listener's connection terminated, a process trusts no cached key."""
    key_id, token = container.keys.create(Role.SUPPORT, "desk")
    assert other.keys.authenticate(token) is not None
    other.invalidations.stop()  # as if its connection were gone
    assert not other.invalidations.healthy
    assert other.keys.cached(token) is None
    container.keys.revoke(key_id)
    assert other.keys.authenticate(token) is None


def count_events(container: Container) -> int:
    with psycopg.connect(container.database.url) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(container.settings.database_schema, "rightsledger_events")
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


def lose_the_first_acknowledgement(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[int], list[list[Any]]]:
    """The store's first insert commits, then its connection drops before the answer. Returns
    the positions that first insert committed, and the new keys each attempt wrote."""
    recorder = container.ledger.recorder
    assert isinstance(recorder, ChainedRecorder)
    real = recorder._insert_once
    lost: list[int] = []
    written: list[list[Any]] = []

    def commit_then_lose(stored_events: Any, marks: Any, keys: Any = ()) -> Any:
        written.append(list(keys))
        ids = real(stored_events, marks, keys)
        if not lost:
            lost.extend(ids)
            raise OperationalError("server closed the connection unexpectedly")
        return ids

    monkeypatch.setattr(recorder, "_insert_once", commit_then_lose)
    return lost, written


def test_a_commit_whose_acknowledgement_is_lost_is_not_applied_twice(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The insert commits, the connection drops before the answer: the retry finds its own
    events and answers with their positions instead of deciding the command again."""
    customer = register(container)
    before = count_events(container)
    lost, _ = lose_the_first_acknowledgement(container, monkeypatch)
    outcome = container.ledger.record_invoice(
        customer,
        amount="12.50",
        currency="EUR",
        status="issued",
        issued_at=container.ledger.clock(),
        actor="billing:b",
    )
    assert lost
    assert outcome.position == max(lost)
    assert count_events(container) == before + 1
    invoices = container.ledger.get_customer(customer).invoices
    assert list(invoices) == [outcome.id]


def test_a_request_whose_acknowledgement_is_lost_keeps_the_one_key_it_was_sealed_under(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new request's key is written in its events' transaction: when the commit's answer
    is lost, the retry finds the events, no second key is made or written, and the statement
    sealed under the key reads back, here and in a process holding no key (cache cleared)."""
    customer = register(container)
    before = count_events(container)
    lost, written = lose_the_first_acknowledgement(container, monkeypatch)
    outcome = container.ledger.submit_request(
        customer_id=customer,
        request_type="access",
        channel="email",
        jurisdiction="gdpr",
        statement="my data",
        actor="intake:t",
    )
    request_id = outcome.id
    assert outcome.position == max(lost)
    assert count_events(container) == before + 2  # Submitted, and the customer's record
    assert len(written) == 1  # the lost attempt committed: not written again
    assert [key.key_id for key in written[0]] == [request_id]
    with psycopg.connect(container.database.url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE key_id = %s").format(
                sql.Identifier(container.settings.database_schema, "subject_keys")
            ),
            (request_id,),
        ).fetchone()
    assert rows == (1,)
    container.vault.clear_cache()
    container.ledger.clear_cache()
    assert container.ledger.get_request(request_id).statement == "my data"


def test_a_tagged_command_retried_after_its_commit_is_answered_as_the_first(
    container: Container,
) -> None:
    """The same idempotency tag on a second attempt: no new events, the first result."""
    customer = register(container)
    store = container.idempotency
    print_ = fingerprint("POST", f"/v1/customers/{customer}/invoices", "", b"{}")
    claim = store.claim("caller", "key-1", print_)
    assert claim.tag is not None
    tag: CommandTag = claim.tag

    def invoice() -> Any:
        token = current_command.set(CommandSlot(tag))
        try:
            return container.ledger.record_invoice(
                customer,
                amount="9.99",
                currency="EUR",
                status="issued",
                issued_at=container.ledger.clock(),
                actor="billing:b",
            )
        finally:
            current_command.reset(token)

    first = invoice()
    events = count_events(container)
    second = invoice()  # e.g. the attempt died after committing and the client retried
    assert (second.id, second.position) == (first.id, first.position)
    assert count_events(container) == events
    assert store.position_of(tag) == first.position


def test_the_same_key_with_another_request_is_a_mismatch(container: Container) -> None:
    """A key is bound to the request it first came with."""
    store = container.idempotency
    first = store.claim("caller", "k", fingerprint("POST", "/v1/x", "", b"a"))
    assert first.tag is not None
    assert store.claim("caller", "k", fingerprint("POST", "/v1/x", "", b"b")).mismatch
    assert store.claim("caller", "k", fingerprint("POST", "/v1/x", "", b"a")).in_progress
    other_caller = store.claim("someone else", "k", fingerprint("POST", "/v1/x", "", b"b"))
    assert other_caller.tag is not None
