"""Projections on real PostgreSQL: contents, exactly-once delivery, rebuilds, replay."""

from __future__ import annotations

import json
import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, Tracking
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.rows import dict_row

from rightsledger.bootstrap import Container, RebuildFailedError, rebuild_views
from rightsledger.domain.errors import DomainError
from rightsledger.domain.ledger import RightsLedger
from rightsledger.domain.replay import replay_log
from rightsledger.projections.base import jsonable
from rightsledger.projections.worker import (
    VIEW_CLASSES,
    ProjectionWorker,
    drop_split,
    rebuild,
    split_log,
)
from tests import scenarios


def dump(container: Container, table: str) -> list[tuple[Any, ...]]:
    """Every row of a table, as JSON text, sorted: for row-by-row comparison."""
    with psycopg.connect(container.database.url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(
                sql.Identifier(container.settings.database_schema, table)
            )
        ).fetchall()
    return sorted(rows)


def dump_views(container: Container) -> dict[str, list[tuple[Any, ...]]]:
    return {table: dump(container, table) for cls in VIEW_CLASSES.values() for table in cls.tables}


def scenario(ledger: RightsLedger) -> dict[str, UUID]:
    """A customer's life: registration, consent, correction, billing, a share, a request."""
    customer = scenarios.billed_customer(ledger)
    scenarios.consent(ledger, customer, "sms", actor="m:m")
    scenarios.consent(ledger, customer, "sms", granted=False, actor="s:s")
    ledger.correct_customer(customer, {"identity_contact": {"email": "ada@new.org"}}, actor="s:s")
    scenarios.invoice(ledger, customer, "12.50")
    partner = scenarios.payment_processor(ledger)
    scenarios.share(
        ledger,
        customer,
        partner,
        categories=["payment_method"],
        purpose="billing",
        reference="run 7",
        actor="billing:b",
    )
    request = scenarios.verified(
        ledger,
        customer,
        "access",
        statement="copy please",
        actor="intake:desk",
        method="id_document",
        reference="doc",
        verifier="po:po",
    )
    return {"customer": customer, "partner": partner, "request": request}


def test_every_view_reflects_a_sequence_of_commands(container: Container) -> None:
    """Profile, consent ledger, queue, register and trail each hold what the commands did."""
    ids = scenario(container.ledger)
    head = container.ledger.recorder.max_notification_id()
    reached = container.projection_worker().catch_up()
    assert reached == head
    views = container.views
    profile, position = views.customer_profile.get(ids["customer"])
    assert position == head
    assert profile is not None
    assert profile["data"]["identity_contact"] == {"name": "Ada", "email": "ada@new.org"}
    assert profile["consents"]["sms"]["granted"] is False
    assert next(iter(profile["invoices"].values()))["amount"] == "12.50"
    history, _ = views.consent_ledger.history(ids["customer"])
    assert [(h["channel"], h["granted"]) for h in history] == [("sms", True), ("sms", False)]
    queue, _ = views.request_queue.search(now=datetime.now(UTC))
    assert [(r["request_id"], r["status"]) for r in queue] == [(ids["request"], "in_progress")]
    shares, _ = views.disclosures.for_partner(ids["partner"])
    assert [(d["customer_id"], d["basis"], d["categories"]) for d in shares] == [
        (ids["customer"], "service_provider", ["payment_method"])
    ]
    assert shares[0]["partner_name"] == "Acme Payments"
    trail, _ = views.audit_trail.trail(ids["customer"])
    assert [row["event_type"] for row in trail] == [
        "Customer.Registered",
        "Customer.ConsentGranted",
        "Customer.ConsentWithdrawn",
        "Customer.DetailsCorrected",
        "Customer.InvoiceRecorded",
        "Customer.DataDisclosed",
        "DataRightsRequest.Submitted",
        "Customer.RequestReceived",
        "DataRightsRequest.IdentityVerified",
    ]
    assert trail[3]["summary"] == "Corrected identity_contact: email"
    assert "ada@new.org" not in json.dumps([row["summary"] for row in trail])
    everyone, _ = views.audit_trail.trail(None, limit=1000)
    assert [row["position"] for row in everyone] == list(range(1, head + 1))


def test_a_crash_between_view_write_and_tracking_write_leaves_nothing(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose tracking write fails is rolled back whole; the retry applies it once."""
    scenario(container.ledger)
    view = container.views.consent_ledger
    worker = ProjectionWorker(container.ledger, [view])
    events = worker._decode(0, None)

    def crash(*_: Any) -> None:
        raise RuntimeError("process died before the tracking write")

    monkeypatch.setattr(worker, "_track", crash)
    with pytest.raises(RuntimeError):
        worker.apply(events)
    monkeypatch.undo()
    assert dump(container, "consent_ledger") == []
    assert view.position() == 0
    ProjectionWorker(container.ledger, [view]).catch_up()
    applied = dump(container, "consent_ledger")
    assert len(applied) == 2


def test_a_repeated_delivery_changes_nothing(container: Container) -> None:
    """A worker with a stale idea of the position re-delivers a batch: nothing changes."""
    scenario(container.ledger)
    worker = container.projection_worker()
    worker.catch_up()
    before = dump_views(container)
    stale = ProjectionWorker(container.ledger, list(container.views.views.values()))
    stale.positions = dict.fromkeys(stale.positions, 0)
    events = stale._decode(0, None)
    stale.apply(events)
    assert dump_views(container) == before
    assert container.views.positions() == dict.fromkeys(VIEW_CLASSES, worker.head())


def test_a_batch_a_view_refuses_is_never_stepped_over(container: Container) -> None:
    """When a view's write breaks one of its table's constraints (and no other worker has
    moved on), catch-up fails at that batch and records no progress, for any view; once
    the cause is mended, the same events are applied."""
    scenario(container.ledger)
    table = sql.Identifier(container.settings.database_schema, "customer_profile")
    with psycopg.connect(container.database.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT refuse_all CHECK (false) NOT VALID").format(
                table
            )
        )
    worker = container.projection_worker()
    with pytest.raises(IntegrityError):
        worker.catch_up()
    assert container.views.positions() == dict.fromkeys(VIEW_CLASSES, 0)
    with psycopg.connect(container.database.url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT refuse_all").format(table))
    assert worker.catch_up() == worker.head()
    assert container.views.positions() == dict.fromkeys(VIEW_CLASSES, worker.head())
    assert dump(container, "customer_profile")


def test_the_tracking_record_refuses_to_go_backwards(container: Container) -> None:
    """The last line of defence: a tracking write that does not advance fails the transaction."""
    scenario(container.ledger)
    container.projection_worker().catch_up()
    view = container.views.audit_trail
    before = dump(container, "audit_trail")
    with pytest.raises(IntegrityError), view.datastore.transaction(commit=True) as curs:  # noqa: PT012 - the write and the failing tracking insert form one transaction
        curs.execute(
            sql.SQL("DELETE FROM {}").format(
                sql.Identifier(container.settings.database_schema, "audit_trail")
            )
        )
        view._insert_tracking(curs, Tracking("rightsledger", 3))
    assert dump(container, "audit_trail") == before


def test_the_workers_tracking_write_moves_every_view_or_none(container: Container) -> None:
    """The projection worker writes all its views' tracking records in one statement: when
    any of them would not advance, the statement fails and none of them moves."""
    scenario(container.ledger)
    worker = container.projection_worker()
    head = worker.catch_up()
    assert head > 3
    positions = container.views.positions()
    names = list(positions)
    behind = dict.fromkeys(names, head + 1) | {names[-1]: 3}
    with pytest.raises(IntegrityError), worker.datastore.transaction(commit=True) as curs:
        worker._track(curs, behind)
    assert container.views.positions() == positions
    with worker.datastore.transaction(commit=True) as curs:
        worker._track(curs, dict.fromkeys(names, head + 1))
    assert container.views.positions() == dict.fromkeys(names, head + 1)


commands = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.sampled_from(["Ann", "Bo", "Cy"])),
        st.tuples(
            st.just("consent"),
            st.integers(0, 5),
            st.sampled_from(["email", "sms", "phone", "post"]),
            st.booleans(),
        ),
        st.tuples(st.just("correct"), st.integers(0, 5), st.sampled_from(["name", "phone"])),
        st.tuples(st.just("invoice"), st.integers(0, 5), st.sampled_from(["1.00", "99.99"])),
        st.tuples(
            st.just("share"), st.integers(0, 5), st.sampled_from(["sale", "fraud_prevention"])
        ),
        st.tuples(
            st.just("request"),
            st.integers(0, 5),
            st.sampled_from(["access", "deletion", "opt_out"]),
        ),
        st.tuples(
            st.just("close"), st.integers(0, 5), st.sampled_from(["verify", "deny", "revoke"])
        ),
    ),
    min_size=1,
    max_size=25,
)


def run(ledger: RightsLedger, program: list[tuple[Any, ...]], partner: UUID) -> None:
    customers: list[UUID] = []
    requests: list[UUID] = []
    for command in program:
        kind, *args = command
        try:
            if kind == "register":
                customers.append(scenarios.customer(ledger, args[0]))
                continue
            if not customers:
                continue
            customer = customers[args[0] % len(customers)]
            if kind == "consent":
                scenarios.consent(ledger, customer, args[1], granted=args[2], actor="m:t")
            elif kind == "correct":
                value = "+44 1" if args[1] == "phone" else "Renamed"
                ledger.correct_customer(customer, {"identity_contact": {args[1]: value}}, actor="s")
            elif kind == "invoice":
                scenarios.invoice(
                    ledger,
                    customer,
                    args[1],
                    status="issued",
                    issued_at=datetime(2026, 1, 1, tzinfo=UTC),
                    actor="b:t",
                )
            elif kind == "share":
                scenarios.share(
                    ledger,
                    customer,
                    partner,
                    basis=args[1],
                    purpose="legal",
                    reference="case",
                    actor="po:t",
                )
            elif kind == "request":
                requests.append(
                    scenarios.submit(
                        ledger, customer, args[1], channel="web_form", jurisdiction="ccpa"
                    )
                )
            elif kind == "close" and requests:
                request = requests[args[0] % len(requests)]
                if args[1] == "verify":
                    ledger.verify_request(request, method="id", reference="r", actor="po:t")
                elif args[1] == "deny":
                    ledger.deny_request(request, reason="unfounded", actor="po:t")
                else:
                    ledger.revoke_request(request, actor="intake:t")
        except DomainError:
            pass


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=commands)
def test_a_rebuild_from_scratch_equals_the_live_views(
    container: Container, program: list[tuple[Any, ...]]
) -> None:
    """Whatever the commands, each view rebuilt from the log matches the live one row by row."""
    ledger = container.ledger
    partner = ledger.register_partner(name="Police", kind="law_enforcement", actor="po:t").id
    live = container.projection_worker()
    half = len(program) // 2
    run(ledger, program[:half], partner)
    live.catch_up()  # the live views follow the log in steps, as in production
    run(ledger, program[half:], partner)
    live.catch_up()
    before = dump_views(container)
    for name in VIEW_CLASSES:
        rebuild(
            ledger, container.views.datastore, name, batch_size=7, context=container.views.context
        )
    assert dump_views(container) == before
    assert container.views.positions() == dict.fromkeys(VIEW_CLASSES, live.head())


def test_the_live_worker_keeps_working_across_a_rebuild(container: Container) -> None:
    """After a swap the live worker writes into the rebuilt tables, without loss."""
    ids = scenario(container.ledger)
    live = container.projection_worker()
    live.catch_up()
    rebuild(container.ledger, container.views.datastore, "consent_ledger")
    rebuild(container.ledger, container.views.datastore, "consent_ledger")
    scenarios.consent(container.ledger, ids["customer"], "email", actor="m:m")
    live.catch_up()
    history, position = container.views.consent_ledger.history(ids["customer"])
    assert [h["channel"] for h in history] == ["sms", "sms", "email"]
    assert position == live.head()


def test_as_of_answers_match_what_was_seen_at_the_time(container: Container) -> None:
    """Replaying up to a moment gives exactly the state observed at that moment."""
    ledger = container.ledger
    customer = scenarios.customer(
        ledger, identity={"name": "Ada", "email": "a@x.org"}, policy_version="2026-01", actor="i:i"
    )
    observed = []
    for step in range(3):
        moment = datetime.now(UTC)
        seen = ledger.get_customer(customer)
        observed.append((moment, jsonable(seen.data), dict(seen.consents), seen.version))
        if step == 1:
            ledger.correct_customer(customer, {"identity_contact": {"email": "b@x.org"}}, actor="s")
        else:
            scenarios.consent(ledger, customer, "email", granted=step == 0, actor="m:m")
    for moment, data, consents, version in observed:
        replayed = ledger.customer_as_of(customer, moment)
        assert replayed is not None
        assert jsonable(replayed.data) == data
        assert replayed.consents == consents
        assert replayed.version == version
    before = datetime(2000, 1, 1, tzinfo=UTC)
    assert ledger.customer_as_of(customer, before) is None
    summary = replay_log(ledger, observed[1][0])
    assert summary.customers == 1
    assert summary.consents_by_channel == {"email": 1}


def spawned_children() -> list[int]:
    """This process's children started by ``multiprocessing``'s spawn (the rebuilders)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def test_a_rebuild_in_several_processes_equals_the_live_views(container: Container) -> None:
    """Every view rebuilt by two processes, each reading the log for its group of views,
    matches the live views row by row, each at the head, and the live worker goes on."""
    ledger = container.ledger
    ids = scenario(ledger)
    for n in range(5):
        scenarios.consent(ledger, ids["customer"], "email", granted=n % 2 == 0, actor="m:t")
    live = container.projection_worker()
    live.catch_up()
    before = dump_views(container)
    reports: list[tuple[int, int]] = []
    position = rebuild_views(
        container,
        list(VIEW_CLASSES),
        processes=2,
        batch_size=5,
        progress=lambda done, total: reports.append((done, total)),
    )
    assert position == live.head()
    assert dump_views(container) == before
    assert container.views.positions() == dict.fromkeys(VIEW_CLASSES, live.head())
    assert reports
    assert reports[-1] == (live.head(), live.head())
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)
    assert not spawned_children()
    scenarios.consent(ledger, ids["customer"], "sms", actor="m:t")
    live.catch_up()
    assert container.views.positions() == dict.fromkeys(VIEW_CLASSES, live.head())


def test_a_killed_rebuilding_process_fails_the_rebuild_and_leaves_the_views(
    container: Container,
) -> None:
    """A rebuilding process killed (SIGKILL) midway fails the whole rebuild with an error
    naming its views; the others are ended, the live views are as they were, and the next
    rebuild succeeds."""
    ledger = container.ledger
    ids = scenario(ledger)
    for n in range(20):
        scenarios.consent(ledger, ids["customer"], "email", granted=n % 2 == 0, actor="m:t")
    container.projection_worker().catch_up()
    before = dump_views(container)

    def kill_all(done: int, total: int) -> None:
        for pid in spawned_children():
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(RebuildFailedError, match=r"ended \(exit code -9\) before it was done"):
        rebuild_views(container, list(VIEW_CLASSES), processes=2, batch_size=1, progress=kill_all)
    assert not spawned_children()
    assert dump_views(container) == before
    assert (
        rebuild_views(container, list(VIEW_CLASSES), processes=2)
        == ledger.recorder.max_notification_id()
    )
    assert dump_views(container) == before


def split_tables(container: Container) -> list[str]:
    """The tables splitting the log into shares present in the store's schema."""
    with psycopg.connect(container.database.url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s"
            " AND tablename LIKE 'rebuild%%shares%%'",
            (container.settings.database_schema,),
        ).fetchall()
    return sorted(row[0] for row in rows)


def test_a_second_rebuild_while_one_runs_is_refused(container: Container) -> None:
    """While a rebuild runs, another of the same store is refused with an error saying so
    and touches nothing; the first completes and matches the live views, and a rebuild
    after it runs."""
    ledger = container.ledger
    scenario(ledger)
    container.projection_worker().catch_up()
    before = dump_views(container)
    running, release = threading.Event(), threading.Event()
    outcome: list[int | BaseException] = []

    def hold(done: int, total: int) -> None:
        running.set()
        release.wait(30)

    def first() -> None:
        try:
            outcome.append(rebuild_views(container, ["consent_ledger"], progress=hold))
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert running.wait(30)
        with pytest.raises(RebuildFailedError, match="another rebuild of the views"):
            rebuild_views(container, list(VIEW_CLASSES), processes=2)
    finally:
        release.set()
        thread.join(30)
    assert outcome == [ledger.recorder.max_notification_id()]
    assert dump_views(container) == before
    assert rebuild_views(container, ["audit_trail"]) == ledger.recorder.max_notification_id()
    assert dump_views(container) == before


def test_a_rebuild_drops_the_split_tables_a_killed_rebuild_left(container: Container) -> None:
    """The tables a rebuild killed midway (its parent included) left splitting the log are
    dropped by the next rebuild, which leaves none of its own."""
    ledger = container.ledger
    scenario(ledger)
    head = ledger.recorder.max_notification_id() or 0
    split_log(ledger, container.views.datastore, head, 2)
    split_log(ledger, container.views.datastore, head, 3)
    assert len(split_tables(container)) == 2
    assert rebuild_views(container, list(VIEW_CLASSES), processes=2) == head
    assert split_tables(container) == []


def test_a_rebuild_in_shares_keeps_each_customer_with_their_requests(
    container: Container,
) -> None:
    """A rebuild in two processes splits the log by customer: every event is in exactly one
    share and each request in its customer's, so an erasure still clears the free text its
    customer's requests held at that point of the log and keeps what was written after; the
    rebuilt views equal the live ones row by row."""
    ledger = container.ledger
    partner = scenarios.payment_processor(ledger)
    customers = scenarios.customers(ledger, 8)
    for n, customer in enumerate(customers):
        scenarios.consent(ledger, customer, "email", actor="m:t")
        pending = scenarios.verified(ledger, customer, "access")
        ledger.extend_request(pending, reason=f"scanned letters {n}", actor="po:t")
        if n % 2 == 0:
            deletion = scenarios.verified(ledger, customer, "deletion")
            ledger.start_deletion(deletion, actor="worker:t")
            ledger.deny_request(pending, reason=f"after the erasure {n}", actor="po:t")
    scenarios.share(ledger, customers[1], partner, actor="billing:b")
    live = container.projection_worker()
    live.catch_up()
    before = dump_views(container)
    with psycopg.connect(container.database.url, row_factory=dict_row) as conn:
        queue = conn.execute(
            sql.SQL("SELECT * FROM {}").format(
                sql.Identifier(container.settings.database_schema, "request_queue")
            )
        ).fetchall()
    denied = [row for row in queue if row["status"] == "denied"]
    assert {row["reason"] for row in denied} == {f"after the erasure {n}" for n in range(0, 8, 2)}
    assert {row["extension_reason"] for row in denied} == {None}
    datastore = container.views.datastore
    head = live.head()
    split = split_log(ledger, datastore, head, 2)
    try:
        with psycopg.connect(container.database.url) as conn:
            shares: dict[int, int] = dict(
                conn.execute(
                    sql.SQL("SELECT notification_id, share FROM {}").format(
                        sql.Identifier(datastore.schema, split)
                    )
                ).fetchall()
            )
    finally:
        drop_split(datastore, split)
    assert sorted(shares) == list(range(1, head + 1))
    assert set(shares.values()) == {0, 1}
    by_stream: dict[UUID | str, set[int]] = {}
    for notification in ledger.recorder.select_notifications(start=0, limit=head + 1):
        by_stream.setdefault(notification.originator_id, set()).add(shares[notification.id])
    assert all(len(found) == 1 for found in by_stream.values())
    for row in queue:
        assert by_stream[row["request_id"]] == by_stream[row["customer_id"]]

    assert rebuild_views(container, list(VIEW_CLASSES), processes=2, batch_size=7) == head
    assert dump_views(container) == before
    assert not spawned_children()
