"""Reads of personal data as AccessRecords of their own, off the customer's stream."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

import pytest

from rightsledger.domain.access import AccessRecord
from rightsledger.domain.customer import Customer
from rightsledger.domain.errors import InvalidPurposeError
from rightsledger.projections.audit import customer_of, describe, event_type, trail_type
from rightsledger.workers import cloudevents

CUSTOMER = UUID("0b5f6f36-6c1e-4f0e-9a4e-3c1d2b7a9e10")


def read(**kwargs: Any) -> AccessRecord:
    args: dict[str, Any] = {
        "customer_id": CUSTOMER,
        "actor": "support:desk",
        "role": "support",
        "purpose": "support",
        "categories": ["identity_contact", "account_service"],
        "what": "profile",
    }
    args.update(kwargs)
    return AccessRecord.accessed(**args)


def refusal(**kwargs: Any) -> AccessRecord:
    args: dict[str, Any] = {
        "customer_id": CUSTOMER,
        "actor": "support:desk",
        "role": "support",
        "purpose": "billing",
        "what": "profile",
        "reason": "role 'support' may not read personal data for 'billing'",
    }
    args.update(kwargs)
    return AccessRecord.refused(**args)


def test_an_answered_read_is_one_created_event_naming_its_customer() -> None:
    """A read is a new aggregate whose only event carries who, role, purpose, what, which
    categories (sorted) and the customer it concerns."""
    record = read()
    (event,) = record.collect_events()
    assert isinstance(event, AccessRecord.DataAccessed)
    assert event.originator_id == record.id
    assert event.originator_version == 1
    assert event.customer_id == CUSTOMER
    assert (event.actor, event.role, event.purpose, event.what) == (
        "support:desk",
        "support",
        "support",
        "profile",
    )
    assert event.categories == ["account_service", "identity_contact"]
    assert record.reason is None


def test_every_read_is_an_aggregate_of_its_own() -> None:
    """Two reads of one customer never share a stream: each gets a random id of its own,
    none of them the customer's."""
    ids = {read().id for _ in range(50)}
    assert len(ids) == 50
    assert CUSTOMER not in ids


def test_an_answered_read_declares_one_of_the_policys_purposes() -> None:
    """An unknown purpose is refused as on the customer before, naming the field."""
    with pytest.raises(InvalidPurposeError) as raised:
        read(purpose="curiosity")
    assert raised.value.field == "purpose"
    assert "curiosity" in raised.value.detail


def test_a_refusal_keeps_the_declared_purpose_unchecked_and_cut_to_fifty_characters() -> None:
    """A refused read records what was declared (even outside the policy), at most 50
    characters of it, no categories, and why it was refused."""
    record = refusal(purpose="x" * 80)
    (event,) = record.collect_events()
    assert isinstance(event, AccessRecord.AccessRefused)
    assert event.purpose == "x" * 50
    assert event.categories == []
    assert event.reason == "role 'support' may not read personal data for 'billing'"
    assert event.customer_id == CUSTOMER


def test_a_record_is_rebuilt_from_its_event() -> None:
    """Replaying the created event gives back the same record (it loads from the store)."""
    record = refusal()
    (event,) = record.collect_events()
    rebuilt = event.mutate(None)
    assert isinstance(rebuilt, AccessRecord)
    assert (rebuilt.id, rebuilt.version, rebuilt.customer_id) == (record.id, 1, CUSTOMER)
    assert (rebuilt.purpose, rebuilt.what, rebuilt.reason) == ("billing", "profile", record.reason)


def test_the_customer_no_longer_records_reads_but_still_loads_the_former_events() -> None:
    """Nothing new is written to the customer's stream for a read, while a stored log with
    the former DataAccessed / AccessRefused events still replays into its access log."""
    assert not hasattr(Customer, "record_access")
    assert not hasattr(Customer, "record_refusal")
    customer = Customer.register(policy_version="v1", identity={"name": "Ada"}, actor="intake:i")
    customer.trigger_event(
        Customer.DataAccessed,
        actor="billing:b",
        role="billing",
        purpose="billing",
        categories=["payment_method"],
        what="profile",
    )
    customer.trigger_event(
        Customer.AccessRefused,
        actor="support:s",
        role="support",
        purpose="billing",
        what="profile",
        reason="not allowed",
    )
    replayed = None
    for event in customer.collect_events():
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Customer)
    assert [(e["what"], e["refused"]) for e in replayed.access_log] == [
        ("profile", False),
        ("profile", True),
    ]


def test_the_trail_files_a_read_under_its_customer_with_the_former_names() -> None:
    """In the audit trail a read belongs to the customer it names (not to its own record),
    keeps the type names reads always had, and reads as it did on the customer's stream."""
    (accessed,) = read().collect_events()
    (refused,) = refusal().collect_events()
    assert customer_of(accessed) == CUSTOMER
    assert customer_of(refused) == CUSTOMER
    assert trail_type(accessed) == "Customer.DataAccessed"
    assert trail_type(refused) == "Customer.AccessRefused"
    assert event_type(accessed) == "AccessRecord.DataAccessed"
    assert describe(accessed) == (
        "Personal data read (profile) by a support for support: account_service, identity_contact"
    )
    assert describe(refused) == (
        "Read refused (profile) to a support declaring billing: "
        "role 'support' may not read personal data for 'billing'"
    )


def test_on_the_topic_a_read_is_its_customers_event_without_the_reason() -> None:
    """A read's CloudEvent keeps the former type, names the customer as subject and carries
    only role, purpose, categories and what (a refusal's reason and the actor stay home)."""
    (accessed,) = read().collect_events()
    (refused,) = refusal().collect_events()
    document = cloudevents.envelope(accessed, source="/rightsledger/t", subject=CUSTOMER)
    assert document["type"] == "rightsledger.Customer.DataAccessed"
    assert document["subject"] == str(CUSTOMER)
    assert document["data"] == {
        "customer_id": str(CUSTOMER),
        "role": "support",
        "purpose": "support",
        "categories": ["account_service", "identity_contact"],
        "what": "profile",
    }
    other = cloudevents.envelope(refused, source="/rightsledger/t", subject=CUSTOMER)
    assert other["type"] == "rightsledger.Customer.AccessRefused"
    assert other["data"] == {
        "customer_id": str(CUSTOMER),
        "role": "support",
        "purpose": "billing",
        "what": "profile",
    }
    assert other["id"] != document["id"]
    assert "support:desk" not in json.dumps([document, other])


def test_a_read_holds_no_value_the_sealing_rules_would_have_to_seal() -> None:
    """Reads carry ids, roles, purposes, category names and what was read only: no
    sealing rule applies to them, so they stay readable after the customer's erasure."""
    from rightsledger.storage.sealing import RULES

    assert AccessRecord.DataAccessed not in RULES
    assert AccessRecord.AccessRefused not in RULES
    (event,) = read(customer_id=uuid4()).collect_events()
    assert set(vars(event)) - {
        "originator_id",
        "originator_version",
        "timestamp",
        "originator_topic",
    } == {"customer_id", "actor", "role", "purpose", "categories", "what"}
