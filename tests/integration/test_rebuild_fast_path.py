"""The fast catch-up path (rows prepared in the reader thread, COPY, orjson) writes exactly
the rows the event-at-a-time path writes, for every view, sealed and erased values included."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from rightsledger.bootstrap import Container
from rightsledger.projections.base import View
from rightsledger.projections.worker import VIEW_CLASSES, ProjectionWorker, _objects
from rightsledger.storage.sealing import ERASED
from tests import scenarios
from tests.conftest import EVIDENCE
from tests.integration.test_erasure import person
from tests.integration.test_group_commit import WatchedPool


def log_with_an_erasure(container: Container) -> UUID:
    """Two customers' lives (consents, corrections, activity, invoices, shares, requests,
    reads and a refused read); the first is then erased (keys destroyed). Returns them."""
    ledger = container.ledger
    partner = ledger.register_partner(
        name="Helpdesk Ltd",
        kind="support_provider",
        contract_reference="C",
        confidentiality_agreement="NDA",
        contract_valid_until=date(2099, 1, 1),
        actor="po",
    ).id
    erased, _ = person(ledger, "alpha", partner)
    kept, _ = person(ledger, "bravo", partner)
    for customer in (erased, kept):
        ledger.change_consent(customer, channel="email", granted=True, evidence=EVIDENCE, actor="m")
        ledger.record_access(
            customer,
            actor="support:s",
            role="support",
            purpose="support",
            categories=["identity_contact"],
            what="profile",
        )
        ledger.record_refusal(
            customer,
            actor="marketing:m",
            role="marketing",
            purpose="billing",
            what="profile",
            reason="purpose not allowed",
        )
    requests = container.request_worker()
    requests.catch_up()
    deletion = ledger.submit_request(
        customer_id=erased,
        request_type="deletion",
        channel="postal_mail",
        jurisdiction="gdpr",
        document_reference="letter",
        actor="intake:i",
    ).id
    ledger.verify_request(deletion, method="id", reference="passport", actor="po")
    requests.catch_up()
    ledger.acknowledge(deletion, partner_id=partner, actor="partner:helpdesk")
    ledger.record_invoice(
        kept,
        amount="1.00",
        currency="EUR",
        status="paid",
        issued_at=datetime(2026, 11, 1, tzinfo=UTC),
        actor="b",
    )
    return erased


def fresh_views(container: Container, suffix: str) -> list[View]:
    views = [
        cls(container.views.datastore, suffix=suffix, **container.views.context)
        for cls in VIEW_CLASSES.values()
    ]
    for view in views:
        view.create_table()
    return views


def event_at_a_time(container: Container, views: list[View]) -> None:
    """The path views were always written by: one event per transaction, each view's rows
    by ``INSERT ... ON CONFLICT`` and its tracking record on its own."""
    worker = ProjectionWorker(container.ledger, views, batch_size=1)
    position = 0
    while events := worker._decode(position, None, 1):
        with (
            container.views.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as curs,
        ):
            for view in views:
                view.apply_batch(curs, events, position)
        position = events[-1][1]


def rows(container: Container, suffix: str) -> dict[str, list[Any]]:
    """Every row of every view table built under ``suffix``, as JSON text, sorted, and each
    view's tracked position."""
    schema = container.settings.database_schema
    found: dict[str, list[Any]] = {}
    with psycopg.connect(container.database.url) as conn:
        for cls in VIEW_CLASSES.values():
            for base in cls.tables:
                found[base] = sorted(
                    conn.execute(
                        sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(
                            sql.Identifier(schema, base + suffix)
                        )
                    ).fetchall()
                )
            found[f"{cls.name} tracking"] = conn.execute(
                sql.SQL("SELECT max(notification_id) FROM {}").format(
                    sql.Identifier(schema, f"{cls.name}{suffix}_tracking")
                )
            ).fetchall()
    return found


def test_a_fast_rebuild_writes_the_rows_of_the_event_at_a_time_path(
    container: Container,
) -> None:
    """On one log holding sealed values whose keys were destroyed, a catch-up in large
    batches (prepared rows, COPY) and event-at-a-time application leave identical rows in
    every table of every view, and the same tracked positions."""
    erased = log_with_an_erasure(container)
    head = container.ledger.recorder.max_notification_id()
    assert head is not None
    slow, fast = fresh_views(container, "__slow"), fresh_views(container, "__fast")
    event_at_a_time(container, slow)
    # batches larger than the log and batches cutting it anywhere
    for batch_size in (5000, 7):
        with container.views.datastore.transaction(commit=True) as curs:
            for view in fast:
                for table in _objects(view):
                    curs.execute(sql.SQL("TRUNCATE {}").format(table))
        worker = ProjectionWorker(container.ledger, fast, batch_size=batch_size)
        assert worker.catch_up() == head
        assert rows(container, "__fast") == rows(container, "__slow")
    # the log the views were built from holds values whose keys are gone
    decoded = ProjectionWorker(container.ledger, slow)._decode(0, None, 10_000)
    erased_values = [
        event
        for event, _ in decoded
        if getattr(event, "originator_id", None) == erased
        and ERASED in str(vars(event).get("data", vars(event).get("changes", "")))
    ]
    assert erased_values


def test_rows_already_there_are_kept_as_before(
    container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows that outlived their tracking record make the bulk COPY fail; the batch is then
    written again with ON CONFLICT DO NOTHING: the rows are kept and the views advance."""
    log_with_an_erasure(container)
    worker = container.projection_worker()
    head = worker.catch_up()
    before = rows(container, "")
    schema = container.settings.database_schema
    with psycopg.connect(container.database.url) as conn:
        for view in container.views.views.values():
            conn.execute(
                sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, view.tracking_table_name))
            )
    again = container.projection_worker()
    with caplog.at_level(logging.INFO, logger="rightsledger.projections.worker"):
        assert again.catch_up() == head
    assert "rows already there" in caplog.text  # the COPY met them: written again
    assert rows(container, "") == before


def test_a_batch_reads_its_keys_in_one_go(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding a batch with no key at hand (a rebuild's own process) reads every key the
    batch is sealed under in one query, not one round trip per key; the events are those
    decoded one at a time, erased values included."""
    erased = log_with_an_erasure(container)
    for n in range(20):
        scenarios.customer(container.ledger, f"Customer {n}")
    ledger = container.ledger
    one_at_a_time = [
        ledger.mapper.to_domain_event(n)
        for n in ledger.recorder.select_notifications(start=0, limit=10_000)
    ]
    container.vault.clear_cache()
    watched = WatchedPool(container.vault._pool)
    monkeypatch.setattr(container.vault, "_pool", watched)
    decoded = ProjectionWorker(ledger, list(container.views.views.values()))._decode(
        0, None, 10_000
    )
    assert len(watched.threads) == 1
    assert [vars(event) for event, _ in decoded] == [vars(event) for event in one_at_a_time]
    assert any(
        event.originator_id == erased and ERASED in str(vars(event)) for event, _ in decoded
    )
    assert any(
        vars(event).get("data", {}).get("identity_contact") == {"name": "Customer 7"}
        for event, _ in decoded
    )
