"""Partners: the recipients customer data may be disclosed to."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, status
from rightsledger.api import schemas as s
from rightsledger.api.deps import LedgerDep, allow
from rightsledger.domain.partner import Partner
from rightsledger.security.keys import Principal, Role

router = APIRouter(prefix="/v1/partners", tags=["partners"])

Manager = Annotated[Principal, Depends(allow(Role.PRIVACY_OFFICER))]
Reader = Annotated[
    Principal,
    Depends(allow(Role.PRIVACY_OFFICER, Role.AUDITOR, Role.SUPPORT, Role.BILLING)),
]


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


@router.get("/{partner_id}", response_model=s.PartnerOut)
def get_partner(partner_id: UUID, ledger: LedgerDep, who: Reader) -> s.PartnerOut:
    """A partner and whether its confidentiality contract is valid today."""
    return partner_out(ledger.get_partner(partner_id))
