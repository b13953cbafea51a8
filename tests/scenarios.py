"""Scenario steps the tests share, straight through the ledger (no HTTP, no worker).

Each step is one command, or the few that always go together, with the values most tests
need as defaults: a test names only the values it asserts on. The ids come back as UUIDs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from uuid import UUID

from rightsledger.domain.ledger import RightsLedger
from tests.conftest import EVIDENCE

FAR_FUTURE = date(2099, 1, 1)
"""A contract end no test reaches."""


def stopped_at(moment: datetime) -> Callable[[], datetime]:
    """A clock that always reads ``moment`` (for a ledger's or a worker's ``clock``)."""
    return lambda: moment


def log_head(ledger: RightsLedger) -> int:
    """The position of the last event in the log (0 when it is empty)."""
    return ledger.recorder.max_notification_id() or 0


def customer(
    ledger: RightsLedger,
    name: str = "Ann",
    *,
    identity: dict[str, str] | None = None,
    policy_version: str = "v1",
    actor: str = "intake:t",
) -> UUID:
    """A customer with only a name (or the ``identity`` given)."""
    return ledger.register_customer(
        policy_version=policy_version, identity=identity or {"name": name}, actor=actor
    ).id


def customers(ledger: RightsLedger, count: int) -> list[UUID]:
    """``count`` customers named C0, C1, ..."""
    return [customer(ledger, f"C{i}", actor="i") for i in range(count)]


def toggle(ledger: RightsLedger, who: list[UUID], rounds: int, granted: bool = True) -> None:
    """``rounds`` consent changes per customer, alternating; the first grants when ``granted``."""
    for round_ in range(rounds):
        for customer_id in who:
            consent(ledger, customer_id, "sms", granted=(round_ % 2 == 0) == granted, actor="m:t")


def billed_customer(ledger: RightsLedger, name: str = "Ada") -> UUID:
    """A customer with a name, an email made from it and a payment method on file."""
    return ledger.register_customer(
        policy_version="2026-01",
        identity={"name": name, "email": f"{name.lower()}@example.org"},
        payment_method={"processor": "Acme", "token": "tok_1"},
        actor="intake:desk",
    ).id


def contracted_partner(
    ledger: RightsLedger,
    name: str = "Helpdesk Ltd",
    *,
    kind: str = "support_provider",
    contract: str = "C",
    agreement: str = "NDA",
    valid_until: date = FAR_FUTURE,
    actor: str = "po",
) -> UUID:
    """A partner under a contract and a confidentiality agreement (valid until
    ``valid_until``): one personal data may be shared with as a service provider."""
    return ledger.register_partner(
        name=name,
        kind=kind,
        contract_reference=contract,
        confidentiality_agreement=agreement,
        contract_valid_until=valid_until,
        actor=actor,
    ).id


def payment_processor(ledger: RightsLedger) -> UUID:
    """Acme Payments, the processor the customers' payment methods are shared with."""
    return contracted_partner(
        ledger,
        "Acme Payments",
        kind="payment_processor",
        contract="C-1",
        agreement="NDA-1",
        actor="po:po",
    )


def share(
    ledger: RightsLedger,
    customer_id: UUID,
    partner_id: UUID,
    *,
    categories: Iterable[str] = ("identity_contact",),
    basis: str = "service_provider",
    purpose: str = "support",
    reference: str = "ticket",
    actor: str = "s",
) -> UUID:
    """A disclosure of the customer's ``categories`` to the partner; its id."""
    return ledger.disclose(
        customer_id,
        partner_id=partner_id,
        basis=basis,
        categories=categories,
        purpose=purpose,
        reference=reference,
        actor=actor,
    ).id


def consent(
    ledger: RightsLedger, customer_id: UUID, channel: str, *, granted: bool = True, actor: str = "m"
) -> None:
    """A marketing consent granted (or withdrawn) on ``channel``, with the usual evidence."""
    ledger.change_consent(
        customer_id, channel=channel, granted=granted, evidence=EVIDENCE, actor=actor
    )


def invoice(
    ledger: RightsLedger,
    customer_id: UUID,
    amount: str,
    *,
    status: str = "paid",
    issued_at: datetime = datetime(2026, 10, 1, tzinfo=UTC),
    actor: str = "billing:b",
) -> UUID:
    """An invoice in euros (a billing record, kept after erasure until its retention ends)."""
    return ledger.record_invoice(
        customer_id, amount=amount, currency="EUR", status=status, issued_at=issued_at, actor=actor
    ).id


def submit(
    ledger: RightsLedger,
    customer_id: UUID,
    kind: str,
    *,
    statement: str | None = "please",
    channel: str = "email",
    jurisdiction: str = "gdpr",
    actor: str = "intake:t",
    document_reference: str | None = None,
) -> UUID:
    """A data-rights request of type ``kind`` received for the customer; its id."""
    return ledger.submit_request(
        customer_id=customer_id,
        request_type=kind,
        channel=channel,
        jurisdiction=jurisdiction,
        statement=statement,
        document_reference=document_reference,
        actor=actor,
    ).id


def verified(
    ledger: RightsLedger,
    customer_id: UUID,
    kind: str,
    *,
    method: str = "id",
    reference: str = "r",
    verifier: str = "po",
    **received: str,
) -> UUID:
    """A request received (``received``: :func:`submit`'s options) and the requester's
    identity verified: in progress, ready for the request worker."""
    request = submit(ledger, customer_id, kind, **received)
    ledger.verify_request(request, method=method, reference=reference, actor=verifier)
    return request


@dataclass(frozen=True)
class Deletion:
    """A customer whose contact details were shared with a partner, and their verified
    deletion request: erasing means notifying the partner and awaiting its answer."""

    customer: UUID
    partner: UUID
    request: UUID


def shared_then_deleted(
    ledger: RightsLedger,
    customer_id: UUID,
    partner_id: UUID,
    *,
    statement: str = "delete me",
    **sharing: str,
) -> Deletion:
    """The customer's contact details shared with the partner (``sharing``: :func:`share`'s
    options), then their deletion request received and verified."""
    share(ledger, customer_id, partner_id, **sharing)
    request = verified(ledger, customer_id, "deletion", statement=statement)
    return Deletion(customer_id, partner_id, request)
