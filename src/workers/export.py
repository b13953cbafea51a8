"""The access export: everything held about a customer, why, and who received it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from rightsledger.domain.access import AccessRecord
from rightsledger.domain.customer import (
    AccessLogEntry,
    ActivityEntry,
    Consent,
    Customer,
    Disclosure,
    Invoice,
)
from rightsledger.domain.ledger import RightsLedger
from rightsledger.domain.naming import stored_names
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.domain.retention import RuleStatement
from rightsledger.projections.audit import AuditTrailView
from rightsledger.projections.base import jsonable

SOURCES = {
    "identity_contact": "provided by the customer at registration or in corrections",
    "account_service": "created when the service was activated",
    "payment_method": "the payment processor's token, provided by the processor",
    "billing": "issued by the provider's billing system",
    "activity": "logged by the provider's network and account systems",
}


READ_TOPICS = (*stored_names(AccessRecord.DataAccessed), *stored_names(AccessRecord.AccessRefused))
"""The log's topics of recorded reads (every name they are stored under)."""


def read_entry(
    *,
    actor: str,
    role: str,
    purpose: str,
    categories: Iterable[str],
    what: str,
    at: datetime,
    reason: str | None,
) -> AccessLogEntry:
    """One line of the access log, in the shape ``Customer.access_log`` has always had."""
    entry = AccessLogEntry(
        actor=actor,
        role=role,
        purpose=purpose,
        categories=list(categories),
        what=what,
        at=at.astimezone(UTC),
        refused=reason is not None,
    )
    if reason is not None:
        entry["reason"] = reason
    return entry


def recorded_reads(
    trail: AuditTrailView, ledger: RightsLedger, customer_id: UUID, *, page: int = 500
) -> list[AccessLogEntry]:
    """The customer's reads (``AccessRecord``s), answered and refused, in log order: those
    the audit trail view holds, then any recorded since its position, from the log's tail
    (only the reads' topics are read), so the export is complete even when the view lags."""
    rows, position = trail.accesses(customer_id)
    reads = [
        read_entry(
            actor=row["actor"],
            role=row["role"],
            purpose=row["purpose"],
            categories=row["categories"],
            what=row["what"],
            at=row["recorded_at"],
            reason=row["reason"] if row["refused"] else None,
        )
        for row in rows
    ]
    head = ledger.recorder.max_notification_id() or 0
    while position < head:
        notifications = ledger.recorder.select_notifications(
            start=position, limit=page, stop=head, topics=READ_TOPICS, inclusive_of_start=False
        )
        if not notifications:
            break
        for notification in notifications:
            event = ledger.mapper.to_domain_event(notification)
            if (
                isinstance(event, AccessRecord.DataAccessed | AccessRecord.AccessRefused)
                and event.customer_id == customer_id
            ):
                reads.append(
                    read_entry(
                        actor=event.actor,
                        role=event.role,
                        purpose=event.purpose,
                        categories=event.categories,
                        what=event.what,
                        at=event.timestamp,
                        reason=getattr(event, "reason", None),
                    )
                )
        position = notifications[-1].id
    return reads


def invoice_line(invoice_id: UUID, invoice: Invoice) -> dict[str, object]:
    """An invoice as the export lists it (the keys exports have always had, in order)."""
    return {
        "invoice_id": invoice_id,
        "amount": invoice.amount,
        "currency": invoice.currency,
        "status": invoice.status,
        "issued_at": invoice.issued_at,
    }


def activity_line(entry: ActivityEntry) -> dict[str, object]:
    """An activity entry as the export lists it (``entry_id`` is what a purge redacts by)."""
    return {
        "entry_id": entry.entry_id,
        "kind": entry.kind,
        "reason": entry.reason,
        "detail": entry.detail,
        "occurred_at": entry.occurred_at,
    }


def consent_line(channel: str, consent: Consent) -> dict[str, object]:
    """A channel's marketing consent as the export lists it."""
    return {
        "channel": channel,
        "granted": consent.granted,
        "evidence": dict(consent.evidence),
        "changed_at": consent.changed_at,
    }


def disclosure_line(disclosure: Disclosure, partner: Partner | None) -> dict[str, object]:
    """A share as the export lists it, with the partner's name and kind when known."""
    return {
        "disclosure_id": disclosure.disclosure_id,
        "partner_id": disclosure.partner_id,
        "basis": disclosure.basis,
        "categories": list(disclosure.categories),
        "purpose": disclosure.purpose,
        "reference": disclosure.reference,
        "disclosed_at": disclosure.disclosed_at,
        "partner_name": partner.name if partner else None,
        "partner_kind": partner.kind.value if partner else None,
    }


def assemble(
    request: DataRightsRequest,
    customer: Customer,
    partners: dict[str, Partner],
    *,
    retention: str,
    generated_at: datetime,
    reads: Iterable[AccessLogEntry] = (),
    schedule: Iterable[RuleStatement] = (),
) -> dict[str, Any]:
    """The machine-readable export for an access request. ``reads`` are the customer's
    recorded reads (``recorded_reads``); the access log lists those recorded in the former
    form, on the customer's own stream, first. ``schedule`` is the retention schedule's
    rules (``RetentionSchedule.describe()``): each category states its own."""
    rules = [rule.copy() for rule in schedule]
    categories: dict[str, Any] = {}
    for category in customer.purposes:
        if not customer.holds_name(category):
            continue
        entry: dict[str, Any] = {
            "purposes": customer.purposes_of(category),
            "source": SOURCES.get(category, "recorded by the provider"),
        }
        if category in customer.data:
            entry["fields"] = dict(customer.data[category])
        if category == "billing":
            entry["invoices"] = [
                invoice_line(invoice_id, invoice)
                for invoice_id, invoice in sorted(
                    customer.invoices.items(), key=lambda item: str(item[0])
                )
            ]
        if category == "activity":
            entry["entries"] = [activity_line(e) for e in customer.activity]
        entry["retention"] = [rule for rule in rules if rule["category"] == category]
        categories[category] = entry
    disclosures = [
        disclosure_line(disclosure, partners.get(str(disclosure.partner_id)))
        for disclosure in customer.disclosures
    ]
    document = {
        "request_id": request.id,
        "customer_id": customer.id,
        "generated_at": generated_at,
        "privacy_policy_version": customer.policy_version,
        "categories": categories,
        "marketing_consents": [
            consent_line(channel, consent) for channel, consent in sorted(customer.consents.items())
        ],
        "disclosures": disclosures,
        "access_log": [*customer.access_log, *reads],
        "retention": retention,
        "retention_schedule": rules,
    }
    result: dict[str, Any] = jsonable(document)
    return result


def digest(document: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON: recorded in the log as proof of what was delivered."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def items(document: dict[str, Any]) -> int:
    count = 0
    for entry in document["categories"].values():
        count += len(entry.get("fields", {})) + len(entry.get("invoices", []))
        count += len(entry.get("entries", []))
    return count + len(document["marketing_consents"]) + len(document["disclosures"])
