"""The deadline sweep on real PostgreSQL: it reads only the requests that need attention by
now (``next_attention_at``), so requests that need nothing cost nothing and starve nobody."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from rightsledger.bootstrap import Container
from rightsledger.domain.ledger import RightsLedger
from rightsledger.projections.worker import rebuild
from rightsledger.workers.requests import ACTOR, RequestWorker
from tests import scenarios

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
"""When the deletions are received (GDPR: due one month later)."""


class Chases:
    """Counts the sweep's calls of ``RightsLedger.chase`` (each a command)."""

    def __init__(self, ledger: RightsLedger, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real: Callable[..., list[str]] = ledger.chase

        def counting(request_id: UUID, **kwargs: Any) -> list[str]:
            self.calls += 1
            return real(request_id, **kwargs)

        monkeypatch.setattr(ledger, "chase", counting)

    def take(self) -> int:
        calls, self.calls = self.calls, 0
        return calls


def worker_at(container: Container, moment: datetime, **policy: Any) -> RequestWorker:
    """A request worker, and the ledger it commands, both at ``moment``."""
    container.ledger.clock = lambda: moment
    worker = container.request_worker()
    worker.clock = lambda: moment
    if policy:
        worker.policy = dataclasses.replace(worker.policy, **policy)
    return worker


def partners(ledger: RightsLedger, count: int) -> list[UUID]:
    return sorted(
        (
            scenarios.contracted_partner(
                ledger, f"Helpdesk {i}", contract=f"C-{i}", agreement=f"NDA-{i}"
            )
            for i in range(count)
        ),
        key=str,
    )


def awaiting_deletion(ledger: RightsLedger, recipients: list[UUID], tag: str) -> UUID:
    """A verified deletion, carried out, whose recipients have not acknowledged: straight
    through the ledger (no worker), so the keys stay and the reasons stay readable."""
    customer = scenarios.customer(ledger, f"Customer {tag}")
    for partner in recipients:
        scenarios.share(ledger, customer, partner, reference=f"ticket {tag}", actor="support:t")
    request = scenarios.verified(ledger, customer, "deletion", method="id_document")
    ledger.start_deletion(request, retain_for=timedelta(days=3650), actor=ACTOR)
    return request


def test_requests_needing_nothing_are_not_revisited_and_starve_no_other(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """600 deletions awaiting partners, due before a fresh request: once reminded and
    escalated they need nothing until their due date, and the fresh one is reminded on the
    next sweep (the former sweep read the 500 soonest-due rows and never got to it). A sweep
    over requests that need nothing issues no command; past the due date the deletions
    expire, naming the partners still awaited."""
    ledger = container.ledger
    projector = container.projection_worker()
    chases = Chases(ledger, monkeypatch)
    recipients = partners(ledger, 2)
    ledger.clock = lambda: T0
    with ThreadPoolExecutor(8) as pool:  # concurrent commands share transactions
        deletions = list(
            pool.map(lambda i: awaiting_deletion(ledger, recipients, str(i)), range(600))
        )
    projector.catch_up()
    due = ledger.get_request(deletions[0]).due_at
    assert due == datetime(2026, 4, 2, 9, tzinfo=UTC)

    counts = worker_at(container, due - timedelta(days=3)).sweep()
    assert counts == {"reminded": 600, "escalated": 600}
    assert chases.take() == 600
    projector.catch_up()

    # A fresh request, due a day after the deletions, now inside its reminder window.
    ledger.clock = lambda: T0 + timedelta(days=1)
    someone = ledger.register_customer(
        policy_version="v1", identity={"name": "Fresh"}, actor="intake:t"
    ).id
    fresh = scenarios.submit(ledger, someone, "access")
    projector.catch_up()
    assert ledger.get_request(fresh).due_at == due + timedelta(days=1)
    before = scenarios.log_head(container.ledger)
    assert worker_at(container, due - timedelta(days=2)).sweep() == {"reminded": 1}
    assert chases.take() == 1, "only the request that needed attention was chased"
    assert scenarios.log_head(container.ledger) == before + 1
    assert ledger.get_request(fresh).reminded
    projector.catch_up()

    before = scenarios.log_head(container.ledger)
    assert worker_at(container, due - timedelta(days=1)).sweep() == {}
    assert chases.take() == 0
    assert scenarios.log_head(container.ledger) == before, (
        "a sweep over requests needing nothing issued a command"
    )

    counts = worker_at(container, due + timedelta(hours=12)).sweep()
    assert counts == {"overdue": 600, "expired": 600}
    assert chases.take() == 600  # the fresh request's due date has not passed yet
    named = ", ".join(str(p) for p in recipients)
    for request_id in (deletions[0], deletions[-1]):
        expired = ledger.get_request(request_id)
        assert expired.status.value == "expired"
        assert expired.reason == f"expired: 2 recipient(s) never acknowledged: {named}"
    projector.catch_up()
    rows, _ = container.views.request_queue.search(now=due, status="expired", limit=1000)
    assert len(rows) == 600
    assert {row["reason"] for row in rows} == {
        f"expired: 2 recipient(s) never acknowledged: {named}"
    }

    before = scenarios.log_head(container.ledger)
    assert worker_at(container, due + timedelta(hours=13)).sweep() == {}
    assert chases.take() == 0
    assert scenarios.log_head(container.ledger) == before


def test_a_backlog_is_chased_in_pages_up_to_the_cap_and_the_rest_next_sweep(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More requests need attention than one sweep may chase: the soonest first, the rest
    on the next sweep; no request is chased twice."""
    ledger = container.ledger
    chases = Chases(ledger, monkeypatch)
    requests = []
    for day in range(30):
        customer = scenarios.customer(ledger)
        ledger.clock = scenarios.stopped_at(T0 + timedelta(hours=day))
        requests.append(scenarios.submit(ledger, customer, "access"))
    container.projection_worker().catch_up()
    moment = T0 + timedelta(days=29)  # every one inside its reminder window
    assert worker_at(container, moment, sweep_page=7, sweep_cap=20).sweep() == {"reminded": 20}
    assert chases.take() == 20
    assert [ledger.get_request(r).reminded for r in requests] == [True] * 20 + [False] * 10
    container.projection_worker().catch_up()
    assert worker_at(container, moment, sweep_page=7, sweep_cap=20).sweep() == {"reminded": 10}
    assert chases.take() == 10


def test_next_attention_in_the_sweeps_sql_agrees_with_the_domain(container: Container) -> None:
    """For requests in every chase state and at many moments, the rows the sweep selects
    and their ``next_attention_at`` are the aggregates' ``next_attention_at``."""
    ledger = container.ledger
    window = container.request_worker().policy.remind_before
    recipients = partners(ledger, 1)
    ledger.clock = lambda: T0
    deletion = awaiting_deletion(ledger, recipients, "d")
    customer, other = (scenarios.customer(ledger, name) for name in ("Bo", "Cy"))
    unverified = scenarios.submit(ledger, customer, "access")
    working = scenarios.submit(ledger, customer, "opt_out")
    extended = scenarios.submit(ledger, other, "access")  # one open request of a type per customer
    ledger.extend_request(extended, reason="complex", actor="po")
    ledger.verify_request(working, method="m", reference="r", actor="po")  # opt-out, not done
    revoked = scenarios.submit(ledger, customer, "deletion")
    ledger.revoke_request(revoked, actor="intake:t")
    ids = [deletion, unverified, working, extended, revoked]
    due = ledger.get_request(unverified).due_at
    moments = [due - timedelta(days=d) for d in (20, 8, 7, 3)] + [
        due,
        due + timedelta(seconds=1),
        due + timedelta(days=70),
    ]
    for step, moment in enumerate(moments):
        container.projection_worker().catch_up()
        expected = {}
        for request_id in ids:
            at = ledger.get_request(request_id).next_attention_at(window)
            if at is not None and at <= moment:
                expected[request_id] = at
        rows = container.views.request_queue.needing_attention(
            now=moment, remind_before=window, limit=100
        )
        assert {r["request_id"]: r["next_attention_at"] for r in rows} == expected, step
        assert not any(r["legacy"] for r in rows)
        worker_at(container, moment).sweep()
    container.projection_worker().catch_up()
    assert ledger.get_request(deletion).status.value == "expired"
    assert ledger.get_request(unverified).status.value == "expired"
    assert ledger.get_request(working).status.value == "in_progress"  # overdue, left alone
    assert ledger.get_request(extended).status.value == "expired"


def test_rows_projected_before_the_columns_existed_are_chased_until_rebuilt(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The view's table gains the columns on start (ALTER TABLE ... ADD COLUMN IF NOT
    EXISTS); older rows hold NULL facts and are chased by the former rule, no-ops included,
    until ``projections rebuild request_queue`` fills them in."""
    ledger = container.ledger
    chases = Chases(ledger, monkeypatch)
    recipients = partners(ledger, 1)
    ledger.clock = lambda: T0
    deletion = awaiting_deletion(ledger, recipients, "old")
    container.projection_worker().catch_up()
    due = ledger.get_request(deletion).due_at
    assert worker_at(container, due - timedelta(days=3)).sweep() == {
        "reminded": 1,
        "escalated": 1,
    }
    container.projection_worker().catch_up()
    chases.take()

    schema = container.settings.database_schema
    table = sql.Identifier(schema, "request_queue")
    view = container.views.request_queue
    with psycopg.connect(container.database.url, autocommit=True) as conn:
        for column, _ in view.ADDED_COLUMNS:  # the table as the previous version left it
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(table, sql.Identifier(column))
            )
        view.create_table()
        facts = conn.execute(
            sql.SQL(
                "SELECT reminded, escalated, overdue_recorded, awaiting, attention FROM {}"
            ).format(table)
        ).fetchall()
    assert facts == [(None, None, None, None, None)]

    before = scenarios.log_head(container.ledger)
    assert worker_at(container, due - timedelta(days=2)).sweep() == {}
    assert chases.take() == 1, "a row whose facts are unknown is chased by the former rule"
    assert scenarios.log_head(container.ledger) == before

    rebuild(ledger, container.views.datastore, "request_queue")
    assert worker_at(container, due - timedelta(days=2)).sweep() == {}
    assert chases.take() == 0, "after the rebuild the row is known to need nothing yet"
    assert worker_at(container, due + timedelta(days=1)).sweep() == {
        "overdue": 1,
        "expired": 1,
    }
    expired = ledger.get_request(deletion)
    assert expired.status.value == "expired"
    assert str(recipients[0]) in (expired.reason or "")
