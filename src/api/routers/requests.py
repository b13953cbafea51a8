"""Data-rights requests: submission, verification, extension, denial, revocation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response, status

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
from rightsledger.domain import receipts
from rightsledger.domain.ledger import NotFoundError, Outcome, RightsLedger
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.domain.values import Purpose, RequestStatus, RequestType
from rightsledger.projections.requests import RequestQueueView
from rightsledger.security.keys import Principal, Role

router = APIRouter(prefix="/v1/requests", tags=["requests"])

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


def request_out(request: DataRightsRequest) -> s.RequestOut:
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
        overdue=request.is_overdue(datetime.now(UTC)),
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


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=s.RequestAccepted)
def submit_request(body: s.RequestIn, ledger: LedgerDep, who: Intake) -> s.RequestAccepted:
    """Receive a written request; its due date is set now, by the jurisdiction's rule."""
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
    request = ledger.request_after_command(outcome.id)
    return s.RequestAccepted(
        request_id=outcome.id,
        status=request.status,
        due_at=request.due_at,
        position=outcome.position,
    )


@router.get("", response_model=s.RequestPage)
def list_requests(
    who: Reader,
    read: Annotated[ViewRead, Depends(ReadFrom("request_queue"))],
    status_: Annotated[RequestStatus | None, Query(alias="status")] = None,
    type_: Annotated[RequestType | None, Query(alias="type")] = None,
    overdue: bool | None = None,
    due_before: datetime | None = None,
    customer_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> s.RequestPage:
    """The request queue, soonest due first; overdue is derived from the due date."""
    queue = read.view
    assert isinstance(queue, RequestQueueView)
    rows, position = queue.search(
        status=status_.value if status_ else None,
        request_type=type_.value if type_ else None,
        overdue=overdue,
        due_before=due_before,
        customer_id=customer_id,
        now=datetime.now(UTC),
        limit=limit,
        offset=offset,
    )
    read.reflect(position)
    return s.RequestPage(items=[s.RequestSummary(**row) for row in rows], position=position)


@router.get("/{request_id}", response_model=s.RequestOut)
def get_request(
    request_id: UUID,
    container: ContainerDep,
    who: Reader,
    x_purpose: PurposeHeader = None,
) -> s.RequestOut:
    """One request with its status, deadlines and reasons. The requester's own words (the
    statement, the document reference, the corrections asked for) are personal data: they
    are shown only to a reader declaring a purpose (X-Purpose), and that read is recorded."""
    request = container.ledger.get_request(request_id)
    shown = request_out(request)
    if x_purpose is None:
        return shown.model_copy(
            update={"statement": None, "document_reference": None, "corrections": None}
        )
    purpose = declared_purpose(container, who, x_purpose, request.customer_id, "request")
    container.ledger.record_access(
        request.customer_id,
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
        partner_id = UUID(str(notice["partner_id"]))
        try:
            names[partner_id] = ledger.get_partner(partner_id).name
        except NotFoundError:
            names[partner_id] = None
    return receipts.build_receipt(
        ledger.events.get(request_id),
        ledger.events.get(request.customer_id),
        partner_names=names,
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
