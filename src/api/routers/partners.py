"""Partners: the recipients customer data may be disclosed to."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

from rightsledger.api import schemas as s
from rightsledger.api.deps import LedgerDep, ReadFrom, ViewRead, allow
from rightsledger.api.offload import OffloadedRoute
from rightsledger.api.pages import (
    CursorParam,
    Limit,
    decode_cursor,
    disclosure_page,
    link_next,
    next_cursor,
    trim,
)
from rightsledger.api.problems import ApiProblemError
from rightsledger.domain.ledger import NotFoundError
from rightsledger.domain.partner import Partner
from rightsledger.projections.partners import NoticeStatus, PartnersView, contract_valid_on
from rightsledger.security.keys import Principal, Role

router = APIRouter(prefix="/v1/partners", tags=["partners"], route_class=OffloadedRoute)

Manager = Annotated[Principal, Depends(allow(Role.PRIVACY_OFFICER))]
Reader = Annotated[
    Principal,
    Depends(allow(Role.PRIVACY_OFFICER, Role.AUDITOR, Role.SUPPORT, Role.BILLING)),
]

Acknowledger = Annotated[Principal, Depends(allow(Role.PARTNER, Role.PRIVACY_OFFICER))]
RegisterReader = Annotated[Principal, Depends(allow(Role.PRIVACY_OFFICER, Role.AUDITOR))]
NoticeReader = Annotated[Principal, Depends(allow(Role.PARTNER, Role.PRIVACY_OFFICER))]


def _own_partner_only(who: Principal, partner_id: UUID, what: str) -> None:
    if who.role is Role.PARTNER and who.partner_id != partner_id:
        raise ApiProblemError(
            403,
            "Forbidden",
            f"a partner key may {what} only its own partner's notifications",
            slug="forbidden",
        )


def partner_out(partner: Partner) -> s.PartnerOut:
    return s.PartnerOut(
        partner_id=partner.id,
        name=partner.name,
        kind=partner.kind.value,
        contract_reference=partner.contract_reference,
        confidentiality_agreement=partner.confidentiality_agreement,
        contract_valid_until=(
            date.fromisoformat(partner.contract_valid_until)
            if partner.contract_valid_until
            else None
        ),
        contract_valid_today=partner.contract_valid_on(datetime.now(UTC)),
        registered_at=partner.created_on,
        version=partner.version,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=s.PartnerCreated)
def register_partner(body: s.PartnerIn, ledger: LedgerDep, who: Manager) -> s.PartnerCreated:
    """Register a recipient; contracted providers need a confidentiality contract."""
    outcome = ledger.register_partner(
        name=body.name,
        kind=body.kind.value,
        contract_reference=body.contract_reference,
        confidentiality_agreement=body.confidentiality_agreement,
        contract_valid_until=body.contract_valid_until,
        actor=who.actor,
    )
    return s.PartnerCreated(partner_id=outcome.id, position=outcome.position)


@router.post("/{partner_id}/contract", response_model=s.CommandAccepted)
def renew_contract(
    partner_id: UUID, body: s.ContractRenewal, ledger: LedgerDep, who: Manager
) -> s.CommandAccepted:
    """Renew (or shorten) the partner's contract and confidentiality agreement; every
    disclosure from then on, through any API process, is decided on the new terms."""
    outcome = ledger.renew_partner_contract(
        partner_id,
        contract_reference=body.contract_reference,
        confidentiality_agreement=body.confidentiality_agreement,
        valid_until=body.valid_until,
        actor=who.actor,
    )
    return s.CommandAccepted(id=outcome.id, position=outcome.position)


@router.get("/{partner_id}", response_model=s.PartnerOut)
def get_partner(partner_id: UUID, ledger: LedgerDep, who: Reader) -> s.PartnerOut:
    """A partner and whether its confidentiality contract is valid today."""
    return partner_out(ledger.get_partner(partner_id))


@router.get("/{partner_id}/disclosures", response_model=s.DisclosurePage)
def partner_disclosures(
    partner_id: UUID,
    who: RegisterReader,
    ledger: LedgerDep,
    request: Request,
    read: Annotated[ViewRead, Depends(ReadFrom("disclosures"))],
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> s.DisclosurePage:
    """The disclosures register for one partner: what it received, on which basis, when (in
    log order, paged by `cursor`; 404 for an unknown partner)."""
    ledger.get_partner(partner_id)
    return disclosure_page(
        read, request, by="partner", value=partner_id, limit=limit, cursor=cursor
    )


@router.post("/{partner_id}/acknowledgements", response_model=s.RequestChanged)
def acknowledge(
    partner_id: UUID, body: s.AcknowledgementIn, ledger: LedgerDep, who: Acknowledger
) -> s.RequestChanged:
    """A partner confirms it acted on a deletion notification sent to it (corrections are
    notified without asking for an acknowledgement). Acknowledging again answers the same,
    recording nothing."""
    _own_partner_only(who, partner_id, "acknowledge")
    outcome = ledger.acknowledge(body.request_id, partner_id=partner_id, actor=who.actor)
    request = ledger.request_after_command(body.request_id)
    return s.RequestChanged(
        request_id=body.request_id,
        status=request.status,
        due_at=request.due_at,
        position=outcome.position,
    )


def _partner_row_out(row: dict[str, Any], today: date) -> s.PartnerOut:
    return s.PartnerOut(
        partner_id=row["partner_id"],
        name=row["name"],
        kind=row["kind"],
        contract_reference=row["contract_reference"],
        confidentiality_agreement=row["confidentiality_agreement"],
        contract_valid_until=row["contract_valid_until"],
        contract_valid_today=contract_valid_on(row, today),
        registered_at=row["registered_at"],
        version=row["version"],
    )


def _partners_view(read: ViewRead) -> PartnersView:
    view = read.view
    assert isinstance(view, PartnersView)
    return view


@router.get("", response_model=s.PartnerPage)
def list_partners(
    request: Request,
    response: Response,
    who: Reader,
    read: Annotated[ViewRead, Depends(ReadFrom("partners"))],
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> s.PartnerPage:
    """Every partner by name, with its kind and contract: the date it is valid until and
    whether it is valid today (decided when read)."""
    after = decode_cursor("partners", cursor, 2)
    rows, position = _partners_view(read).list_partners(
        after=(str(after[0]), UUID(str(after[1]))) if after else None, limit=limit + 1
    )
    read.reflect(position)
    following = next_cursor(
        "partners", rows, limit, lambda row: (row["name"], str(row["partner_id"]))
    )
    link_next(request, response, following)
    today = datetime.now(UTC).date()
    return s.PartnerPage(
        items=[_partner_row_out(row, today) for row in trim(rows, limit)],
        next_cursor=following,
        position=position,
    )


@router.get("/{partner_id}/notifications", response_model=s.NotificationPage)
def partner_notifications(
    partner_id: UUID,
    request: Request,
    response: Response,
    who: NoticeReader,
    read: Annotated[ViewRead, Depends(ReadFrom("partners"))],
    notice_status: Annotated[
        NoticeStatus | None,
        Query(
            alias="status",
            description="awaiting (to acknowledge), acknowledged, informed (a correction, "
            "nothing to acknowledge) or lapsed (closed before it was acknowledged).",
        ),
    ] = None,
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> s.NotificationPage:
    """What the partner was notified of and what it still owes: each request with the
    categories it received, when it was told and the request's due date, soonest due first.
    A partner key reads only its own partner's (an unknown partner is 404 for everyone)."""
    kind = f"notifications:{notice_status.value if notice_status else 'all'}"
    after = decode_cursor(kind, cursor, 2)
    known, rows, position = _partners_view(read).notifications(
        partner_id,
        status=notice_status,
        after=(datetime.fromisoformat(str(after[0])), UUID(str(after[1]))) if after else None,
        limit=limit + 1,
    )
    read.reflect(position)
    if known is None:
        raise NotFoundError(
            f"no partner with id {partner_id} (as of position {position}; pass "
            "?min_position=N to read your own writes)",
            field="partner_id",
        )
    _own_partner_only(who, partner_id, "read")
    following = next_cursor(
        kind, rows, limit, lambda row: (row["due_at"].isoformat(), str(row["request_id"]))
    )
    link_next(request, response, following)
    return s.NotificationPage(
        partner_id=partner_id,
        items=[
            s.NotificationOut(
                request_id=row["request_id"],
                request_type=row["request_type"],
                categories=list(row["categories"]),
                status=row["status"],
                notified_at=row["notified_at"],
                due_at=row["due_at"],
                acknowledged_at=row["acknowledged_at"],
            )
            for row in trim(rows, limit)
        ],
        next_cursor=following,
        position=position,
    )
