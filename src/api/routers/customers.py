"""Customers: registration, corrections, consents, invoices, activity and disclosures."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, status
from rightsledger.api import schemas as s
from rightsledger.api.deps import LedgerDep, allow
from rightsledger.domain.customer import Customer
from rightsledger.security.keys import Principal, Role

router = APIRouter(prefix="/v1/customers", tags=["customers"])

Registrar = Annotated[Principal, Depends(allow(Role.INTAKE))]
Reader = Annotated[Principal, Depends(allow(Role.SUPPORT, Role.BILLING, Role.PRIVACY_OFFICER))]
Corrector = Annotated[Principal, Depends(allow(Role.SUPPORT, Role.PRIVACY_OFFICER))]
ConsentWriter = Annotated[
    Principal, Depends(allow(Role.INTAKE, Role.SUPPORT, Role.MARKETING, Role.PRIVACY_OFFICER))
]
ConsentReader = Annotated[
    Principal,
    Depends(allow(Role.SUPPORT, Role.MARKETING, Role.PRIVACY_OFFICER, Role.AUDITOR)),
]
Biller = Annotated[Principal, Depends(allow(Role.BILLING))]
ActivityWriter = Annotated[Principal, Depends(allow(Role.SUPPORT))]
Discloser = Annotated[Principal, Depends(allow(Role.PRIVACY_OFFICER, Role.BILLING, Role.SUPPORT))]


def customer_out(customer: Customer) -> s.CustomerOut:
    categories = {}
    for category in customer.purposes:
        if not customer.holds_name(category):
            continue
        categories[category] = s.CategoryOut(
            purposes=customer.purposes_of(category), fields=dict(customer.data.get(category, {}))
        )
    return s.CustomerOut(
        customer_id=customer.id,
        version=customer.version,
        policy_version=customer.policy_version,
        registered_at=customer.created_on,
        modified_at=customer.modified_on,
        categories=categories,
        consents=[
            s.ConsentOut(channel=channel, **state) for channel, state in customer.consents.items()
        ],
        invoices=[
            s.InvoiceOut(invoice_id=UUID(invoice_id), **invoice)
            for invoice_id, invoice in customer.invoices.items()
        ],
        activity=[s.ActivityOut(**entry) for entry in customer.activity],
        disclosures=[s.DisclosureOut(**d) for d in customer.disclosures],
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=s.CustomerCreated)
def register_customer(
    body: s.CustomerCreate, ledger: LedgerDep, who: Registrar
) -> s.CustomerCreated:
    """Register a customer with the personal data collected, by category and purpose."""
    account = None
    if body.account is not None:
        account = {"plan": body.account.plan}
        if body.account.activated_at is not None:
            account["activated_at"] = body.account.activated_at.isoformat()
    outcome = ledger.register_customer(
        policy_version=body.policy_version,
        identity=body.identity.model_dump(exclude_none=True),
        account=account,
        payment_method=body.payment_method.model_dump() if body.payment_method else None,
        purposes=(
            {c.value: [p.value for p in ps] for c, ps in body.purposes.items()}
            if body.purposes is not None
            else None
        ),
        actor=who.actor,
    )
    return s.CustomerCreated(customer_id=outcome.id, position=outcome.position)


@router.get("/{customer_id}", response_model=s.CustomerOut)
def get_customer(customer_id: UUID, ledger: LedgerDep, who: Reader) -> s.CustomerOut:
    """The customer's current personal data by category, with the purposes it is held for."""
    return customer_out(ledger.get_customer(customer_id))


@router.patch("/{customer_id}", response_model=s.CommandAccepted)
def correct_customer(
    customer_id: UUID, body: s.CustomerPatch, ledger: LedgerDep, who: Corrector
) -> s.CommandAccepted:
    """Correct inaccurate data; each category corrected is recorded as its own event."""
    outcome = ledger.correct_customer(customer_id, body.changes(), actor=who.actor)
    return s.CommandAccepted(id=outcome.id, position=outcome.position)


@router.post("/{customer_id}/consents", response_model=s.CommandAccepted)
def change_consent(
    customer_id: UUID, body: s.ConsentChange, ledger: LedgerDep, who: ConsentWriter
) -> s.CommandAccepted:
    """Grant or withdraw marketing consent on one channel, with its evidence."""
    outcome = ledger.change_consent(
        customer_id,
        channel=body.channel.value,
        granted=body.granted,
        evidence=body.evidence.model_dump(),
        actor=who.actor,
    )
    return s.CommandAccepted(id=outcome.id, position=outcome.position)


@router.get("/{customer_id}/consents", response_model=s.ConsentsOut)
def get_consents(customer_id: UUID, ledger: LedgerDep, who: ConsentReader) -> s.ConsentsOut:
    """Current marketing consent per channel, and every grant and withdrawal."""
    customer = ledger.get_customer(customer_id)
    history = [
        s.ConsentEventOut(
            channel=e.channel,
            granted=isinstance(e, Customer.ConsentGranted),
            evidence=e.evidence,
            recorded_at=e.timestamp,
            actor=e.actor,
            version=e.originator_version,
        )
        for e in ledger.consent_history(customer_id)
    ]
    return s.ConsentsOut(
        customer_id=customer_id,
        current=[s.ConsentOut(channel=c, **state) for c, state in customer.consents.items()],
        history=history,
    )


@router.post(
    "/{customer_id}/invoices", status_code=status.HTTP_201_CREATED, response_model=s.CommandAccepted
)
def record_invoice(
    customer_id: UUID, body: s.InvoiceIn, ledger: LedgerDep, who: Biller
) -> s.CommandAccepted:
    """Record an invoice; billing records are retained for regulatory compliance."""
    outcome = ledger.record_invoice(
        customer_id,
        amount=body.amount,
        currency=body.currency,
        status=body.status.value,
        issued_at=body.issued_at,
        actor=who.actor,
    )
    return s.CommandAccepted(id=outcome.id, position=outcome.position)


@router.post(
    "/{customer_id}/activity", status_code=status.HTTP_201_CREATED, response_model=s.CommandAccepted
)
def log_activity(
    customer_id: UUID, body: s.ActivityIn, ledger: LedgerDep, who: ActivityWriter
) -> s.CommandAccepted:
    """Log network or account activity for security, legal or troubleshooting reasons."""
    outcome = ledger.log_activity(
        customer_id,
        kind=body.kind.value,
        reason=body.reason.value,
        detail=body.detail,
        occurred_at=body.occurred_at,
        actor=who.actor,
    )
    return s.CommandAccepted(id=outcome.id, position=outcome.position)


@router.post(
    "/{customer_id}/disclosures",
    status_code=status.HTTP_201_CREATED,
    response_model=s.CommandAccepted,
)
def disclose(
    customer_id: UUID, body: s.DisclosureIn, ledger: LedgerDep, who: Discloser
) -> s.CommandAccepted:
    """Share categories with a partner: legal obligation, service provider or fraud prevention."""
    outcome = ledger.disclose(
        customer_id,
        partner_id=body.partner_id,
        basis=body.basis,
        categories=[c.value for c in body.categories],
        purpose=body.purpose,
        reference=body.reference,
        actor=who.actor,
    )
    return s.CommandAccepted(id=outcome.id, position=outcome.position)
