"""Data-rights requests: submission, verification, extension, denial, revocation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID

from eventsourcing.domain import Aggregate
from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from rightsledger.api import letters
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
from rightsledger.api.pages import BadCursorError, CursorParam, Limit, decode_cursor, paged
from rightsledger.api.routers.audit import payload
from rightsledger.domain import receipts
from rightsledger.domain.ledger import NotFoundError, Outcome, RightsLedger
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.domain.values import Purpose, RequestStatus, RequestType
from rightsledger.projections.audit import describe, event_type
from rightsledger.projections.requests import RequestQueueView
from rightsledger.security.keys import Principal, Role

router = APIRouter(prefix="/v1/requests", tags=["requests"], route_class=OffloadedRoute)

Intake = Annotated[Principal, Depends(allow(Role.INTAKE, Role.PRIVACY_OFFICER))]
Officer = Annotated[Principal, Depends(allow(Role.PRIVACY_OFFICER))]
ExportReader = Annotated[Principal, Depends(allow(Role.PRIVACY_OFFICER, purpose=Purpose.LEGAL))]
Reader = Annotated[Principal, Depends(allow(Role.INTAKE, Role.PRIVACY_OFFICER, Role.AUDITOR))]
AcceptHeader = Annotated[
    str | None,
    Header(alias="Accept", description="`text/html` for the letter; JSON otherwise."),
]
Download = Annotated[
    bool, Query(description="Answer as a file to save (`Content-Disposition: attachment`).")
]


OPEN_WORK = (RequestStatus.OPEN, RequestStatus.IN_PROGRESS)
"""What the inbox lists unless ``status`` says otherwise."""

QUEUE = "requests"
"""The cursor kind of the request list."""


def _seconds(delta: timedelta) -> timedelta:
    return timedelta(seconds=int(delta.total_seconds()))


def timeline(events: Sequence[Aggregate.Event]) -> list[s.TimelineEntry]:
    """Each of the request's events: when, who issued it, and what it changed (personal
    values masked; the requester's words are shown beside, for a declared purpose)."""
    entries = []
    for event in events:
        changes = payload(event)
        actor = changes.pop("actor", None)
        entries.append(
            s.TimelineEntry(
                version=event.originator_version,
                at=event.timestamp,
                type=event_type(event),
                actor=actor,
                summary=describe(event),
                changes=changes,
            )
        )
    return entries


def awaited_partners(
    request: DataRightsRequest, events: Sequence[Aggregate.Event]
) -> list[s.AwaitedPartner]:
    """Partners notified and still to acknowledge, with what they were told of and when."""
    notified_at = next(
        (e.timestamp for e in events if isinstance(e, DataRightsRequest.PartnersNotified)), None
    )
    return [
        s.AwaitedPartner(
            partner_id=n.partner_id,
            categories=list(n.categories),
            notified_at=notified_at or request.received_at,
        )
        for n in request.notified
        if n.partner_id in request.awaiting
    ]


def request_out(
    request: DataRightsRequest,
    events: Sequence[Aggregate.Event] | None = None,
    now: datetime | None = None,
) -> s.RequestOut:
    now = now or datetime.now(UTC)
    history = events or []
    still_open = not request.status.is_final
    return s.RequestOut(
        request_id=request.id,
        customer_id=request.customer_id,
        type=request.request_type,
        status=request.status,
        channel=request.channel.value,
        jurisdiction=request.jurisdiction,
        statement=request.statement,
        document_reference=request.document_reference,
        corrections=request.corrections,
        received_at=request.received_at,
        due_at=request.due_at,
        verified_at=request.verified_at,
        extension_reason=request.extension_reason,
        reason=request.reason,
        closed_at=request.closed_at,
        overdue=request.is_overdue(now),
        time_left=_seconds(request.due_at - now) if still_open and now <= request.due_at else None,
        overdue_by=_seconds(now - request.due_at) if request.is_overdue(now) else None,
        awaiting=awaited_partners(request, history),
        acknowledged=sorted(request.acknowledged, key=str),
        timeline=timeline(history),
        version=request.version,
    )


def _changed(ledger: RightsLedger, outcome: Outcome) -> s.RequestChanged:
    request = ledger.request_after_command(outcome.id)
    return s.RequestChanged(
        request_id=outcome.id,
        status=request.status,
        due_at=request.due_at,
        position=outcome.position,
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=s.RequestAccepted,
    responses={409: {"description": "A request of the same type for the customer is open"}},
)
def submit_request(body: s.RequestIn, ledger: LedgerDep, who: Intake) -> s.RequestAccepted:
    """Receive a written request; its due date is set now, by the jurisdiction's rule. While
    a request of the same type for the same customer is open, answers 409
    (`/problems/duplicate-request`) with that request's `request_id` and `href`."""
    outcome = ledger.submit_request(
        customer_id=body.customer_id,
        request_type=body.type.value,
        channel=body.channel,
        jurisdiction=body.jurisdiction,
        statement=body.statement,
        document_reference=body.document_reference,
        corrections=(
            {c.value: fields for c, fields in body.corrections.items()}
            if body.corrections
            else None
        ),
        actor=who.actor,
    )
    return s.RequestAccepted(
        request_id=outcome.id,
        status=outcome.status,
        due_at=outcome.due_at,
        position=outcome.position,
    )


StatusFilter = Annotated[
    list[RequestStatus] | None,
    Query(
        alias="status",
        description="Statuses to list (repeat the parameter for several); "
        "default: open and in_progress.",
    ),
]
TypeFilter = Annotated[
    list[RequestType] | None,
    Query(alias="type", description="Request types to list (repeatable)."),
]
JurisdictionFilter = Annotated[str | None, Query(min_length=1, max_length=64)]


def _queue(read: ViewRead) -> RequestQueueView:
    queue = read.view
    assert isinstance(queue, RequestQueueView)
    return queue


def _queue_after(cursor: str | None) -> tuple[datetime, UUID] | None:
    key = decode_cursor(QUEUE, cursor, 2)
    if key is None:
        return None
    try:
        due, request_id = key
        return datetime.fromisoformat(str(due)), UUID(str(request_id))
    except ValueError:
        raise BadCursorError(
            "the cursor is not one this service gave out; start again without it"
        ) from None


@router.get("", response_model=s.RequestPage)
def list_requests(
    who: Reader,
    request: Request,
    read: Annotated[ViewRead, Depends(ReadFrom("request_queue"))],
    status_: StatusFilter = None,
    type_: TypeFilter = None,
    jurisdiction: JurisdictionFilter = None,
    overdue: bool | None = None,
    due_before: datetime | None = None,
    customer_id: UUID | None = None,
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> s.RequestPage:
    """The inbox: open work (open, in progress) soonest due first, unless `status` names
    other statuses; overdue is derived from the due date. Pages by `cursor`."""
    rows, position = _queue(read).search(
        status=[st.value for st in status_ or OPEN_WORK],
        request_type=[t.value for t in type_] if type_ else None,
        jurisdiction=jurisdiction,
        overdue=overdue,
        due_before=due_before,
        customer_id=customer_id,
        now=datetime.now(UTC),
        limit=limit + 1,
        after=_queue_after(cursor),
    )
    read.reflect(position)
    items, next_ = paged(
        request,
        read.response,
        QUEUE,
        rows,
        limit,
        lambda row: (row["due_at"].isoformat(), str(row["request_id"])),
    )
    return s.RequestPage(
        items=[s.RequestSummary(**row) for row in items], next_cursor=next_, position=position
    )


@router.get("/summary", response_model=s.RequestCounts)
def summarise_requests(
    who: Reader,
    read: Annotated[ViewRead, Depends(ReadFrom("request_queue"))],
    type_: TypeFilter = None,
    jurisdiction: JurisdictionFilter = None,
    customer_id: UUID | None = None,
) -> s.RequestCounts:
    """How many requests there are in each status, and how many open ones are overdue."""
    by_status, overdue, position = _queue(read).counts(
        now=datetime.now(UTC),
        request_type=[t.value for t in type_] if type_ else None,
        jurisdiction=jurisdiction,
        customer_id=customer_id,
    )
    read.reflect(position)
    counts = {st: by_status.get(st.value, 0) for st in RequestStatus}
    return s.RequestCounts(
        by_status=counts,
        open_work=sum(counts[st] for st in OPEN_WORK),
        overdue=overdue,
        position=position,
    )


@router.get("/{request_id}", response_model=s.RequestOut)
def get_request(
    request_id: UUID,
    container: ContainerDep,
    who: Reader,
    x_purpose: PurposeHeader = None,
) -> s.RequestOut:
    """One request, from its events: status, deadlines and reasons, the time left until the
    due date (or how long it is overdue), the partners still awaited, and its timeline (each
    event with its time, who issued it and what it changed). The requester's own words (the
    statement, the document reference, the corrections asked for) are personal data: they
    are shown only to a reader declaring a purpose (X-Purpose), and that read is recorded."""
    found, events = container.ledger.request_with_history(request_id)
    shown = request_out(found, events)
    if x_purpose is None:
        return shown.model_copy(
            update={"statement": None, "document_reference": None, "corrections": None}
        )
    purpose = declared_purpose(container, who, x_purpose, found.customer_id, "request")
    container.ledger.record_access(
        found.customer_id,
        actor=who.actor,
        role=who.role.value,
        purpose=purpose,
        categories=["request"],
        what=f"data-rights request {request_id}",
    )
    return shown


@router.post("/{request_id}/verify", response_model=s.RequestChanged)
def verify_request(
    request_id: UUID, body: s.VerifyIn, ledger: LedgerDep, who: Officer
) -> s.RequestChanged:
    """Record that the requester's identity was verified; the request is in progress."""
    outcome = ledger.verify_request(
        request_id, method=body.method, reference=body.reference, actor=who.actor
    )
    return _changed(ledger, outcome)


@router.post("/{request_id}/extend", response_model=s.RequestChanged)
def extend_request(
    request_id: UUID, body: s.ReasonIn, ledger: LedgerDep, who: Officer
) -> s.RequestChanged:
    """Extend the deadline once, before it passes, by the jurisdiction's extension."""
    return _changed(ledger, ledger.extend_request(request_id, reason=body.reason, actor=who.actor))


@router.post("/{request_id}/deny", response_model=s.RequestChanged)
def deny_request(
    request_id: UUID, body: s.ReasonIn, ledger: LedgerDep, who: Officer
) -> s.RequestChanged:
    """Deny the request, stating the reason."""
    return _changed(ledger, ledger.deny_request(request_id, reason=body.reason, actor=who.actor))


@router.post("/{request_id}/revoke", response_model=s.RequestChanged)
def revoke_request(
    request_id: UUID, ledger: LedgerDep, who: Intake, body: s.RevokeIn | None = None
) -> s.RequestChanged:
    """The requester withdraws the request (the body, with its optional reason, may be left
    out)."""
    reason = body.reason if body is not None else None
    return _changed(ledger, ledger.revoke_request(request_id, reason=reason, actor=who.actor))


@router.get("/{request_id}/export", response_model=s.ExportOut, responses=letters.RESPONSES)
def get_export(
    request_id: UUID,
    container: ContainerDep,
    who: ExportReader,
    response: Response,
    x_purpose: PurposeHeader = None,
    accept: AcceptHeader = None,
    download: Download = False,
) -> s.ExportOut | Response:
    """The access export the worker assembled: every piece of personal data held, why,
    its source, consents with evidence, disclosures, who read the data, and retention.
    Declare X-Purpose: legal; the read is recorded. `Accept: text/html` answers the letter
    to the customer instead; `?download=true` makes either a file
    (`rightsledger-access-<request id>.json` or `.html`)."""
    representation = letters.negotiate(accept)
    request = container.ledger.get_request(request_id)
    purpose = declared_purpose(
        container,
        who,
        x_purpose,
        request.customer_id,
        "access export",
        only="legal",
        why="an access export is read to answer a data-rights request",
    )
    stored = container.exports.get(request_id)
    if stored is None:
        raise NotFoundError(
            "no export for this request (only access requests have one, once fulfilled; "
            "exports are deleted when the customer is erased)",
            field="request_id",
        )
    container.ledger.record_access(
        request.customer_id,
        actor=who.actor,
        role=who.role.value,
        purpose=purpose,
        categories=sorted(stored["document"].get("categories", {})),
        what="access export" if representation == "json" else "access export (letter)",
    )
    headers = letters.attachment(f"rightsledger-access-{request_id}", representation)
    if representation == "html":
        return letters.letter(
            "export.html",
            headers if download else None,
            request_id=request_id,
            customer_id=stored["customer_id"],
            digest=stored["digest"],
            document=stored["document"],
        )
    response.headers["Vary"] = "Accept"
    if download:
        response.headers.update(headers)
    return s.ExportOut(**stored)


def build_receipt(ledger: RightsLedger, request_id: UUID) -> receipts.Receipt:
    """A request's receipt, rebuilt from its events and its customer's, as stored now."""
    request = ledger.get_request(request_id)
    names: dict[UUID, str | None] = {}
    for notice in request.notified:
        partner_id = notice.partner_id
        try:
            names[partner_id] = ledger.get_partner(partner_id).name
        except NotFoundError:
            names[partner_id] = None
    return receipts.build_receipt(
        ledger.events.get(request_id),
        ledger.events.get(request.customer_id),
        partner_names=names,
        retention=ledger.retention.describe(),
    )


@router.get("/{request_id}/receipt", response_model=s.ReceiptOut, responses=letters.RESPONSES)
def get_receipt(
    request_id: UUID,
    container: ContainerDep,
    who: Reader,
    response: Response,
    accept: AcceptHeader = None,
    download: Download = False,
) -> s.ReceiptOut | Response:
    """What a fulfilled request did, rebuilt from the events: for an access request what was
    exported (categories, digest); for a correction the fields changed and the partners
    told; for an opt-out the channels withdrawn; for a deletion each category and field
    erased, or kept with its legal ground and purge date. It holds no personal value, so it
    needs no X-Purpose. 409 `not-fulfilled` until the request is fulfilled.
    `Accept: text/html` answers the letter; `?download=true` makes either a file
    (`rightsledger-receipt-<request id>.json` or `.html`)."""
    representation = letters.negotiate(accept)
    receipt = build_receipt(container.ledger, request_id)
    headers = letters.attachment(f"rightsledger-receipt-{request_id}", representation)
    if representation == "html":
        return letters.letter(
            "receipt.html", headers if download else None, request_id=request_id, receipt=receipt
        )
    response.headers["Vary"] = "Accept"
    if download:
        response.headers.update(headers)
    return s.ReceiptOut.model_validate(receipt)
