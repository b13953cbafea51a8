"""Auditors: the whole ordered log, a customer's trail, and state as it stood at any moment."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from rightsledger.api import schemas as s
from rightsledger.api.deps import (
    ContainerDep,
    LedgerDep,
    PurposeHeader,
    ReadFrom,
    ViewRead,
    allow,
    declared_purpose,
)
from rightsledger.api.offload import OffloadedRoute
from rightsledger.api.pages import CursorParam, paged, position_after, position_key
from rightsledger.domain.customer import Customer
from rightsledger.domain.values import Purpose
from rightsledger.projections.audit import AuditTrailView, event_type
from rightsledger.projections.base import jsonable
from rightsledger.security.keys import Principal, Role
from rightsledger.storage import chain
from rightsledger.storage.sealing import RULES

router = APIRouter(prefix="/v1/audit", tags=["audit"], route_class=OffloadedRoute)

Auditor = Annotated[Principal, Depends(allow(Role.AUDITOR, Role.PRIVACY_OFFICER))]
LegalAuditor = Annotated[
    Principal, Depends(allow(Role.AUDITOR, Role.PRIVACY_OFFICER, purpose=Purpose.LEGAL))
]

TrailLimit = Annotated[int, Query(ge=1, le=1000, description="Entries per page (at most 1000).")]

LOG = "log"
"""The cursor kind of the event log."""

PERSONAL_MASK = "[personal]"
_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def payload(event: object) -> dict[str, Any]:
    """An event's own attributes as JSON values, personal values masked: the log is read to
    check what happened and when; personal data is read per customer, for a purpose."""
    out = {k: jsonable(v) for k, v in vars(event).items() if k not in _ENVELOPE}
    spec = RULES.get(type(event))
    for rule in spec[1] if spec else ():
        value = out.get(rule.attribute)
        if value is None:
            continue
        if rule.item is None:
            out[rule.attribute] = PERSONAL_MASK
        elif isinstance(value, dict) and rule.item in value:
            out[rule.attribute] = {**value, rule.item: PERSONAL_MASK}
    return out


@router.get("/events", response_model=s.LogPage)
def log_events(
    ledger: LedgerDep,
    who: Auditor,
    request: Request,
    response: Response,
    limit: TrailLimit = 100,
    cursor: CursorParam = None,
) -> s.LogPage:
    """Page through the whole event log in order, straight from the event store."""
    after = position_after(LOG, cursor)
    head = ledger.recorder.max_notification_id() or 0
    page = ledger.log_page(after, limit + 1)
    items = [
        s.LogEvent(
            position=position,
            recorded_at=event.timestamp,
            type=event_type(event),
            aggregate_id=event.originator_id,
            version=event.originator_version,
            actor=getattr(event, "actor", None),
            payload=payload(event),
        )
        for position, event in page
    ]
    shown, next_ = paged(request, response, LOG, items, limit, lambda item: (item.position,))
    head = max(head, shown[-1].position if shown else 0)
    response.headers["X-Position"] = str(head)
    return s.LogPage(items=shown, next_cursor=next_, position=head, head=head)


def state_out(customer: Customer) -> s.CustomerState:
    return s.CustomerState(
        version=customer.version,
        policy_version=customer.policy_version,
        categories={
            category: s.CategoryOut(
                purposes=customer.purposes_of(category),
                fields=dict(customer.data.get(category, {})),
            )
            for category in customer.purposes
            if customer.holds_name(category)
        },
        consents=[
            s.ConsentOut(
                channel=channel,
                granted=consent.granted,
                changed_at=consent.changed_at,
                evidence=dict(consent.evidence),
            )
            for channel, consent in customer.consents.items()
        ],
        invoices=[
            s.InvoiceOut(
                invoice_id=invoice_id,
                amount=invoice.amount,
                currency=invoice.currency,
                status=invoice.status,
                issued_at=invoice.issued_at,
            )
            for invoice_id, invoice in customer.invoices.items()
        ],
        activity=[
            s.ActivityOut.model_validate(entry, from_attributes=True) for entry in customer.activity
        ],
        disclosures=[
            s.DisclosureAsOf.model_validate(d, from_attributes=True) for d in customer.disclosures
        ],
    )


@router.get("/customers/{customer_id}/state", response_model=s.CustomerAsOf)
def customer_state(
    customer_id: UUID,
    as_of: Annotated[datetime, Query(description="ISO-8601 time with a zone.")],
    ledger: LedgerDep,
    container: ContainerDep,
    who: LegalAuditor,
    x_purpose: PurposeHeader = None,
) -> s.CustomerAsOf:
    """The customer's data, consents and disclosures as they stood at ``as_of``, replayed
    from the events (declare X-Purpose: legal; the read is recorded)."""
    purpose = declared_purpose(
        container,
        who,
        x_purpose,
        customer_id,
        "state as of",
        only="legal",
        why="a customer's past state is read for legal compliance",
    )
    customer = ledger.customer_as_of(customer_id, as_of)
    ledger.record_access(
        customer_id,
        actor=who.actor,
        role=who.role.value,
        purpose=purpose,
        categories=sorted(c for c in customer.purposes if customer.holds_name(c))
        if customer
        else [],
        what=f"state as of {as_of.isoformat()}",
    )
    return s.CustomerAsOf(
        customer_id=customer_id,
        as_of=as_of,
        registered=customer is not None,
        state=state_out(customer) if customer is not None else None,
    )


def _trail(
    read: ViewRead,
    request: Request,
    customer_id: UUID | None,
    limit: int,
    cursor: str | None,
) -> s.TrailPage:
    view = read.view
    assert isinstance(view, AuditTrailView)
    kind = "customer-trail" if customer_id is not None else "trail"
    rows, position = view.trail(customer_id, after=position_after(kind, cursor), limit=limit + 1)
    read.reflect(position)
    items, next_ = paged(request, read.response, kind, rows, limit, position_key)
    return s.TrailPage(
        items=[s.TrailEntry(**row) for row in items], next_cursor=next_, position=position
    )


@router.get("/customers/{customer_id}/trail", response_model=s.TrailPage)
def customer_trail(
    customer_id: UUID,
    who: Auditor,
    ledger: LedgerDep,
    request: Request,
    read: Annotated[ViewRead, Depends(ReadFrom("audit_trail"))],
    limit: TrailLimit = 100,
    cursor: CursorParam = None,
) -> s.TrailPage:
    """Everything that happened to a customer's data, requests included, in log order
    (404 for an id that is not a customer's)."""
    ledger.ensure_customer(customer_id)
    return _trail(read, request, customer_id, limit, cursor)


@router.get("/trail", response_model=s.TrailPage)
def global_trail(
    who: Auditor,
    request: Request,
    read: Annotated[ViewRead, Depends(ReadFrom("audit_trail"))],
    limit: TrailLimit = 100,
    cursor: CursorParam = None,
) -> s.TrailPage:
    """Every event, for everyone, in log order, human-readable."""
    return _trail(read, request, None, limit, cursor)


@router.post("/verify", response_model=s.VerificationOut)
def verify_history(container: ContainerDep, who: Auditor) -> s.VerificationOut:
    """Walk the hash chain over the whole stored log; report the first position it breaks."""
    result = chain.verify(container.database.url, container.settings.database_schema)
    return s.VerificationOut(**result.as_dict())
