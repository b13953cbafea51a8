"""Receipts: what a fulfilled data-rights request did, field by field, rebuilt from events.

A receipt is never stored. ``build_receipt`` folds the request's events and its customer's
events (as the event store returns them: sealed values whose key was destroyed read as
erased) into what was done: for an access request, what was exported (categories, item
count, digest); for a correction, the fields changed in each category and the partners
told; for an opt-out, the channels on which marketing consent was withdrawn; for a
deletion, each category and field erased, or kept with the legal ground and the date it
will be purged. It holds no personal value, only categories, field names, channels,
partners and dates, so it can be rebuilt at any time, before or after an erasure, and
always says the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, DomainEventProtocol

from rightsledger.domain.customer import Customer
from rightsledger.domain.errors import StateError
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.domain.retention import RuleStatement
from rightsledger.domain.values import CATEGORY_FIELDS, Category, RequestStatus, RequestType

BILLING_GROUND = (
    "legal obligation: billing records must be retained for regulatory compliance "
    "(privacy policy, right to data deletion)"
)
"""Why billing records and the payment processor's token outlive an erasure."""

RECORD_FIELDS: Mapping[str, str] = {
    Category.BILLING.value: "invoices",
    Category.ACTIVITY.value: "entries",
}
"""Categories held as records rather than fields: the name a receipt gives their records."""

ERASED_WITH_REQUESTS = (
    "the words of the data-rights requests (statements, document references, verification "
    "references, reasons) and the access exports were erased with the personal data"
)


class NotFulfilledError(StateError):
    """Only a fulfilled request has a receipt."""

    title = "Request not fulfilled"


@dataclass(frozen=True)
class Retention:
    """How long one category outlives an erasure, and on which ground."""

    ground: str
    until: datetime


def retained_on_erasure(erased: Customer.Erased) -> dict[str, Retention]:
    """The categories an erasure keeps, each with its ground and the date it is purged:
    billing records and the payment processor's token, until the erasure's
    ``retained_until`` (``RetainedRecordsPurged`` then deletes them)."""
    keep = Retention(BILLING_GROUND, erased.retained_until)
    return {Category.PAYMENT.value: keep, Category.BILLING.value: keep}


@dataclass(frozen=True)
class Erased:
    """A field (or a category's records) erased."""

    category: str
    field: str
    items: int | None = None
    """For records (invoices, activity entries): how many."""


@dataclass(frozen=True)
class Kept:
    """A field (or a category's records) kept past the erasure: on which legal ground and
    until when; ``purged_at`` once the retention has ended and it was purged."""

    category: str
    field: str
    ground: str
    until: datetime
    items: int | None = None
    purged_at: datetime | None = None


@dataclass(frozen=True)
class PartnerTold:
    """A partner that received the data and was told of the correction or deletion."""

    partner_id: UUID
    name: str | None
    categories: list[str]
    told_at: datetime
    acknowledged_at: datetime | None = None


@dataclass(frozen=True)
class Exported:
    """What an access request's export held."""

    categories: list[str]
    items: int
    digest: str
    prepared_at: datetime
    deleted_at: datetime | None = None
    """When the export was deleted (the customer's erasure); None while it is kept."""


@dataclass(frozen=True)
class Changed:
    """The fields of one category a correction changed."""

    category: str
    fields: list[str]
    changed_at: datetime


@dataclass(frozen=True)
class Corrected:
    changes: list[Changed]
    partners_told: list[PartnerTold]


@dataclass(frozen=True)
class Withdrawn:
    """A channel on which marketing consent was withdrawn."""

    channel: str
    withdrawn_at: datetime


@dataclass(frozen=True)
class OptedOut:
    withdrawn: list[Withdrawn]


@dataclass(frozen=True)
class Deleted:
    erased_at: datetime
    erased: list[Erased]
    kept: list[Kept]
    partners_told: list[PartnerTold]


@dataclass(frozen=True)
class Receipt:
    """What a fulfilled request did; exactly one of the four parts is set, by its type."""

    request_id: UUID
    customer_id: UUID
    type: str
    status: str
    channel: str
    jurisdiction: str
    received_at: datetime
    due_at: datetime
    verified_at: datetime | None
    fulfilled_at: datetime
    summary: str
    request_version: int
    customer_version: int
    access: Exported | None = None
    correction: Corrected | None = None
    opt_out: OptedOut | None = None
    deletion: Deleted | None = None
    notes: list[str] = field(default_factory=list)
    retention: list[RuleStatement] = field(default_factory=list)
    """The retention schedule in force when the receipt was built: each category's rules
    (category, purpose, period, counted from, basis)."""


Events = Iterable[DomainEventProtocol[UUID]]
"""A stream's events, as the event store returns them."""


def _listed(events: Events) -> list[Aggregate.Event]:
    listed: list[Aggregate.Event] = []
    for event in events:
        assert isinstance(event, Aggregate.Event)
        listed.append(event)
    return listed


def _replay(events: Events) -> tuple[Aggregate | None, list[Aggregate.Event]]:
    seen = _listed(events)
    aggregate: Aggregate | None = None
    for event in seen:
        aggregate = event.mutate(aggregate)
    return aggregate, seen


def _told(events: list[Aggregate.Event], names: Mapping[UUID, str | None]) -> list[PartnerTold]:
    acknowledged = {
        event.partner_id: event.timestamp
        for event in events
        if isinstance(event, DataRightsRequest.PartnerAcknowledged)
    }
    told: list[PartnerTold] = []
    for event in events:
        if not isinstance(event, DataRightsRequest.PartnersNotified):
            continue
        for notice in event.notifications:
            partner = UUID(str(notice["partner_id"]))
            told.append(
                PartnerTold(
                    partner_id=partner,
                    name=names.get(partner),
                    categories=sorted(notice["categories"]),
                    told_at=event.timestamp,
                    acknowledged_at=acknowledged.get(partner),
                )
            )
    return told


def build_receipt(
    request_events: Events,
    customer_events: Events,
    *,
    partner_names: Mapping[UUID, str | None] | None = None,
    schedules: Mapping[str, Retention] | None = None,
    retention: Iterable[RuleStatement] = (),
) -> Receipt:
    """The receipt of a fulfilled request, from its events and its customer's (in stream
    order). ``partner_names`` names the partners told; ``schedules`` are categories an
    erasure kept under a retention schedule (beside those ``retained_on_erasure`` names);
    ``retention`` is the schedule in force (``RetentionSchedule.describe()``), stated as is.
    A request that is not fulfilled has no receipt: ``NotFulfilledError``."""
    request, r_events = _replay(request_events)
    if not isinstance(request, DataRightsRequest):
        msg = "the request's events do not start with its submission"
        raise TypeError(msg)
    if request.status is not RequestStatus.FULFILLED:
        raise NotFulfilledError(
            f"the request is {request.status.value}; a receipt is issued once it is fulfilled",
            field="status",
        )
    c_events = _listed(customer_events)
    names = partner_names or {}
    fulfilled = next(e for e in r_events if isinstance(e, DataRightsRequest.Fulfilled))
    customer_version = c_events[-1].originator_version if c_events else 0
    erasure = next((e for e in c_events if isinstance(e, Customer.Erased)), None)
    access: Exported | None = None
    correction: Corrected | None = None
    opt_out: OptedOut | None = None
    deletion: Deleted | None = None
    notes: list[str] = []
    kind = request.request_type
    if kind is RequestType.ACCESS:
        prepared = next(e for e in r_events if isinstance(e, DataRightsRequest.ExportPrepared))
        access = Exported(
            categories=list(prepared.categories),
            items=prepared.items,
            digest=prepared.digest,
            prepared_at=prepared.timestamp,
            deleted_at=erasure.timestamp if erasure is not None else None,
        )
    elif kind is RequestType.CORRECTION:
        changes = [
            Changed(category=e.category, fields=sorted(e.changes), changed_at=e.timestamp)
            for e in c_events
            if isinstance(e, Customer.DetailsCorrected) and e.request_id == request.id
        ]
        correction = Corrected(changes=changes, partners_told=_told(r_events, names))
    elif kind is RequestType.OPT_OUT:
        withdrawn = [
            Withdrawn(channel=e.channel, withdrawn_at=e.timestamp)
            for e in c_events
            if isinstance(e, Customer.ConsentWithdrawn) and e.request_id == request.id
        ]
        if not withdrawn:
            notes.append("marketing consent was held on no channel: there was nothing to withdraw")
        opt_out = OptedOut(withdrawn=withdrawn)
    else:
        deletion = _deletion(request, r_events, c_events, names, schedules or {})
        notes.append(ERASED_WITH_REQUESTS)
    return Receipt(
        request_id=request.id,
        customer_id=request.customer_id,
        type=kind.value,
        status=request.status.value,
        channel=request.channel.value,
        jurisdiction=request.jurisdiction,
        received_at=request.received_at,
        due_at=request.due_at,
        verified_at=request.verified_at,
        fulfilled_at=fulfilled.timestamp,
        summary=fulfilled.summary,
        request_version=request.version,
        customer_version=customer_version,
        notes=notes,
        retention=[rule.copy() for rule in retention],
        access=access,
        correction=correction,
        opt_out=opt_out,
        deletion=deletion,
    )


def _deletion(
    request: DataRightsRequest,
    r_events: list[Aggregate.Event],
    c_events: list[Aggregate.Event],
    names: Mapping[UUID, str | None],
    schedules: Mapping[str, Retention],
) -> Deleted:
    """Each category and field the customer held when erased: erased, or kept (with its
    ground and until when, and when it was purged)."""
    before: list[Aggregate.Event] = []
    erasure: Customer.Erased | None = None
    purged_at: datetime | None = None
    for event in c_events:
        if (
            erasure is None
            and isinstance(event, Customer.Erased)
            and event.request_id == request.id
        ):
            erasure = event
            continue
        if erasure is None:
            before.append(event)
        elif isinstance(event, Customer.RetainedRecordsPurged):
            purged_at = event.timestamp
    if erasure is None:
        msg = f"the deletion request {request.id} is fulfilled but its erasure is not recorded"
        raise ValueError(msg)
    customer, _ = _replay(before)
    assert isinstance(customer, Customer)
    kept_rules = {**retained_on_erasure(erasure), **schedules}
    erased: list[Erased] = []
    kept: list[Kept] = []
    for category in Category:
        held: list[tuple[str, int | None]]
        if category.value in RECORD_FIELDS:
            count = (
                len(customer.invoices) if category is Category.BILLING else len(customer.activity)
            )
            held = [(RECORD_FIELDS[category.value], count)] if count else []
        else:
            values = customer.data.get(category.value, {})
            order = {name: i for i, name in enumerate(CATEGORY_FIELDS[category])}
            held = [(name, None) for name in sorted(values, key=lambda n: order.get(n, 99))]
        rule = kept_rules.get(category.value)
        for name, items in held:
            if rule is None:
                erased.append(Erased(category=category.value, field=name, items=items))
            else:
                purged = purged_at if category.value in retained_on_erasure(erasure) else None
                kept.append(
                    Kept(
                        category=category.value,
                        field=name,
                        ground=rule.ground,
                        until=rule.until,
                        items=items,
                        purged_at=purged,
                    )
                )
    return Deleted(
        erased_at=erasure.timestamp,
        erased=erased,
        kept=kept,
        partners_told=_told(r_events, names),
    )
