"""Stable event names: every event is stored under a name of its own, independent of its
module, and every name ever stored keeps resolving to its class."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    DatetimeAsISO,
    JSONTranscoder,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import resolve_topic

from rightsledger.domain import naming
from rightsledger.domain.customer import Customer
from rightsledger.domain.deadlines import DeadlineRule, Period
from rightsledger.domain.naming import (
    MODULE_TOPICS,
    EventNameError,
    all_classes,
    domain_event_classes,
    names_table,
    register_names,
    stable_name,
    stored_names,
)
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.storage.keyvault import KeyScope, KeyVault
from rightsledger.storage.sealing import SealingMapper


class MemoryVault(KeyVault):
    """Keys in a dict: enough for the mapper, no storage."""

    def __init__(self) -> None:
        self.keys: dict[UUID, bytes] = {}

    def key(
        self,
        key_id: UUID,
        *,
        customer_id: UUID | None,
        kind: str,
        scope: KeyScope | None = None,
        new: bool = False,
    ) -> bytes | None:
        return self.keys.setdefault(key_id, b"k" * 32)

    def destroy(self, customer_id: UUID, kind: str) -> int:
        return 0

    def index_key(self) -> bytes:
        return b"i" * 32

    def customers_with_periods_ended(
        self, *, category: str, purpose: str, ended_by: datetime, limit: int
    ) -> list[UUID]:
        return []

    def destroy_periods(
        self, customer_id: UUID, *, category: str, purpose: str, ended_by: datetime
    ) -> Sequence[str]:
        return []


def mapper() -> SealingMapper:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    return SealingMapper(MemoryVault(), transcoder)


def submitted() -> DataRightsRequest:
    rule = DeadlineRule(respond_within=Period(months=1), extension=Period(months=2))
    return DataRightsRequest.submit(
        customer_id=uuid4(),
        request_type="access",
        channel="web_form",
        jurisdiction="gdpr",
        rules={"gdpr": rule},
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        actor="intake:desk",
        statement="send me my data",
    )


def test_every_class_has_a_name_of_its_own() -> None:
    """No two aggregates or events of the domain share a stored name (stable or former)."""
    table = names_table(all_classes())
    assert len({stable_name(c) for c in all_classes()}) == len(all_classes())
    assert set(MODULE_TOPICS) <= set(table)


def test_names_are_derived_from_aggregate_event_and_version() -> None:
    """The stable name is the aggregate's and the event's class names and the class version;
    an aggregate is named by its class name."""
    assert stable_name(Customer.ConsentGranted) == "Customer.ConsentGranted.v1"
    assert stable_name(DataRightsRequest.Expired) == "DataRightsRequest.Expired.v2"
    assert stable_name(Customer) == "Customer"
    assert stored_names(DataRightsRequest.Expired) == (
        "DataRightsRequest.Expired.v1",
        "DataRightsRequest.Expired.v2",
        "rightsledger.domain.requests:DataRightsRequest.Expired",
    )
    assert all(":" not in stable_name(c) for c in domain_event_classes())


class Renamed(Aggregate):
    """An aggregate whose classes were renamed and keep their stored names."""

    aggregate_name = "Customer"

    class ConsentGiven(Aggregate.Event):
        event_name = "Customer.ConsentGranted"

    class ConsentGivenAgain(ConsentGiven):
        pass


def test_an_explicit_name_overrides_the_derived_one_and_is_not_inherited() -> None:
    """``event_name`` keeps a renamed class's stored name; a subclass gets its own."""
    assert stable_name(Renamed.ConsentGiven) == "Customer.ConsentGranted.v1"
    assert stable_name(Renamed.ConsentGivenAgain) == "Renamed.ConsentGivenAgain.v1"
    assert stable_name(Renamed) == "Customer"


def test_two_classes_sharing_a_name_are_refused() -> None:
    """Two events that would be stored under one name (here a renamed class keeping the
    name another class still has) fail the name check."""
    with pytest.raises(EventNameError, match=r"Customer\.ConsentGranted\.v1"):
        names_table([Customer.ConsentGranted, Renamed.ConsentGiven])
    with pytest.raises(EventNameError):
        names_table([Customer, Renamed])


def test_a_name_that_looks_like_a_module_path_is_refused() -> None:
    """A stable name is dotted class names only, never confused with a module path."""

    class Odd(Aggregate):
        class Happened(Aggregate.Event):
            event_name = "odd.module:Happened"

    with pytest.raises(EventNameError):
        naming.base_name(Odd.Happened)


def test_every_stored_name_resolves_to_its_class() -> None:
    """After registration each stable name (each version) and each former module path
    resolves to the class now bearing it."""
    for name, cls in register_names().items():
        assert resolve_topic(name) is cls


def test_new_events_are_stored_under_stable_names() -> None:
    """The store's mapper writes the stable name as the topic, and a creation event names
    its aggregate by its stable name; both read back into the same classes."""
    sealing = mapper()
    customer = Customer.register(
        policy_version="2026-01", identity={"name": "Ann Example"}, actor="intake:desk"
    )
    (created,) = customer.collect_events()
    stored = sealing.to_stored_event(created)
    assert stored.topic == "Customer.Registered.v1"
    assert json.loads(stored.state)["originator_topic"] == "Customer"
    assert b"Ann Example" not in stored.state
    event = sealing.to_domain_event(stored)
    assert isinstance(event, Customer.Registered)
    rebuilt = event.mutate(None)
    assert isinstance(rebuilt, Customer)
    assert rebuilt.data["identity_contact"]["name"] == "Ann Example"


def test_a_version_1_event_under_its_stable_name_is_upcast() -> None:
    """An expiry stored as ``DataRightsRequest.Expired.v1`` (no ``class_version`` in its
    state) loads as version 2, ``upcast_v1_v2`` filling ``unacknowledged``."""
    sealing = mapper()
    request = submitted()
    request.expire(reason="late", now=request.due_at, actor="po")
    stored = sealing.to_stored_event(request.collect_events()[-1])
    assert stored.topic == "DataRightsRequest.Expired.v2"
    state: dict[str, Any] = json.loads(stored.state)
    assert state.pop("class_version") == 2
    del state["unacknowledged"]
    old = StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic="DataRightsRequest.Expired.v1",
        state=json.dumps(state).encode(),
    )
    event = sealing.to_domain_event(old)
    assert isinstance(event, DataRightsRequest.Expired)
    assert event.unacknowledged == []
    assert event.reason == "late"
