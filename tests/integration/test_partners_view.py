"""The partners view follows a notification through the request's life: the due date moves
with an extension, and a request closed before the partner acknowledged lapses."""

from __future__ import annotations

from datetime import timedelta

from rightsledger.bootstrap import Container
from rightsledger.projections.partners import NoticeStatus
from tests import scenarios


def test_a_notice_follows_the_extension_and_lapses_when_the_request_closes(
    container: Container,
) -> None:
    """Notified, then extended: the notice's due date is the new one; expired before the
    partner acknowledged: the notice is lapsed, and no longer awaiting."""
    ledger = container.ledger
    partner = scenarios.contracted_partner(ledger, "Helpdesk")
    customer = scenarios.customer(ledger, "Ada")
    deletion = scenarios.shared_then_deleted(ledger, customer, partner).request
    container.request_worker().catch_up()
    projections = container.projection_worker()
    projections.catch_up()
    view = container.views.partners
    _, owed, _ = view.notifications(partner, status=NoticeStatus.AWAITING, after=None, limit=10)
    assert [row["request_id"] for row in owed] == [deletion]
    first_due = ledger.get_request(deletion).due_at
    assert owed[0]["due_at"] == first_due

    ledger.extend_request(deletion, reason="complex", actor="po")
    projections.catch_up()
    _, owed, _ = view.notifications(partner, status=None, after=None, limit=10)
    extended = ledger.get_request(deletion).due_at
    assert owed[0]["due_at"] == extended
    assert extended > first_due

    # the extended deadline passes before the partner acknowledged: the request expires
    clock = ledger.clock
    ledger.clock = lambda: extended + timedelta(minutes=1)
    try:
        ledger.expire_request(deletion, reason="the partner never answered", actor="po")
    finally:
        ledger.clock = clock
    projections.catch_up()
    known, awaiting, _ = view.notifications(
        partner, status=NoticeStatus.AWAITING, after=None, limit=10
    )
    assert known is not None
    assert awaiting == []
    _, lapsed, _ = view.notifications(partner, status=NoticeStatus.LAPSED, after=None, limit=10)
    assert [row["request_id"] for row in lapsed] == [deletion]
    assert lapsed[0]["acknowledged_at"] is None
