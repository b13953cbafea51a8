"""Customers: registration, corrections, consents, invoices, activity and disclosures."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

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
from rightsledger.domain.errors import InvalidCommandError
from rightsledger.domain.ledger import NotFoundError
from rightsledger.domain.values import Channel
from rightsledger.projections.customers import CustomerProfileView
from rightsledger.projections.lookup import CustomerLookupView, Identifier
from rightsledger.security.keys import Principal, Role

router = APIRouter(prefix="/v1/customers", tags=["customers"], route_class=OffloadedRoute)

Registrar = Annotated[Principal, Depends(allow(Role.INTAKE))]
Reader = Annotated[
    Principal,
    Depends(allow(Role.SUPPORT, Role.BILLING, Role.MARKETING, Role.PRIVACY_OFFICER, Role.INTAKE)),
]
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
DisclosureReader = Annotated[Principal, Depends(allow(Role.PRIVACY_OFFICER, Role.AUDITOR))]
Discloser = Annotated[Principal, Depends(allow(Role.PRIVACY_OFFICER, Role.BILLING, Role.SUPPORT))]


def held_categories(row: dict[str, Any]) -> dict[str, list[str]]:
    """Categories held for the customer, with the purposes each is held for now."""
    consents = row["consents"]
    consenting = any(state["granted"] for state in consents.values())
    held = {"billing": bool(row["invoices"]), "activity": bool(row["activity"])}
    out: dict[str, list[str]] = {}
    for category, purposes in row["purposes"].items():
        if not (row["data"].get(category) or held.get(category)):
            continue
        effective = list(purposes)
        if category == "identity_contact" and consenting:
            effective.append("marketing")
        out[category] = effective
    return out


def visible(row: dict[str, Any], purpose: str, channel: str | None) -> list[str]:
    """Categories collected for the purpose; marketing needs consent on that very channel."""
    held = held_categories(row)
    if purpose == "marketing":
        granted = row["consents"].get(channel or "", {}).get("granted", False)
        return ["identity_contact"] if granted and "identity_contact" in held else []
    return [category for category, purposes in held.items() if purpose in purposes]


def profile_out(row: dict[str, Any], shown: list[str] | None = None) -> s.CustomerOut:
    """The API shape of a customer_profile row, limited to the ``shown`` categories."""
    consents = row["consents"]
    categories: dict[str, s.CategoryOut] = {}
    for category, purposes in held_categories(row).items():
        if shown is not None and category not in shown:
            continue
        categories[category] = s.CategoryOut(
            purposes=purposes, fields=row["data"].get(category, {})
        )
    billing = shown is None or "billing" in shown
    activity = shown is None or "activity" in shown
    row = {**row, "invoices": row["invoices"] if billing else {}}
    row["activity"] = row["activity"] if activity else []
    return s.CustomerOut(
        customer_id=row["customer_id"],
        version=row["version"],
        policy_version=row["policy_version"],
        registered_at=row["registered_at"],
        modified_at=row["modified_at"],
        categories=categories,
        consents=[s.ConsentOut(channel=channel, **state) for channel, state in consents.items()],
        invoices=[
            s.InvoiceOut(invoice_id=UUID(invoice_id), **invoice)
            for invoice_id, invoice in row["invoices"].items()
        ],
        activity=[s.ActivityOut(**entry) for entry in row["activity"]],
        erased_at=row.get("erased_at"),
    )


def _profile(customer_id: UUID, read: ViewRead) -> dict[str, Any]:
    view = read.view
    assert isinstance(view, CustomerProfileView)
    row, position = view.get(customer_id)
    read.reflect(position)
    if row is None:
        raise NotFoundError(
            f"no customer with id {customer_id} (as of position {position}; pass "
            "?min_position=N to read your own writes)",
            field="id",
        )
    return row


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
        if body.account.reference is not None:
            account["reference"] = body.account.reference
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
def get_customer(
    customer_id: UUID,
    container: ContainerDep,
    who: Reader,
    read: Annotated[ViewRead, Depends(ReadFrom("customer_profile"))],
    x_purpose: PurposeHeader = None,
    channel: Annotated[
        Channel | None, Query(description="For marketing reads: the channel to be used.")
    ] = None,
) -> s.CustomerOut:
    """The customer's personal data collected for the declared purpose (X-Purpose), with the
    purposes each category is held for; every read is recorded in the customer's trail."""
    purpose = declared_purpose(container, who, x_purpose, customer_id, "profile")
    row = _profile(customer_id, read)
    shown = visible(row, purpose, channel.value if channel else None)
    container.ledger.record_access(
        customer_id,
        actor=who.actor,
        role=who.role.value,
        purpose=purpose,
        categories=shown,
        what="profile",
    )
    return profile_out(row, shown)


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
def get_consents(
    customer_id: UUID,
    container: ContainerDep,
    who: ConsentReader,
    read: Annotated[ViewRead, Depends(ReadFrom("consent_ledger"))],
) -> s.ConsentsOut:
    """Current marketing consent per channel, and every grant and withdrawal with evidence."""
    rows, position = container.views.consent_ledger.history(customer_id)
    read.reflect(position)
    if not rows:
        profile, _ = container.views.customer_profile.get(customer_id)
        if profile is None:
            raise NotFoundError(f"no customer with id {customer_id}", field="id")
    current: dict[str, s.ConsentOut] = {}
    for row in rows:
        current[row["channel"]] = s.ConsentOut(
            channel=row["channel"],
            granted=row["granted"],
            changed_at=row["recorded_at"],
            evidence=row["evidence"],
        )
    return s.ConsentsOut(
        customer_id=customer_id,
        current=list(current.values()),
        history=[s.ConsentEventOut(**row) for row in rows],
        position=position,
    )


@router.get("/{customer_id}/disclosures", response_model=s.DisclosurePage)
def customer_disclosures(
    customer_id: UUID,
    who: DisclosureReader,
    ledger: LedgerDep,
    request: Request,
    read: Annotated[ViewRead, Depends(ReadFrom("disclosures"))],
    limit: Limit = 100,
    cursor: CursorParam = None,
) -> s.DisclosurePage:
    """Every share of this customer's data: to whom, on which basis, for what, when (in log
    order, paged by `cursor`; 404 for an id that is not a customer's)."""
    ledger.ensure_customer(customer_id)
    return disclosure_page(
        read, request, by="customer", value=customer_id, limit=limit, cursor=cursor
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
    customer_id: UUID,
    body: s.DisclosureIn,
    ledger: LedgerDep,
    container: ContainerDep,
    who: Discloser,
) -> s.CommandAccepted:
    """Share categories with a partner: legal obligation, service provider or fraud prevention;
    for a purpose the caller's role may read personal data for (RIGHTSLEDGER_ROLE_PURPOSES)."""
    allowed = container.settings.role_purposes.get(who.role.value, [])
    if body.purpose not in allowed:
        raise ApiProblemError(
            403,
            "Purpose not allowed",
            f"role {who.role.value!r} may not share personal data for {body.purpose!r}: "
            "a role shares only for the purposes it may read it for",
            slug="purpose-not-allowed",
        )
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


def _identifying(description: str) -> Any:
    return Query(min_length=1, max_length=320, description=description)


@router.get("", response_model=s.CustomerMatches)
def find_customers(
    request: Request,
    response: Response,
    container: ContainerDep,
    who: Reader,
    read: Annotated[ViewRead, Depends(ReadFrom("customer_lookup"))],
    email: Annotated[
        str | None, _identifying("Trimmed and casefolded before matching.")
    ] = None,
    phone: Annotated[
        str | None, _identifying("Matched on its digits (a leading + or 00 read as +).")
    ] = None,
    account: Annotated[
        str | None, _identifying("The account reference; case and spaces ignored.")
    ] = None,
    x_purpose: PurposeHeader = None,
    channel: Annotated[
        Channel | None, Query(description="For marketing reads: the channel to be used.")
    ] = None,
    limit: Limit = 20,
    cursor: CursorParam = None,
) -> s.CustomerMatches:
    """Find customers by exactly one of email, phone or account reference, through the blind
    index (no clear text is searched). Each customer found is answered as the profile is,
    limited to the declared purpose (X-Purpose), and each is recorded as a read."""
    given = [
        (kind, value)
        for kind, value in (
            (Identifier.EMAIL, email),
            (Identifier.PHONE, phone),
            (Identifier.ACCOUNT, account),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise InvalidCommandError(
            "find a customer by exactly one of ?email=, ?phone= or ?account=",
            field="email" if not given else given[1][0].value,
        )
    kind, value = given[0]
    purpose = declared_purpose(container, who, x_purpose, None, "lookup")
    after = decode_cursor(f"customers:{kind.value}", cursor, 1)
    view = read.view
    assert isinstance(view, CustomerLookupView)
    rows, position = view.find(
        kind, value, after=UUID(str(after[0])) if after else None, limit=limit + 1
    )
    read.reflect(position)
    following = next_cursor(
        f"customers:{kind.value}", rows, limit, lambda row: (str(row["customer_id"]),)
    )
    items = []
    for row in trim(rows, limit):
        shown = visible(row, purpose, channel.value if channel else None)
        container.ledger.record_access(
            row["customer_id"],
            actor=who.actor,
            role=who.role.value,
            purpose=purpose,
            categories=shown,
            what="lookup",
        )
        items.append(profile_out(row, shown))
    link_next(request, response, following)
    return s.CustomerMatches(items=items, next_cursor=following, position=position)
