"""Followers killed mid-work and restarted lose, duplicate and leave half-done nothing.

The projection worker killed with SIGKILL mid-stream; the request worker crashing between
any two steps of a deletion (an exception from a monkeypatched step, then a fresh process
handles the log again): the end is always the erasure recorded and carried out, or neither.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from rightsledger.bootstrap import Container, build
from rightsledger.config import Settings
from rightsledger.domain.errors import IllegalTransitionError
from rightsledger.projections.worker import VIEW_CLASSES
from rightsledger.storage.database import Database
from rightsledger.storage.sealing import ERASED
from rightsledger.workers.requests import RequestWorker
from tests import scenarios
from tests.conftest import spawn


def start_worker(container: Container) -> subprocess.Popen[bytes]:
    return spawn(container, "projections", "run")


def audit_positions(container: Container) -> list[int]:
    with psycopg.connect(container.database.url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT position FROM {} ORDER BY position").format(
                sql.Identifier(container.settings.database_schema, "audit_trail")
            )
        ).fetchall()
    return [row[0] for row in rows]


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    container: Container,
) -> None:
    """Commands keep arriving while the worker is killed with SIGKILL and started again."""
    ledger = container.ledger
    customers = scenarios.customers(ledger, 20)
    done = threading.Event()

    def traffic() -> None:
        granted = dict.fromkeys(customers, False)
        for round_ in range(40):
            for customer in customers:
                scenarios.consent(
                    ledger, customer, "email", granted=not granted[customer], actor=f"m:{round_}"
                )
                granted[customer] = not granted[customer]
        done.set()

    writer = threading.Thread(target=traffic)
    first = start_worker(container)
    deadline = time.monotonic() + 60
    while len(audit_positions(container)) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    writer.start()
    while len(audit_positions(container)) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = len(audit_positions(container))
    assert killed_at >= 200
    second = start_worker(container)
    try:
        writer.join(120)
        assert done.is_set()
        head = scenarios.log_head(ledger)
        assert head == 20 + 40 * 20
        while time.monotonic() < deadline + 60:
            if container.views.positions() == dict.fromkeys(VIEW_CLASSES, head):
                break
            time.sleep(0.05)
    finally:
        second.terminate()
        second.wait(10)
    assert killed_at < head, "the worker should have been killed before the end of the stream"
    assert audit_positions(container) == list(range(1, head + 1))
    history_rows = 0
    for customer in customers:
        history, _ = container.views.consent_ledger.history(customer)
        assert [h["version"] for h in history] == list(range(2, 42))
        history_rows += len(history)
        profile, _ = container.views.customer_profile.get(customer)
        assert profile is not None
        assert profile["version"] == 41
        assert profile["consents"]["email"]["granted"] is False
    assert history_rows == 800


# ------------------------------------------------------------------ the request worker


class CrashError(Exception):
    """The worker process dies here."""


@pytest.fixture
def restart(settings: Settings, database: Database) -> Iterator[Callable[[], Container]]:
    """Containers as fresh processes would build them: no cache of the crashed one."""
    built: list[Container] = []

    def make() -> Container:
        built.append(build(settings, database=database))
        return built[-1]

    try:
        yield make
    finally:
        for container in built:
            container.close()


def after(target: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Crash right after ``target.name`` has done its work."""
    real = getattr(target, name)

    def crashing(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise CrashError(name)

    monkeypatch.setattr(target, name, crashing)


def before(target: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def crashing(*args: Any, **kwargs: Any) -> Any:
        raise CrashError(name)

    monkeypatch.setattr(target, name, crashing)


CRASHES: dict[str, Callable[[Container, RequestWorker, pytest.MonkeyPatch], None]] = {
    "before recording the erasure": lambda c, w, m: before(c.ledger, "start_deletion", m),
    # Customer.Erased, WorkDone and PartnersNotified are one transaction: recording the
    # erasure is notifying the partners (the relay delivers from the log).
    "after recording the erasure and notifying partners": lambda c, w, m: after(
        c.ledger, "start_deletion", m
    ),
    "after destroying keys": lambda c, w, m: after(c.vault, "destroy", m),
    "after deleting exports": lambda c, w, m: after(c.exports, "delete_for_customer", m),
    "after dropping cached copies, before the tracking write": lambda c, w, m: after(
        w, "_evict", m
    ),
}


@dataclass(frozen=True)
class Case:
    """The deletion to crash on, the access request whose export it deletes, and a moment
    before it from which the customer's past state is replayed."""

    customer: UUID
    partner: UUID
    access: UUID
    deletion: UUID
    moment: datetime


def deletion_case(container: Container) -> Case:
    """A customer with a partner, an access export, and a verified deletion request."""
    ledger = container.ledger
    partner = scenarios.contracted_partner(ledger)
    customer = scenarios.customer(
        ledger, identity={"name": "Quentin Marlowe", "email": "q@hidden.example"}, actor="intake:i"
    )
    scenarios.share(ledger, customer, partner)
    access = scenarios.verified(
        ledger,
        customer,
        "access",
        statement="send me my data",
        actor="intake:i",
        reference="passport",
    )
    container.request_worker().catch_up()
    assert container.exports.get(access) is not None
    moment = datetime.now(UTC)
    deletion = scenarios.verified(
        ledger,
        customer,
        "deletion",
        statement="erase me, Quentin",
        actor="intake:i",
        reference="passport",
    )
    return Case(customer, partner, access, deletion, moment)


def outcome(container: Container, case: Case) -> str:
    """``erased`` (recorded, keys destroyed, exports gone, nothing decryptable) or
    ``intact`` (none of it); anything else fails the test."""
    ledger = container.ledger
    ledger.clear_cache()  # read from the store, not from what this process holds
    container.vault.clear_cache()
    with psycopg.connect(container.database.url) as conn:
        destroyed = [
            row[0] is not None
            for row in conn.execute(
                sql.SQL(
                    "SELECT destroyed_at FROM {} WHERE customer_id = %s AND kind = 'personal'"
                ).format(sql.Identifier(container.settings.database_schema, "subject_keys")),
                (case.customer,),
            ).fetchall()
        ]
    assert len(destroyed) == 3  # the customer's key and their two requests' keys
    recorded = ledger.get_customer(case.customer).erased_at is not None
    then = ledger.customer_as_of(case.customer, case.moment)
    assert then is not None
    name = then.data["identity_contact"]["name"]
    statement = ledger.get_request(case.deletion).statement
    export = container.exports.get(case.access)
    if recorded and all(destroyed) and export is None:
        assert name == ERASED
        assert statement == ERASED
        return "erased"
    if not recorded and not any(destroyed) and export is not None:
        assert name == "Quentin Marlowe"
        assert statement == "erase me, Quentin"
        return "intact"
    pytest.fail(
        f"half an erasure: recorded={recorded}, keys destroyed={destroyed}, "
        f"export kept={export is not None}"
    )


@pytest.mark.parametrize("crash", list(CRASHES))
def test_a_deletion_crashed_at_any_step_is_completed_by_the_next_worker(
    container: Container,
    restart: Callable[[], Container],
    monkeypatch: pytest.MonkeyPatch,
    crash: str,
) -> None:
    """Whichever step the worker dies after, a fresh worker handling the log again ends
    with the erasure recorded, the keys destroyed and the exports deleted."""
    case = deletion_case(container)
    worker = container.request_worker()
    with monkeypatch.context() as patch:
        CRASHES[crash](container, worker, patch)
        with pytest.raises(CrashError):
            worker.catch_up()
    fresh = restart()
    fresh.request_worker().catch_up()
    assert outcome(fresh, case) == "erased"
    request = fresh.ledger.get_request(case.deletion)
    assert request.status.value == "in_progress"
    assert request.awaiting == {case.partner}
    assert [n.partner_id for n in request.notified] == [case.partner]


def test_a_revoke_racing_the_worker_ends_with_the_erasure_complete_or_not_started(
    container: Container, restart: Callable[[], Container], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revoked before the erasure is recorded: nothing is erased. Once it is recorded the
    revocation is refused, and the erasure is carried out."""
    first = deletion_case(container)
    worker = container.request_worker()
    with monkeypatch.context() as patch:
        before(container.ledger, "start_deletion", patch)
        with pytest.raises(CrashError):
            worker.catch_up()
    container.ledger.revoke_request(first.deletion, reason="changed my mind", actor="i")
    fresh = restart()
    fresh.request_worker().catch_up()
    assert outcome(fresh, first) == "intact"
    assert fresh.ledger.get_request(first.deletion).status.value == "revoked"

    second = deletion_case(container)
    worker = container.request_worker()
    with monkeypatch.context() as patch:
        after(container.ledger, "start_deletion", patch)
        with pytest.raises(CrashError):
            worker.catch_up()
    with pytest.raises(IllegalTransitionError):
        container.ledger.revoke_request(second.deletion, reason="too late", actor="i")
    fresh = restart()
    fresh.request_worker().catch_up()
    assert outcome(fresh, second) == "erased"
    assert fresh.ledger.get_request(second.deletion).status.value == "in_progress"


def test_events_after_the_erasure_are_still_sealed_and_read(
    container: Container, restart: Callable[[], Container]
) -> None:
    """Once the keys are gone the customer's later events are still written and read: the
    last acknowledgement fulfils the request, a consent withdrawal is recorded, and a new
    request's free text is sealed with a key of its own (destroyed by the purge later)."""
    case = deletion_case(container)
    ledger = container.ledger
    scenarios.consent(ledger, case.customer, "email")
    container.request_worker().catch_up()
    scenarios.consent(ledger, case.customer, "email", granted=False)
    ledger.acknowledge(case.deletion, partner_id=case.partner, actor="partner:p")
    later = scenarios.submit(
        ledger, case.customer, "access", statement="what do you still hold?", actor="intake:i"
    )
    ledger.deny_request(later, reason="nothing but billing records", actor="po")
    fresh = restart()
    assert fresh.ledger.get_request(case.deletion).status.value == "fulfilled"
    assert fresh.ledger.get_request(later).statement == "what do you still hold?"
    assert fresh.ledger.get_request(later).reason == "nothing but billing records"
    then = fresh.ledger.customer_as_of(case.customer, case.moment)
    assert then is not None
    assert then.data["identity_contact"]["name"] == ERASED
    assert len(fresh.ledger.log_page(0, 1000)) == fresh.ledger.recorder.max_notification_id()
