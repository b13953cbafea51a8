"""Aggregate state as typed records: what replaying events gives, and what its readers
(the access export, the auditor's state) make of it.

The events here are built with fixed ids and times, so the export they give can be
compared, key for key and digest for digest, with the export the same events gave when
the state was held as plain mappings.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import pytest
from eventsourcing.domain import Aggregate
from hypothesis import given
from hypothesis import strategies as st

from rightsledger.api.routers.audit import state_out
from rightsledger.domain.copying import copied
from rightsledger.domain.customer import ActivityEntry, Consent, Customer, Disclosure, Invoice
from rightsledger.domain.partner import Partner, Recipient
from rightsledger.domain.requests import DataRightsRequest, Verification
from rightsledger.domain.retention import RuleStatement
from rightsledger.storage.sealing import ERASED
from rightsledger.workers import export

CUSTOMER = UUID("11111111-1111-4111-8111-111111111111")
PARTNER = UUID("22222222-2222-4222-8222-222222222222")
REQUEST = UUID("33333333-3333-4333-8333-333333333333")
PAID = UUID("44444444-4444-4444-8444-444444444444")
PURGED = UUID("05555555-5555-4555-8555-555555555555")
RESET = UUID("66666666-6666-4666-8666-666666666666")
SCAN = UUID("77777777-7777-4777-8777-777777777777")
SHARE = UUID("88888888-8888-4888-8888-888888888888")


E = TypeVar("E", bound=Aggregate.Event)


def at(day: int, hour: int = 9) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def event(cls: type[E], aggregate: UUID, version: int, when: datetime, **fields: object) -> E:
    """An event of ``cls`` with fixed id, version and time (a creation names its aggregate)."""
    if issubclass(cls, Aggregate.Created):
        fields["originator_topic"] = f"{cls.__module__}:{cls.__qualname__.split('.')[0]}"
    build: Callable[..., E] = cls
    return build(originator_id=aggregate, originator_version=version, timestamp=when, **fields)


def evidence() -> dict[str, str | datetime]:
    return {"method": "web_form_checkbox", "wording_version": "mkt-v3", "captured_at": at(2, 8)}


def customer_events() -> Iterator[Aggregate.Event]:
    """A customer's stream, every event that changes its state, one version after another
    (a purged invoice amount and an erased activity detail read as the placeholder)."""
    versions = iter(range(1, 100))

    def of(cls: type[E], day: int, **fields: object) -> E:
        return event(cls, CUSTOMER, next(versions), at(day), **fields)

    yield of(
        Customer.Registered,
        1,
        actor="intake:i",
        policy_version="2026-01",
        data={
            "identity_contact": {"name": "Ada", "email": "ada@x.org"},
            "payment_method": {"processor": "acme", "token": "tok"},
        },
        purposes={
            "identity_contact": ["account", "billing"],
            "billing": ["billing", "legal"],
            "activity": ["legal", "support"],
            "payment_method": ["billing"],
            "account_service": ["account"],
        },
    )
    yield of(Customer.ConsentGranted, 2, actor="m:m", channel="sms", evidence=evidence())
    yield of(Customer.ConsentGranted, 3, actor="m:m", channel="email", evidence=evidence())
    yield of(
        Customer.ConsentWithdrawn,
        4,
        actor="m:m",
        channel="sms",
        evidence=evidence(),
        request_id=None,
    )
    yield of(
        Customer.InvoiceRecorded,
        5,
        actor="b:b",
        invoice_id=PAID,
        amount=Decimal("42.50"),
        currency="EUR",
        status="paid",
        issued_at=at(5, 0),
    )
    yield of(
        Customer.InvoiceRecorded,
        6,
        actor="b:b",
        invoice_id=PURGED,
        amount=ERASED,
        currency="GBP",
        status="issued",
        issued_at=at(6, 0),
    )
    yield of(
        Customer.ActivityLogged,
        7,
        actor="s:s",
        entry_id=RESET,
        kind="account",
        reason="security",
        detail="password reset",
        occurred_at=at(7, 1),
    )
    yield of(
        Customer.ActivityLogged,
        8,
        actor="s:s",
        entry_id=SCAN,
        kind="network",
        reason="troubleshooting",
        detail=ERASED,
        occurred_at=at(8, 1),
    )
    yield of(
        Customer.DataAccessed,
        9,
        actor="support:s",
        role="support",
        purpose="support",
        categories=["identity_contact"],
        what="profile",
    )
    yield of(
        Customer.AccessRefused,
        10,
        actor="marketing:m",
        role="marketing",
        purpose="billing",
        what="profile",
        reason="not allowed",
    )
    yield of(
        Customer.DataDisclosed,
        11,
        actor="po:p",
        disclosure_id=SHARE,
        partner_id=PARTNER,
        basis="legal_obligation",
        categories=["identity_contact"],
        purpose="legal",
        reference="warrant 1",
    )


def replayed_customer() -> Customer:
    customer: Aggregate | None = None
    for recorded in customer_events():
        customer = recorded.mutate(customer)
    assert isinstance(customer, Customer)
    return customer


def test_a_customer_replays_to_typed_records() -> None:
    """Consents, invoices (by id), activity entries and disclosures are frozen records with
    the values their events recorded; the former reads keep the keys they always had
    (``reason`` only on a refusal)."""
    customer = replayed_customer()
    assert customer.consents == {
        "sms": Consent(granted=False, evidence=evidence(), changed_at=at(4)),
        "email": Consent(granted=True, evidence=evidence(), changed_at=at(3)),
    }
    assert customer.invoices == {
        PAID: Invoice(amount=Decimal("42.50"), currency="EUR", status="paid", issued_at=at(5, 0)),
        PURGED: Invoice(amount=ERASED, currency="GBP", status="issued", issued_at=at(6, 0)),
    }
    assert customer.activity == [
        ActivityEntry(RESET, "account", "security", "password reset", at(7, 1)),
        ActivityEntry(SCAN, "network", "troubleshooting", ERASED, at(8, 1)),
    ]
    assert customer.disclosures == [
        Disclosure(
            SHARE, PARTNER, "legal_obligation", ("identity_contact",), "legal", "warrant 1", at(11)
        )
    ]
    assert customer.access_log == [
        {
            "actor": "support:s",
            "role": "support",
            "purpose": "support",
            "categories": ["identity_contact"],
            "what": "profile",
            "at": at(9),
            "refused": False,
        },
        {
            "actor": "marketing:m",
            "role": "marketing",
            "purpose": "billing",
            "categories": [],
            "what": "profile",
            "at": at(10),
            "refused": True,
            "reason": "not allowed",
        },
    ]
    assert customer.consented_channels() == ["email"]
    assert customer.recipients() == [Recipient(PARTNER, ("identity_contact",))]


def test_the_records_are_frozen_and_survive_copies() -> None:
    """A record cannot be changed in place, and deep copies (the aggregate cache's) and
    pickles of a customer hold equal records."""
    customer = replayed_customer()
    with pytest.raises(dataclasses.FrozenInstanceError):
        customer.consents["email"].granted = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        customer.activity[0].detail = ERASED  # type: ignore[misc]
    for clone in (copy.deepcopy(customer), pickle.loads(pickle.dumps(customer))):
        assert clone.consents == customer.consents
        assert clone.invoices == customer.invoices
        assert clone.activity == customer.activity


def test_purges_and_erasure_drop_records() -> None:
    """``ActivityPurged`` drops the entries it lists, the erasure every entry, and the purge
    of the retained records every invoice; consents stay."""
    customer = replayed_customer()
    event(
        Customer.ActivityPurged,
        CUSTOMER,
        customer.version + 1,
        at(20),
        actor="worker:requests",
        purpose="troubleshooting",
        through=at(20),
        entries=[SCAN],
        periods=["2026-03"],
        schedule={},
    ).mutate(customer)
    assert [e.entry_id for e in customer.activity] == [RESET]
    event(
        Customer.Erased,
        CUSTOMER,
        customer.version + 1,
        at(21),
        actor="worker:requests",
        request_id=REQUEST,
        retained_until=at(22),
    ).mutate(customer)
    assert customer.activity == []
    assert set(customer.invoices) == {PAID, PURGED}
    event(
        Customer.RetainedRecordsPurged,
        CUSTOMER,
        customer.version + 1,
        at(23),
        actor="worker:requests",
    ).mutate(customer)
    assert customer.invoices == {}
    assert set(customer.consents) == {"sms", "email"}


def submission(request_type: str) -> DataRightsRequest.Submitted:
    return event(
        DataRightsRequest.Submitted,
        REQUEST,
        1,
        at(12),
        actor="intake:i",
        customer_id=CUSTOMER,
        request_type=request_type,
        channel="web_form",
        statement="my data, please",
        document_reference=None,
        jurisdiction="gdpr",
        received_at=at(12),
        due_at=at(28),
        extension_months=2,
        extension_days=0,
        corrections=None,
    )


def test_a_request_replays_to_typed_records_and_records_its_notice_as_always() -> None:
    """The verification and the partners told are records; the ``PartnersNotified`` event
    still holds the partner ids as text and the categories sorted, as stored before."""
    submitted = submission("deletion")
    request = submitted.mutate(None)
    assert isinstance(request, DataRightsRequest)
    request.verify_identity(method="id_document", reference="passport", actor="po")
    request.record_work(action="personal data erased", actor="worker")
    request.notify_partners(
        notifications=[Recipient(PARTNER, ("payment_method", "identity_contact"))],
        await_acknowledgement=True,
        actor="worker",
    )
    assert request.verification == Verification(method="id_document", reference="passport")
    assert request.notified == [Recipient(PARTNER, ("identity_contact", "payment_method"))]
    assert request.awaiting == {PARTNER}
    events = [submitted, *request.collect_events()]
    notice = events[-1]
    assert isinstance(notice, DataRightsRequest.PartnersNotified)
    assert notice.notifications == [
        {"partner_id": str(PARTNER), "categories": ["identity_contact", "payment_method"]}
    ]
    replayed: Aggregate | None = None
    for recorded in events:
        replayed = recorded.mutate(replayed)
    assert isinstance(replayed, DataRightsRequest)
    assert replayed.verification == request.verification
    assert replayed.notified == request.notified
    assert replayed.awaiting == {PARTNER}


SCHEDULE = [
    RuleStatement(
        category="activity",
        purpose="security",
        period={"months": 12, "days": 0},
        counted_from="period_end",
        kept="12 months after the end of the month the entry occurred in",
        basis="security monitoring",
    )
]


def assembled() -> dict[str, object]:
    partner = event(
        Partner.Registered,
        PARTNER,
        1,
        at(1),
        actor="a:a",
        name="Police",
        kind="law_enforcement",
        contract_reference=None,
        confidentiality_agreement=None,
        contract_valid_until=None,
    ).mutate(None)
    assert isinstance(partner, Partner)
    request = submission("access").mutate(None)
    assert isinstance(request, DataRightsRequest)
    reads = [
        export.read_entry(
            actor="billing:b",
            role="billing",
            purpose="billing",
            categories=["payment_method"],
            what="profile",
            at=at(13),
            reason=None,
        ),
        export.read_entry(
            actor="x:x",
            role="marketing",
            purpose="billing",
            categories=[],
            what="profile",
            at=at(14),
            reason="refused",
        ),
    ]
    return export.assemble(
        request,
        replayed_customer(),
        {str(PARTNER): partner},
        retention="kept",
        generated_at=at(15),
        reads=reads,
        schedule=SCHEDULE,
    )


PINNED = json.loads((Path(__file__).parent / "export_document.json").read_text())
"""The export of ``customer_events`` (with these reads and this schedule) as it was when the
customer's state was held as plain mappings: the document, its digest and item count."""


def test_the_access_export_keeps_its_keys_order_and_digest() -> None:
    """The export read from typed state is the export the former state gave: the same
    keys in the same order, the same values, the same digest and item count."""
    document = assembled()
    assert document == PINNED["document"]
    assert json.dumps(document) == json.dumps(PINNED["document"])  # key order too
    assert export.digest(document) == PINNED["digest"]
    assert export.items(document) == PINNED["items"]


def test_the_auditor_state_reads_the_typed_records() -> None:
    """The auditor's state as of a moment shows the consents, invoices and activity entries
    the records hold (placeholders as they are)."""
    shown = state_out(replayed_customer()).model_dump(mode="json")
    assert [
        (c["channel"], c["granted"], c["evidence"]["wording_version"]) for c in shown["consents"]
    ] == [
        ("sms", False, "mkt-v3"),
        ("email", True, "mkt-v3"),
    ]
    assert [(i["invoice_id"], i["amount"], i["currency"]) for i in shown["invoices"]] == [
        (str(PAID), "42.50", "EUR"),
        (str(PURGED), ERASED, "GBP"),
    ]
    assert shown["activity"] == [
        {
            "entry_id": str(RESET),
            "kind": "account",
            "reason": "security",
            "detail": "password reset",
            "occurred_at": "2026-03-07T01:00:00Z",
        },
        {
            "entry_id": str(SCAN),
            "kind": "network",
            "reason": "troubleshooting",
            "detail": ERASED,
            "occurred_at": "2026-03-08T01:00:00Z",
        },
    ]


def mutable_containers(value: object, *, in_records: bool = False) -> set[int]:
    """The identities of the dicts, lists and sets reachable from ``value`` (through
    containers, an aggregate's attributes and frozen records' fields); with ``in_records``,
    only those held inside a frozen record."""
    found: set[int] = set()

    def walk(item: object, inside: bool) -> None:
        if isinstance(item, dict | list | set) and (inside or not in_records):
            found.add(id(item))
        if isinstance(item, dict):
            for each in item.values():
                walk(each, inside)
        elif isinstance(item, list | set | tuple):
            for each in item:
                walk(each, inside)
        elif isinstance(item, Aggregate):
            for each in vars(item).values():
                walk(each, inside)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            for field in dataclasses.fields(item):
                walk(getattr(item, field.name), True)

    walk(value, False)
    return found


def test_the_cache_copy_equals_the_aggregate_and_shares_none_of_its_containers() -> None:
    """The copy the repository hands out for a command (``CheapCopy``) has the same state,
    and none of the dicts, lists and sets an event would change is the original's (those
    inside frozen records, which nothing changes in place, may be shared)."""
    request = submission("deletion").mutate(None)
    assert request is not None
    for original in (replayed_customer(), request):
        clone = copy.deepcopy(original)
        assert type(clone) is type(original)
        assert vars(clone) == vars(original)
        shared = mutable_containers(clone) & mutable_containers(original)
        assert shared <= mutable_containers(original, in_records=True)
        assert mutable_containers(original) - mutable_containers(original, in_records=True)


def test_a_command_on_the_copy_leaves_the_cached_aggregate_as_it_was() -> None:
    """Events applied to the copy (a consent, an invoice, an activity entry, a request, an
    erasure) do not reach the aggregate it was copied from."""
    original = replayed_customer()
    before = pickle.dumps(original)
    clone = copy.deepcopy(original)
    clone.grant_consent(channel="sms", evidence=evidence(), actor="marketing:m")
    clone.record_invoice(
        amount="9.99", currency="EUR", status="issued", issued_at=at(22), actor="billing:b"
    )
    clone.erase(request_id=REQUEST, retained_until=at(28), actor="worker:requests")
    assert clone.consents != original.consents
    assert pickle.dumps(original) == before


@given(
    value=st.recursive(
        st.none() | st.integers() | st.text(max_size=3) | st.uuids() | st.datetimes(),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=2), inner, max_size=3)
            | st.tuples(inner, inner)
            | st.frozensets(st.integers(), max_size=3).map(set)
        ),
        max_leaves=12,
    )
)
def test_copied_state_equals_a_deep_copy_and_shares_no_container(value: object) -> None:
    """For any state built of dicts, lists, sets and tuples of plain values, the cheap copy
    equals ``copy.deepcopy``'s and no dict, list or set in it is one of the original's."""
    clone = copied(value, {})
    assert clone == copy.deepcopy(value)
    assert not set(mutable_containers(clone)) & set(mutable_containers(value))
