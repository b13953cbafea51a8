"""Reads of personal data on real PostgreSQL: recorded off the customer's stream, yet in
the customer's audit trail, on the topic under the customer's key, and in their export."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any
from uuid import UUID, uuid4

import pytest

from rightsledger.bootstrap import Container
from rightsledger.domain.customer import Customer
from rightsledger.domain.ledger import NotFoundError, RightsLedger
from rightsledger.workers.cloudevents import event_id

READS = 2000
REFUSED = 20


def register(ledger: RightsLedger) -> UUID:
    return ledger.register_customer(
        policy_version="2026-01",
        identity={"name": "Ada", "email": "ada@example.org"},
        payment_method={"processor": "Acme", "token": "tok_1"},
        actor="intake:desk",
    ).id


def record_reads(ledger: RightsLedger, customer: UUID, count: int, refused: int = 0) -> None:
    """``count`` reads, the last ``refused`` of them refused."""
    for n in range(count - refused):
        ledger.record_access(
            customer,
            actor="billing:b",
            role="billing",
            purpose="billing",
            categories=["payment_method", "identity_contact"],
            what=f"profile {n}",
        )
    for n in range(refused):
        outcome = ledger.record_refusal(
            customer,
            actor="support:s",
            role="support",
            purpose="billing",
            what=f"profile {n}",
            reason="role 'support' may not read personal data for 'billing'",
        )
        assert outcome is not None
        assert outcome.id == customer


def export_of(container: Container, customer: UUID) -> dict[str, Any]:
    """The customer's access export, as the request worker assembles it."""
    ledger = container.ledger
    request = ledger.submit_request(
        customer_id=customer,
        request_type="access",
        channel="email",
        jurisdiction="gdpr",
        statement="copy please",
        actor="intake:desk",
    ).id
    ledger.verify_request(request, method="id_document", reference="doc", actor="po:po")
    container.request_worker().catch_up()
    assert ledger.get_request(request).status.value == "fulfilled"
    stored = container.exports.get(request)
    assert stored is not None
    document: dict[str, Any] = stored["document"]
    return document


def test_many_reads_leave_the_customers_stream_as_it_was(container: Container) -> None:
    """After 2,000 reads the customer's stream has the same events, loading the customer
    replays none of them, and the customer still takes commands at its old version; yet
    every read is in the audit trail and in the access export."""
    ledger = container.ledger
    customer = register(ledger)
    ledger.correct_customer(customer, {"identity_contact": {"email": "ada@new.org"}}, actor="s:s")
    stream = len(list(ledger.events.get(customer)))
    version = ledger.get_customer(customer).version
    record_reads(ledger, customer, READS, refused=REFUSED)

    assert len(list(ledger.events.get(customer))) == stream
    loaded = ledger.get_customer(customer)
    assert loaded.version == version
    assert loaded.access_log == []
    assert not any(
        isinstance(e, Customer.DataAccessed | Customer.AccessRefused)
        for e in ledger.events.get(customer)
    )
    ledger.correct_customer(customer, {"identity_contact": {"phone": "+44 1"}}, actor="s:s")
    assert ledger.get_customer(customer).version == version + 1

    container.projection_worker().catch_up()
    trail, _ = container.views.audit_trail.trail(customer, limit=READS + 10)
    reads = [row for row in trail if row["event_type"] == "Customer.DataAccessed"]
    refusals = [row for row in trail if row["event_type"] == "Customer.AccessRefused"]
    assert len(reads) == READS - REFUSED
    assert len(refusals) == REFUSED
    assert {row["aggregate_type"] for row in reads + refusals} == {"AccessRecord"}
    assert len({row["aggregate_id"] for row in reads + refusals}) == READS
    assert customer not in {row["aggregate_id"] for row in reads + refusals}
    assert reads[0]["actor"] == "billing:b"
    assert reads[0]["purpose"] == "billing"
    assert reads[0]["summary"] == (
        "Personal data read (profile 0) by a billing for billing: identity_contact, payment_method"
    )
    assert refusals[0]["summary"].startswith("Read refused (profile 0) to a support declaring")

    document = export_of(container, customer)
    log = document["access_log"]
    assert len(log) == READS
    assert log[0] == {
        "actor": "billing:b",
        "role": "billing",
        "purpose": "billing",
        "categories": ["identity_contact", "payment_method"],
        "what": "profile 0",
        "at": reads[0]["recorded_at"].astimezone(UTC).isoformat(),
        "refused": False,
    }
    assert log[-1] == {
        "actor": "support:s",
        "role": "support",
        "purpose": "billing",
        "categories": [],
        "what": f"profile {REFUSED - 1}",
        "at": refusals[-1]["recorded_at"].astimezone(UTC).isoformat(),
        "refused": True,
        "reason": "role 'support' may not read personal data for 'billing'",
    }
    assert [entry["refused"] for entry in log].count(True) == REFUSED


def test_reads_the_view_has_not_projected_yet_are_in_the_export(container: Container) -> None:
    """The export lists the reads the trail holds and those recorded since its position
    (read from the log's tail), each once, in order, and no other customer's reads."""
    ledger = container.ledger
    customer = register(ledger)
    other = register(ledger)
    record_reads(ledger, customer, 3)
    container.projection_worker().catch_up()
    record_reads(ledger, other, 2)
    record_reads(ledger, customer, 4, refused=1)
    document = export_of(container, customer)
    assert [(e["what"], e["refused"]) for e in document["access_log"]] == [
        ("profile 0", False),
        ("profile 1", False),
        ("profile 2", False),
        ("profile 0", False),
        ("profile 1", False),
        ("profile 2", False),
        ("profile 0", True),
    ]


def test_reads_recorded_in_the_former_form_still_load_and_are_exported_first(
    container: Container,
) -> None:
    """A stored log with reads on the customer's own stream keeps loading: those reads stay
    in the customer's access log and come first in the export, before the AccessRecords."""
    ledger = container.ledger
    customer = register(ledger)
    former = ledger.get_customer(customer)
    former.trigger_event(
        Customer.DataAccessed,
        actor="auditor:a",
        role="auditor",
        purpose="legal",
        categories=["identity_contact"],
        what="state as of 2026-01-01T00:00:00+00:00",
    )
    ledger.save(former)
    ledger.evict(customer)
    assert len(ledger.get_customer(customer).access_log) == 1
    record_reads(ledger, customer, 2)
    container.projection_worker().catch_up()
    trail, _ = container.views.audit_trail.trail(customer)
    assert [row["aggregate_type"] for row in trail if "Data" in row["event_type"]] == [
        "Customer",
        "AccessRecord",
        "AccessRecord",
    ]
    document = export_of(container, customer)
    assert [e["what"] for e in document["access_log"]] == [
        "state as of 2026-01-01T00:00:00+00:00",
        "profile 0",
        "profile 1",
    ]


def test_reads_of_unknown_customers(container: Container) -> None:
    """A read of an unknown customer is refused as before (not found); a refusal for one
    records nothing, and neither does anything for an id that is not a customer's."""
    ledger = container.ledger
    head = ledger.recorder.max_notification_id() or 0
    with pytest.raises(NotFoundError):
        ledger.record_access(
            uuid4(), actor="a", role="support", purpose="support", categories=[], what="profile"
        )
    unknown = uuid4()
    assert (
        ledger.record_refusal(
            unknown, actor="a", role="support", purpose="billing", what="profile", reason="no"
        )
        is None
    )
    partner = ledger.register_partner(name="Police", kind="law_enforcement", actor="po").id
    after_partner = ledger.recorder.max_notification_id()
    assert (
        ledger.record_refusal(
            partner, actor="a", role="support", purpose="billing", what="profile", reason="no"
        )
        is None
    )
    assert (ledger.recorder.max_notification_id() or 0) == after_partner
    assert after_partner == head + 1


def test_on_the_topic_a_read_is_keyed_by_its_customer(container: Container) -> None:
    """The relay keys a read by the customer it concerns, so it stays in order with the
    customer's other events on one partition; its data has no personal values."""
    ledger = container.ledger
    customer = register(ledger)
    record_reads(ledger, customer, 2, refused=1)
    relay = container.relay("127.0.0.1:9")  # records are built without a broker
    page = ledger.log_page(0, 100)
    keys = set()
    documents = []
    for position, event in page:
        ((_, key, value, _),) = relay.records(position, event)
        keys.add(key)
        documents.append(json.loads(value))
    assert keys == {str(customer).encode()}
    assert [d["type"] for d in documents] == [
        "rightsledger.Customer.Registered",
        "rightsledger.Customer.DataAccessed",
        "rightsledger.Customer.AccessRefused",
    ]
    assert {d["subject"] for d in documents} == {str(customer)}
    assert documents[1]["data"] == {
        "customer_id": str(customer),
        "role": "billing",
        "purpose": "billing",
        "categories": ["identity_contact", "payment_method"],
        "what": "profile 0",
    }
    assert documents[2]["data"] == {
        "customer_id": str(customer),
        "role": "support",
        "purpose": "billing",
        "what": "profile 0",
    }
    _, read_event = page[1]
    assert documents[1]["id"] == event_id(read_event.originator_id, 1)
    assert "Ada" not in json.dumps(documents)
    assert "ada@example.org" not in json.dumps(documents)
