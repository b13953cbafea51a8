"""The request worker on real PostgreSQL: idempotent reactions, deadlines, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from rightsledger.bootstrap import Container
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.projections.worker import FOLLOWER as PROJECTIONS
from rightsledger.storage.followers import State
from rightsledger.storage.sealing import ERASED
from rightsledger.workers import requests as requests_module
from rightsledger.workers.requests import RequestWorker
from tests import scenarios


def worker_at(container: Container, moment: datetime) -> RequestWorker:
    worker = container.request_worker()
    worker.clock = lambda: moment
    return worker


def test_an_event_handled_twice_does_nothing_new(container: Container) -> None:
    """Re-delivery after a crash between the work and the tracking write adds no event."""
    ledger = container.ledger
    customer = scenarios.customer(ledger, actor="i")
    request = scenarios.verified(ledger, customer, "access", method="m")
    worker = container.request_worker()
    worker.catch_up()
    assert ledger.get_request(request).status.value == "fulfilled"
    head = ledger.recorder.max_notification_id()
    for _, event in ledger.log_page(0, 100):
        worker.handle(event)
    assert ledger.recorder.max_notification_id() == head
    # the verification (after the request's and the customer's record of it): the only event
    # it reacts to
    assert worker.position() == 4


def test_deadlines_are_chased_and_unverified_requests_expire(container: Container) -> None:
    """Near the due date: a reminder; past it: overdue, and expiry when never verified."""
    ledger = container.ledger
    customer = scenarios.customer(ledger, actor="i")
    waiting = scenarios.submit(ledger, customer, "deletion")
    working = scenarios.verified(ledger, customer, "access", method="m")
    container.projection_worker().catch_up()
    due = ledger.get_request(waiting).due_at
    ledger.clock = lambda: due - timedelta(days=2)
    assert worker_at(container, due - timedelta(days=2)).sweep() == {"reminded": 2}
    container.projection_worker().catch_up()
    ledger.clock = lambda: due + timedelta(days=1)
    counts = worker_at(container, due + timedelta(days=1)).sweep()
    assert counts == {"overdue": 2, "expired": 1}
    assert ledger.get_request(waiting).status.value == "expired"
    assert ledger.get_request(working).status.value == "in_progress"


def test_retained_billing_records_are_purged_when_retention_ends(container: Container) -> None:
    """After erasure, invoices stay until the retention date, then the sweep purges them."""
    ledger = container.ledger
    customer = ledger.register_customer(
        policy_version="v1",
        identity={"name": "Ann"},
        payment_method={"processor": "Acme", "token": "tok_1"},
        actor="i",
    ).id
    scenarios.invoice(ledger, customer, "5", issued_at=datetime(2026, 1, 1, tzinfo=UTC))
    request = scenarios.verified(ledger, customer, "deletion", method="m")
    container.request_worker().catch_up()
    erased = ledger.get_customer(customer)
    assert erased.erased_at is not None
    assert erased.invoices
    assert erased.data == {"payment_method": {"processor": "Acme", "token": "tok_1"}}
    assert ledger.get_request(request).status.value == "fulfilled"
    container.projection_worker().catch_up()
    retained_until = erased.retained_until
    assert retained_until is not None
    assert worker_at(container, retained_until - timedelta(days=1)).sweep().get("purged") is None
    ledger.clock = lambda: retained_until + timedelta(days=1)
    assert worker_at(container, retained_until + timedelta(days=1)).sweep()["purged"] == 1
    purged = ledger.get_customer(customer)
    assert purged.invoices == {}
    assert purged.data == {}


def test_a_request_that_cannot_be_carried_out_is_denied_with_the_reason(
    container: Container,
) -> None:
    """A second deletion of an erased customer does not hang in progress: it is denied."""
    ledger = container.ledger
    customer = scenarios.customer(ledger, actor="i")
    scenarios.verified(ledger, customer, "deletion", method="m")
    container.request_worker().catch_up()
    second = scenarios.verified(ledger, customer, "deletion", method="m")
    container.request_worker().catch_up()
    request = ledger.get_request(second)
    assert request.status.value == "denied"
    assert "erased" in (request.reason or "")


def test_a_deletion_never_acknowledged_expires_naming_the_partners(container: Container) -> None:
    """Carried out by the worker (keys destroyed), awaited partners never answer: escalated,
    then past the due date overdue and expired. The reason is sealed with the request's key,
    gone with the erasure, so it reads as the placeholder; the partners are still named by
    the event's unsealed ``unacknowledged`` and in the request queue's ``awaiting``."""
    ledger = container.ledger
    partner = scenarios.contracted_partner(ledger)
    customer = scenarios.customer(ledger, actor="i")
    request = scenarios.shared_then_deleted(ledger, customer, partner).request
    container.request_worker().catch_up()
    assert ledger.get_customer(customer).erased_at is not None
    assert ledger.get_request(request).awaiting == {partner}
    container.projection_worker().catch_up()
    due = ledger.get_request(request).due_at
    ledger.clock = lambda: due + timedelta(days=1)
    assert worker_at(container, due + timedelta(days=1)).sweep() == {
        "reminded": 1,
        "escalated": 1,
        "overdue": 1,
        "expired": 1,
    }
    expired = list(ledger.events.get(request))[-1]
    assert isinstance(expired, DataRightsRequest.Expired)
    assert expired.unacknowledged == [str(partner)]
    assert expired.reason == ERASED
    assert ledger.get_request(request).status.value == "expired"
    container.projection_worker().catch_up()
    with psycopg.connect(container.database.url) as conn:
        row = conn.execute(
            sql.SQL("SELECT status, awaiting, attention FROM {} WHERE request_id = %s").format(
                sql.Identifier(container.settings.database_schema, "request_queue")
            ),
            (request,),
        ).fetchone()
    assert row == ("expired", [str(partner)], None)


def test_a_deletion_reads_fulfilled_only_once_the_profile_view_applied_the_erasure(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a projection worker is running, the erasure is recorded (and the deletion
    fulfilled) only once the customer profile view has applied it: until then the worker
    fails transiently (and is retried), and the view still showing the name is never
    answered beside a fulfilled deletion."""
    ledger = container.ledger
    customer = scenarios.customer(ledger, "Grace Hopper", actor="i")
    deletion = scenarios.verified(ledger, customer, "deletion")
    monkeypatch.setattr(requests_module, "ERASURE_VIEW_WAIT", 0.2)
    container.board.report(PROJECTIONS, State.RUNNING, 0)  # a projection worker, behind
    worker = container.request_worker()
    with pytest.raises(TimeoutError, match="customer_profile view has not applied"):
        worker.catch_up()
    assert ledger.get_request(deletion).status.value != "fulfilled"
    container.projection_worker().catch_up()
    container.board.report(PROJECTIONS, State.RUNNING, 0)
    worker.catch_up()
    assert ledger.get_request(deletion).status.value == "fulfilled"
    row, _ = container.views.customer_profile.get(customer)
    assert row is not None
    assert "Grace Hopper" not in str(row)
