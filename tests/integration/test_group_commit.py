"""Group commit: concurrent commands share transactions without losing or mixing anything."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from psycopg import sql

from rightsledger.bootstrap import Container
from rightsledger.domain.customer import Customer
from rightsledger.domain.ledger import (
    CommitUnavailableError,
    ConcurrentChangeError,
    OutcomeUnknownError,
)
from rightsledger.storage.group_commit import GroupCommit
from rightsledger.storage.sealing import SealingMapper
from tests import scenarios
from tests.conftest import EVIDENCE


def run_threads(count: int, body: Any) -> None:
    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)


def test_concurrent_commands_each_get_their_own_position(container: Container) -> None:
    """Eight writers on their own customers: every command lands once, in order per customer."""
    ledger = container.ledger
    assert isinstance(ledger.committer, GroupCommit)
    customers = scenarios.customers(ledger, 8)
    positions: list[int] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        for step in range(25):
            outcome = ledger.change_consent(
                customers[index],
                channel="email",
                granted=step % 2 == 0,
                evidence=EVIDENCE,
                actor="m",
            )
            with lock:
                positions.append(outcome.position)

    run_threads(8, writer)
    assert len(positions) == 200
    assert len(set(positions)) == 200
    assert scenarios.log_head(ledger) == 8 + 200
    for customer in customers:
        assert ledger.get_customer(customer).version == 26


def batch_sizes(
    container: Container,
    gather: float,
    monkeypatch: pytest.MonkeyPatch,
    *,
    pause: float = 0.0,
    seen: int = 1,
) -> list[int]:
    """Eight writers' 25 consent changes each through a committer gathering for ``gather``
    seconds under load: the size of every batch written; every command landed once. Each
    writer pauses ``pause`` seconds before each command (the time a command spends outside
    the ledger, in HTTP), and the committer starts out having seen batches of ``seen``."""
    ledger = container.ledger
    assert isinstance(ledger.committer, GroupCommit)
    ledger.committer.stop()
    committer = ledger.committer = GroupCommit(ledger, gather=gather)
    for _ in range(40):
        committer.wrote(seen)
    customers = scenarios.customers(ledger, 8)
    sizes: list[int] = []
    write = committer._write

    def counted(batch: list[Any]) -> None:
        sizes.append(len(batch))
        write(batch)

    monkeypatch.setattr(committer, "_write", counted)
    positions: list[int] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        for step in range(25):
            if pause:
                time.sleep(pause * (1 + index % 3))  # load shaping: arrivals spread out
            outcome = ledger.change_consent(
                customers[index], channel="sms", granted=step % 2 == 0, evidence=EVIDENCE, actor="m"
            )
            with lock:
                positions.append(outcome.position)

    run_threads(8, writer)
    assert len(set(positions)) == 200
    assert sum(sizes) == 200
    return sizes


def test_under_load_the_writer_waits_for_more_commands(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands arriving close together but not at once share transactions: eight writers
    whose commands come a few milliseconds apart, with a window of 50 ms, go in batches of
    about eight (every writer's next command), where taking only what is queued makes
    batches of one or two (the same load with no window: the second half)."""
    sizes = batch_sizes(container, 0.05, monkeypatch, pause=0.002, seen=8)
    assert sum(sizes) / len(sizes) >= 5, sizes


def test_without_a_window_the_same_load_goes_in_small_batches(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The baseline of the test above: with ``gather=0`` the same spread-out load makes
    batches of one or two, so the window is what made them large."""
    sizes = batch_sizes(container, 0.0, monkeypatch, pause=0.002, seen=8)
    assert sum(sizes) / len(sizes) < 3, sizes


def test_a_batch_that_has_every_writer_does_not_wait_out_its_window(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a window of a second, eight writers' 200 commands still go through: once a
    batch holds as many commands as the largest batch of late (every writer sending at
    once), it is written at once; most batches never wait out their window (each would
    cost a second)."""
    waited: list[float] = []
    complete_as_built = GroupCommit.complete

    def complete(self: GroupCommit, size: int) -> bool:
        full = complete_as_built(self, size)
        if full:
            waited.append(size)
        return full

    monkeypatch.setattr(GroupCommit, "complete", complete)
    sizes = batch_sizes(container, 1.0, monkeypatch)
    assert len(waited) >= len(sizes) / 2, (len(waited), sizes)


def test_conflicting_commands_are_decided_again_not_lost(container: Container) -> None:
    """Eight writers on one customer: conflicts are retried on fresh state; none is lost."""
    ledger = container.ledger
    customer = scenarios.customer(ledger, "Shared", actor="i")
    outcomes = {"ok": 0, "conflict": 0}
    lock = threading.Lock()

    def writer(index: int) -> None:
        for _ in range(10):
            try:
                ledger.log_activity(
                    customer,
                    kind="account",
                    reason="security",
                    detail=f"writer {index}",
                    occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
                    actor="s",
                )
                with lock:
                    outcomes["ok"] += 1
            except ConcurrentChangeError:
                with lock:
                    outcomes["conflict"] += 1

    run_threads(8, writer)
    assert outcomes["ok"] + outcomes["conflict"] == 80
    assert outcomes["ok"] > 0
    fresh = ledger.get_customer(customer)
    assert fresh.version == 1 + outcomes["ok"]
    assert len(fresh.activity) == outcomes["ok"]


def test_a_command_gets_an_error_not_a_hang_when_the_writer_is_stopped(
    container: Container,
) -> None:
    """Once the committer is stopped, a command is refused at once, and nothing is written."""
    ledger = container.ledger
    customer = scenarios.customer(ledger, "S", actor="i")
    head = ledger.recorder.max_notification_id()
    assert isinstance(ledger.committer, GroupCommit)
    ledger.committer.stop()
    with pytest.raises(CommitUnavailableError):
        ledger.change_consent(customer, channel="email", granted=True, evidence=EVIDENCE, actor="m")
    assert ledger.recorder.max_notification_id() == head
    ledger.committer = None  # the container closes a stopped committer without waiting


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_waiting_command_is_told_when_the_writer_thread_dies(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer thread that dies mid-write leaves no command waiting forever."""
    ledger = container.ledger
    customer = scenarios.customer(ledger, "D", actor="i")
    committer = ledger.committer
    assert isinstance(committer, GroupCommit)
    entered = threading.Event()

    def dying_save(*_: object, **__: object) -> None:
        entered.set()
        raise SystemExit  # ends the writer thread, as an interpreter shutdown would

    monkeypatch.setattr(ledger, "save", dying_save)
    monkeypatch.setattr(committer, "_write", lambda batch: ledger.save(batch))
    with pytest.raises((OutcomeUnknownError, CommitUnavailableError, SystemExit)):
        ledger.change_consent(customer, channel="email", granted=True, evidence=EVIDENCE, actor="m")
    assert entered.is_set()
    assert not committer.alive
    ledger.committer = None


class WatchedPool:
    """The vault's pool, noting the thread that takes each connection."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.threads: list[str] = []

    def connection(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.append(threading.current_thread().name)
        return self.pool.connection(*args, **kwargs)


def test_the_writer_spends_no_round_trip_on_keys(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keys a command's values are sealed under are fetched or created by the command's
    own thread before it queues for the group commit, so the writer, which every command
    waits on, never waits on the key vault (a new request's key included)."""
    ledger = container.ledger
    assert isinstance(ledger.committer, GroupCommit)
    customer = scenarios.customer(ledger, "Keys", actor="i")
    watched = WatchedPool(container.vault._pool)
    monkeypatch.setattr(container.vault, "_pool", watched)
    request = scenarios.submit(ledger, customer, "access", statement="my data, please")
    ledger.log_activity(
        customer,
        kind="account",
        reason="security",
        detail="sign-in",
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        actor="s",
    )
    assert watched.threads, "no key was fetched or created at all"
    assert "group-commit" not in watched.threads
    assert ledger.get_request(request).statement == "my data, please"


def test_a_key_expected_new_is_never_a_second_key(container: Container) -> None:
    """Asked for a key it expects to be new (a new request's), the vault still answers the
    key already there, or None once destroyed: a retried command never seals under a key
    other than the first one's, nor revives a destroyed one."""
    vault = container.vault
    customer, request = uuid4(), uuid4()
    first = vault.key(request, customer_id=customer, kind="personal", new=True)
    assert first is not None
    vault.clear_cache()
    assert vault.key(request, customer_id=customer, kind="personal", new=True) == first
    assert vault.destroy(customer, "personal") == 1
    assert vault.key(request, customer_id=customer, kind="personal", new=True) is None


def test_the_vault_returns_its_connections_as_it_took_them(container: Container) -> None:
    """Keys are read and created without a transaction (one round trip less), and every
    connection goes back to the shared pool in the mode the other stores expect."""
    vault = container.vault
    customer = uuid4()
    for _ in range(3):
        vault.key(uuid4(), customer_id=customer, kind="personal", new=True)
        vault.key(uuid4(), customer_id=customer, kind="personal")
    seen = []
    for _ in range(4):
        with vault._pool.connection() as conn:
            seen.append(conn.autocommit)
    assert seen == [False] * 4


def test_new_keys_exist_exactly_when_their_events_do(container: Container) -> None:
    """Requests submitted at once for the same customers conflict on the customer's stream
    and are decided again; each new request's key is written in its events' transaction, so
    every stored request has exactly one key, no refused attempt leaves one behind, and each
    statement reads back in a process holding no key."""
    ledger = container.ledger
    assert isinstance(ledger.committer, GroupCommit)
    customers = scenarios.customers(ledger, 4)
    kinds = ("access", "opt_out", "deletion")
    submitted: list[UUID] = []
    lock = threading.Lock()

    def submitter(index: int) -> None:
        for customer in customers:
            request = scenarios.submit(
                ledger, customer, kinds[index], statement=f"{kinds[index]} for {customer}"
            )
            with lock:
                submitted.append(request)

    run_threads(3, submitter)
    assert len(submitted) == 12
    schema = container.settings.database_schema
    with psycopg.connect(container.database.url) as conn:
        keyed = conn.execute(
            sql.SQL(
                "SELECT key_id FROM {} WHERE key_id <> customer_id AND kind = 'personal'"
            ).format(sql.Identifier(schema, "subject_keys"))
        ).fetchall()
    assert sorted(row[0] for row in keyed) == sorted(submitted)
    container.vault.clear_cache()
    ledger.clear_cache()
    for request in submitted:
        stored = ledger.get_request(request)
        assert stored.statement == f"{stored.request_type.value} for {stored.customer_id}"


def test_keys_reserved_for_a_command_that_fails_before_queueing_are_released(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When fetching one of a command's keys fails after others were reserved for it, the
    reservations are released: no key that was never stored stays answerable here."""
    ledger = container.ledger
    existing = scenarios.customer(ledger, "Old", actor="i")
    new = Customer.register(
        policy_version="v1", identity={"name": "New"}, account=None, payment_method=None, actor="i"
    )
    old = ledger.get_customer(existing)
    old.correct(category="identity_contact", changes={"name": "Older"}, actor="s")
    events = [*new.collect_events(), *old.collect_events()]

    def unreachable(*_: Any, **__: Any) -> Any:
        raise OperationalError("the store is away")

    monkeypatch.setattr(container.vault, "key", unreachable)
    mapper = ledger.mapper
    assert isinstance(mapper, SealingMapper)
    with pytest.raises(OperationalError):
        mapper.prepare(events)
    assert not container.vault._reserved
