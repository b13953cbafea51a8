"""One sample of every domain event, with fixed ids and times and distinctive personal values.

Every personal value in a sample holds ``PII`` (text) or is ``PII_AMOUNT`` (a number), so a
test can look for it in the stored bytes, on the topic or in the audit trail's summary.
The samples are built straight from the event classes (no aggregate), so each event type
is exercised, also the former ones nothing writes any more.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rightsledger.domain.access import AccessRecord
from rightsledger.domain.customer import Customer
from rightsledger.domain.operations import FollowerSkip
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest

PII = "pii-3f9a"
"""Every personal text of a sample contains this."""
PII_AMOUNT = Decimal("98765.4321")
"""The personal number of a sample (an invoice's amount)."""

_NS = uuid.UUID("1d9b7c1e-0f6e-4e0b-9d1e-5a0c3e7b2f44")
T = datetime(2026, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)
DUE = datetime(2026, 4, 14, 9, 26, 53, tzinfo=UTC)
AT = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)


def uid(name: str) -> uuid.UUID:
    return uuid.uuid5(_NS, name)


CUSTOMER = uid("customer")
REQUEST = uid("request")
PARTNER = uid("partner")


def pii(name: str) -> str:
    return f"{PII} {name}"


def _event(cls: type, aggregate: uuid.UUID, version: int, **fields: Any) -> Any:
    created = "originator_topic" in {f.name for f in dataclasses.fields(cls)}
    if created:
        fields["originator_topic"] = f"{cls.__module__}:{cls.__qualname__.split('.')[0]}"
    return cls(originator_id=aggregate, originator_version=version, timestamp=T, **fields)


def samples() -> list[Any]:
    """One event of each type, in a stable order."""
    c, r, p = CUSTOMER, REQUEST, PARTNER
    evidence = {"method": "web form", "wording_version": "w7", "captured_at": AT}
    return [
        _event(
            Customer.Registered,
            c,
            1,
            actor="clerk",
            policy_version="2026-01",
            data={
                "identity_contact": {"name": pii("name"), "email": f"{PII}@mail.example"},
                "account_service": {"plan": pii("plan"), "reference": pii("ref")},
                "payment_method": {"processor": pii("processor"), "token": pii("token")},
            },
            purposes={"identity_contact": ["account", "billing"], "account_service": ["account"]},
        ),
        _event(
            Customer.DetailsCorrected,
            c,
            2,
            actor="clerk",
            category="identity_contact",
            changes={"email": f"{PII}.new@mail.example"},
            request_id=r,
        ),
        _event(
            Customer.DetailsCorrected,
            c,
            3,
            actor="clerk",
            category="payment_method",
            changes={"token": pii("new token")},
            request_id=None,
        ),
        _event(Customer.ConsentGranted, c, 4, actor="clerk", channel="email", evidence=evidence),
        _event(
            Customer.ConsentWithdrawn,
            c,
            5,
            actor="clerk",
            channel="email",
            evidence=evidence,
            request_id=r,
        ),
        _event(
            Customer.InvoiceRecorded,
            c,
            6,
            actor="billing",
            invoice_id=uid("invoice"),
            amount=PII_AMOUNT,
            currency="EUR",
            status="paid",
            issued_at=AT,
        ),
        _event(
            Customer.ActivityLogged,
            c,
            7,
            actor="noc",
            entry_id=uid("entry"),
            kind="network",
            reason="security",
            detail=pii("login from 10.0.0.1"),
            occurred_at=AT,
        ),
        _event(
            Customer.DataAccessed,
            c,
            8,
            actor="agent",
            role="support",
            purpose="support",
            categories=["identity_contact"],
            what="customer",
        ),
        _event(
            Customer.AccessRefused,
            c,
            9,
            actor="agent",
            role="support",
            purpose="marketing",
            what="customer",
            reason="marketing is not a purpose of support",
        ),
        _event(
            Customer.DataDisclosed,
            c,
            10,
            actor="dpo",
            disclosure_id=uid("disclosure"),
            partner_id=p,
            basis="legal_obligation",
            categories=["identity_contact"],
            purpose="legal",
            reference="case 2026-17",
        ),
        _event(
            Customer.ActivityPurged,
            c,
            11,
            actor="sweep",
            purpose="security",
            through=AT,
            entries=[uid("entry")],
            periods=["2026-02"],
            schedule={"category": "activity", "purpose": "security", "kept": "1 year"},
        ),
        _event(
            Customer.RequestReceived,
            c,
            12,
            actor="clerk",
            request_id=r,
            request_type="deletion",
        ),
        _event(Customer.Erased, c, 13, actor="worker", request_id=r, retained_until=DUE),
        _event(Customer.RetainedRecordsPurged, c, 14, actor="sweep"),
        _event(
            DataRightsRequest.Submitted,
            r,
            1,
            actor="clerk",
            customer_id=c,
            request_type="correction",
            channel="email",
            statement=pii("I want my email corrected"),
            document_reference=pii("letter 12"),
            jurisdiction="gdpr",
            received_at=AT,
            due_at=DUE,
            extension_months=2,
            extension_days=0,
            corrections={"identity_contact": {"email": f"{PII}.fixed@mail.example"}},
        ),
        _event(
            DataRightsRequest.IdentityVerified,
            r,
            2,
            actor="clerk",
            method="document",
            reference=pii("passport 77"),
        ),
        _event(
            DataRightsRequest.DeadlineExtended,
            r,
            3,
            actor="dpo",
            reason=pii("complex request"),
            due_at=DUE,
        ),
        _event(
            DataRightsRequest.ExportPrepared,
            r,
            4,
            actor="worker",
            digest="sha256:ab",
            categories=["identity_contact"],
            items=3,
        ),
        _event(
            DataRightsRequest.PartnersNotified,
            r,
            5,
            actor="worker",
            notifications=[{"partner_id": str(p), "categories": ["identity_contact"]}],
            awaiting_acknowledgement=True,
        ),
        _event(DataRightsRequest.PartnerAcknowledged, r, 6, actor="partner", partner_id=p),
        _event(DataRightsRequest.WorkDone, r, 7, actor="worker", action="corrected"),
        _event(DataRightsRequest.ErasureCarriedOut, r, 8, actor="worker"),
        _event(DataRightsRequest.DeadlineApproaching, r, 9, actor="sweep", due_at=DUE),
        _event(DataRightsRequest.Overdue, r, 10, actor="sweep", due_at=DUE),
        _event(
            DataRightsRequest.Escalated,
            r,
            11,
            actor="sweep",
            reason="1 recipient(s) have not acknowledged the deletion",
        ),
        _event(DataRightsRequest.Fulfilled, r, 12, actor="dpo", summary="corrected"),
        _event(DataRightsRequest.Denied, r, 13, actor="dpo", reason=pii("no basis")),
        _event(DataRightsRequest.Revoked, r, 14, actor="clerk", reason=pii("changed")),
        _event(
            DataRightsRequest.Expired,
            r,
            15,
            actor="sweep",
            reason=pii("never verified"),
            unacknowledged=[str(p)],
        ),
        _event(
            Partner.Registered,
            p,
            1,
            actor="dpo",
            name="Acme Payments",
            kind="payment_processor",
            contract_reference="C-1",
            confidentiality_agreement="NDA-1",
            contract_valid_until="2027-01-01",
        ),
        _event(
            Partner.ContractRenewed,
            p,
            2,
            actor="dpo",
            contract_reference="C-2",
            confidentiality_agreement="NDA-2",
            contract_valid_until="2028-01-01",
        ),
        _event(
            AccessRecord.DataAccessed,
            uid("read"),
            1,
            customer_id=c,
            actor="agent",
            role="support",
            purpose="support",
            categories=["identity_contact"],
            what="customer",
        ),
        _event(
            AccessRecord.AccessRefused,
            uid("refused"),
            1,
            customer_id=c,
            actor="agent",
            role="support",
            purpose="marketing",
            categories=[],
            what="customer",
            reason="marketing is not a purpose of support",
        ),
        _event(
            FollowerSkip.Recorded,
            uid("skip"),
            1,
            follower="relay",
            position=42,
            reason="poison event",
            actor="operator",
        ),
    ]


def sample_id(event: Any) -> str:
    """A readable test id: the event's type and version."""
    return f"{type(event).__qualname__}@{event.originator_version}"


def subject_of(event: Any) -> uuid.UUID:
    """The partition key the relay gives the event: its customer's id (a partner's or an
    operator's own event: its own id)."""
    if isinstance(event, Partner.Registered | Partner.ContractRenewed | FollowerSkip.Recorded):
        return event.originator_id
    return CUSTOMER
