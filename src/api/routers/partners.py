"""Partners: the recipients customer data may be disclosed to."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request, status

from rightsledger.api import schemas as s
from rightsledger.api.deps import LedgerDep, ReadFrom, ViewRead, allow
from rightsledger.api.pages import CursorParam, Limit, disclosure_page
from rightsledger.api.problems import ApiProblemError
from rightsledger.domain.partner import Partner
from rightsledger.security.keys import Principal, Role

router = APIRouter(prefix="/v1/partners", tags=["partners"])

Manager = Annotated[Principal, Depends(allow(Role.PRIVACY_OFFICER))]
Reader = Annotated[
    Principal,
    Depends(allow(Role.PRIVACY_OFFICER, Role.AUDITOR, Role.SUPPORT, Role.BILLING)),
]

Acknowledger = Annotated[Principal, Depends(allow(Role.PARTNER, Role.PRIVACY_OFFICER))]
RegisterReader = Annotated[Principal, Depends(allow(Role.PRIVACY_OFFICER, Role.AUDITOR))]


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
    notified without asking for an acknowledgement)."""
    if who.role is Role.PARTNER and who.partner_id != partner_id:
        raise ApiProblemError(
            403,
            "Forbidden",
            "a partner key may acknowledge only its own partner's notifications",
            slug="forbidden",
        )
    outcome = ledger.acknowledge(body.request_id, partner_id=partner_id, actor=who.actor)
    request = ledger.request_after_command(body.request_id)
    return s.RequestChanged(
        request_id=body.request_id,
        status=request.status,
        due_at=request.due_at,
        position=outcome.position,
    )
