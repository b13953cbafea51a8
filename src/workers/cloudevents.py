"""Domain events as CloudEvents 1.0 for the topic: ids, categories, statuses and times only.

What goes on the topic leaves rightsledger's control, so ``data`` is built from an
allowlist per event type: identifiers, categories, purposes, bases, statuses, channels
and times. Names, contact details, addresses, payment tokens, amounts, free text
(statements, reasons, activity details, references) and corrected values never do.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from functools import singledispatch
from typing import Any
from uuid import UUID

from rightsledger.domain.access import AccessRecord
from rightsledger.domain.customer import Customer
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest

SPEC_VERSION = "1.0"
ID_NAMESPACE = uuid.UUID("5b0f3d3e-8f5e-4d55-9a53-4a1f5f0c2b71")


def event_id(originator_id: UUID, version: int) -> str:
    """A stable id: the same event always gets the same id, so consumers can dedupe."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{originator_id}/{version}"))


TOPIC_TYPES: dict[type, str] = {
    AccessRecord.DataAccessed: "Customer.DataAccessed",
    AccessRecord.AccessRefused: "Customer.AccessRefused",
}
"""Reads keep on the topic the type names they had when they were customer events."""


def event_type(event: object) -> str:
    name = TOPIC_TYPES.get(type(event)) or type(event).__qualname__
    return "rightsledger." + name


def field_names(value: Any) -> list[str]:
    """The field names of a mapping, also when it is still sealed (names are not sealed)."""
    if isinstance(value, dict) and value.get("__sealed__"):
        return sorted(value.get("fields") or [])
    return sorted(value or {})


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@singledispatch
def public_data(event: object) -> dict[str, Any]:  # noqa: ARG001 - dispatch fallback
    """The event's personal-data-free payload (nothing beyond the envelope by default)."""
    return {}


@public_data.register
def _(event: Customer.Registered) -> dict[str, Any]:
    return {
        "customer_id": str(event.originator_id),
        "policy_version": event.policy_version,
        "categories_held": sorted(event.data),
        "purposes": {k: list(v) for k, v in sorted(event.purposes.items())},
    }


@public_data.register
def _(event: Customer.DetailsCorrected) -> dict[str, Any]:
    return {
        "customer_id": str(event.originator_id),
        "category": event.category,
        "fields": field_names(event.changes),
        "request_id": str(event.request_id) if event.request_id else None,
    }


def _consent(
    event: Customer.ConsentGranted | Customer.ConsentWithdrawn, *, granted: bool
) -> dict[str, Any]:
    captured = event.evidence.get("captured_at")
    return {
        "customer_id": str(event.originator_id),
        "purpose": "marketing",
        "channel": event.channel,
        "granted": granted,
        "wording_version": event.evidence.get("wording_version"),
        "captured_at": _time(captured) if isinstance(captured, datetime) else None,
    }


@public_data.register
def _(event: Customer.ConsentGranted) -> dict[str, Any]:
    return _consent(event, granted=True)


@public_data.register
def _(event: Customer.ConsentWithdrawn) -> dict[str, Any]:
    data = _consent(event, granted=False)
    data["request_id"] = str(event.request_id) if event.request_id else None
    return data


@public_data.register
def _(event: Customer.InvoiceRecorded) -> dict[str, Any]:
    return {
        "customer_id": str(event.originator_id),
        "category": "billing",
        "invoice_id": str(event.invoice_id),
        "status": event.status,
        "issued_at": _time(event.issued_at),
    }


@public_data.register
def _(event: Customer.ActivityLogged) -> dict[str, Any]:
    return {
        "customer_id": str(event.originator_id),
        "category": "activity",
        "entry_id": str(event.entry_id),
        "kind": event.kind,
        "reason": event.reason,
        "occurred_at": _time(event.occurred_at),
    }


@public_data.register
def _(event: Customer.DataDisclosed) -> dict[str, Any]:
    return {
        "customer_id": str(event.originator_id),
        "disclosure_id": str(event.disclosure_id),
        "partner_id": str(event.partner_id),
        "basis": event.basis,
        "categories": list(event.categories),
        "purpose": event.purpose,
    }


@public_data.register
def _(event: Partner.Registered) -> dict[str, Any]:
    return {
        "partner_id": str(event.originator_id),
        "kind": event.kind,
        "contract_valid_until": event.contract_valid_until,
    }


@public_data.register
def _(event: Partner.ContractRenewed) -> dict[str, Any]:
    return {
        "partner_id": str(event.originator_id),
        "contract_valid_until": event.contract_valid_until,
    }


@public_data.register
def _(event: DataRightsRequest.Submitted) -> dict[str, Any]:
    return {
        "request_id": str(event.originator_id),
        "customer_id": str(event.customer_id),
        "type": event.request_type,
        "channel": event.channel,
        "jurisdiction": event.jurisdiction,
        "status": "open",
        "received_at": _time(event.received_at),
        "due_at": _time(event.due_at),
        "categories_to_correct": field_names(event.corrections) if event.corrections else None,
    }


def _status(event: DataRightsRequest.Event, status: str) -> dict[str, Any]:
    return {"request_id": str(event.originator_id), "status": status}


@public_data.register
def _(event: DataRightsRequest.IdentityVerified) -> dict[str, Any]:
    return {**_status(event, "in_progress"), "method": event.method}


@public_data.register
def _(event: DataRightsRequest.DeadlineExtended) -> dict[str, Any]:
    return {**_status(event, "in_progress"), "due_at": _time(event.due_at), "extended": True}


@public_data.register
def _(event: DataRightsRequest.Denied) -> dict[str, Any]:
    return _status(event, "denied")


@public_data.register
def _(event: DataRightsRequest.Revoked) -> dict[str, Any]:
    return _status(event, "revoked")


@public_data.register
def _(event: DataRightsRequest.Fulfilled) -> dict[str, Any]:
    return _status(event, "fulfilled")


@public_data.register
def _(event: DataRightsRequest.Expired) -> dict[str, Any]:
    return _status(event, "expired")


@public_data.register
def _(event: Customer.Erased) -> dict[str, Any]:
    return {
        "customer_id": str(event.originator_id),
        "request_id": str(event.request_id),
        "retained_until": _time(event.retained_until),
        "retained_categories": ["billing", "payment_method"],
    }


@public_data.register
def _(event: Customer.ActivityPurged) -> dict[str, Any]:
    return {
        "customer_id": str(event.originator_id),
        "category": "activity",
        "purpose": event.purpose,
        "through": _time(event.through),
        "entries": [str(entry_id) for entry_id in event.entries],
        "periods": list(event.periods),
        "schedule": dict(event.schedule),
    }


@public_data.register
def _(event: Customer.RetainedRecordsPurged) -> dict[str, Any]:
    return {"customer_id": str(event.originator_id)}


@public_data.register
def _(event: DataRightsRequest.ExportPrepared) -> dict[str, Any]:
    return {
        **_status(event, "in_progress"),
        "categories": list(event.categories),
        "items": event.items,
        "digest": event.digest,
    }


@public_data.register
def _(event: DataRightsRequest.PartnersNotified) -> dict[str, Any]:
    return {
        **_status(event, "in_progress"),
        "notifications": [
            {"partner_id": n["partner_id"], "categories": list(n["categories"])}
            for n in event.notifications
        ],
        "awaiting_acknowledgement": event.awaiting_acknowledgement,
    }


@public_data.register
def _(event: DataRightsRequest.PartnerAcknowledged) -> dict[str, Any]:
    return {**_status(event, "in_progress"), "partner_id": str(event.partner_id)}


@public_data.register
def _(event: DataRightsRequest.WorkDone) -> dict[str, Any]:
    return {**_status(event, "in_progress"), "action": event.action}


@public_data.register
def _(event: DataRightsRequest.DeadlineApproaching) -> dict[str, Any]:
    return {"request_id": str(event.originator_id), "due_at": _time(event.due_at)}


@public_data.register
def _(event: DataRightsRequest.Overdue) -> dict[str, Any]:
    return {"request_id": str(event.originator_id), "due_at": _time(event.due_at), "overdue": True}


@public_data.register
def _(event: DataRightsRequest.Escalated) -> dict[str, Any]:
    return {"request_id": str(event.originator_id), "escalated": True}


@public_data.register
def _(event: Customer.DataAccessed) -> dict[str, Any]:
    return {
        "customer_id": str(event.originator_id),
        "role": event.role,
        "purpose": event.purpose,
        "categories": list(event.categories),
        "what": event.what,
    }


@public_data.register
def _(event: Customer.AccessRefused) -> dict[str, Any]:
    return {
        "customer_id": str(event.originator_id),
        "role": event.role,
        "purpose": event.purpose,
        "what": event.what,
    }


@public_data.register
def _(event: AccessRecord.DataAccessed) -> dict[str, Any]:
    return {
        "customer_id": str(event.customer_id),
        "role": event.role,
        "purpose": event.purpose,
        "categories": list(event.categories),
        "what": event.what,
    }


@public_data.register
def _(event: AccessRecord.AccessRefused) -> dict[str, Any]:
    return {
        "customer_id": str(event.customer_id),
        "role": event.role,
        "purpose": event.purpose,
        "what": event.what,
    }


def envelope(event: Any, *, source: str, subject: UUID | None) -> dict[str, Any]:
    """The CloudEvents 1.0 structured-mode document for one domain event."""
    data = public_data(event)
    if isinstance(event, DataRightsRequest.Event | DataRightsRequest.Submitted) and subject:
        data.setdefault("customer_id", str(subject))
    return {
        "specversion": SPEC_VERSION,
        "id": event_id(event.originator_id, event.originator_version),
        "source": source,
        "type": event_type(event),
        "time": event.timestamp.isoformat(),
        "subject": str(subject) if subject else str(event.originator_id),
        "datacontenttype": "application/json",
        "sequence": str(event.originator_version),
        "data": data,
    }


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
