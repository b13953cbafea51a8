"""Domain events as CloudEvents 1.0 for the topic: ids, categories, statuses and times only.

What goes on the topic leaves rightsledger's control, so ``data`` holds only what the
event class declares ``Public`` (``rightsledger.domain.personal``): identifiers,
categories, purposes, bases, statuses, channels and times, plus the words and shapes its
renderer (``RENDERERS``) adds. Names, contact details, addresses, payment tokens,
amounts, free text (statements, reasons, activity details, references) and corrected
values are declared ``Personal`` or ``Internal`` and never do.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import orjson

from rightsledger.domain.access import AccessRecord
from rightsledger.domain.customer import Customer
from rightsledger.domain.personal import declaration
from rightsledger.domain.requests import DataRightsRequest

SPEC_VERSION = "1.0"
ID_NAMESPACE = uuid.UUID("5b0f3d3e-8f5e-4d55-9a53-4a1f5f0c2b71")
_NAMESPACE_BYTES = ID_NAMESPACE.bytes


def event_id(originator_id: UUID, version: int) -> str:
    """A stable id: the same event always gets the same id, so consumers can dedupe.

    ``uuid.uuid5(ID_NAMESPACE, f"{originator_id}/{version}")`` as text, made without the
    ``UUID`` object in between (the relay makes one for every event it publishes)."""
    digest = bytearray(
        hashlib.sha1(
            _NAMESPACE_BYTES + f"{originator_id}/{version}".encode(), usedforsecurity=False
        ).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


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


def json_value(value: Any) -> Any:
    """A public field's value as the topic carries it: ids as text, times in ISO 8601."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value


Renderer = Callable[[Any], dict[str, Any]]
RENDERERS: dict[type, Renderer] = {}
"""Per event class, what its ``data`` holds beyond its public fields: words (a status, a
category) and shapes made from other fields (the names of a personal mapping's fields,
parts of consent evidence). Never a personal value."""

_T = TypeVar("_T")


def renders(
    *classes: type[_T],
) -> Callable[[Callable[[_T], dict[str, Any]]], Callable[[_T], dict[str, Any]]]:
    """Register the function as the renderer of these event classes."""

    def register(render: Callable[[_T], dict[str, Any]]) -> Callable[[_T], dict[str, Any]]:
        for cls in classes:
            RENDERERS[cls] = render
        return render

    return register


def words(cls: type, **values: Any) -> None:
    """Constant words an event class's ``data`` carries (its status, its category)."""
    RENDERERS[cls] = lambda _event: dict(values)


def public_data(event: Any) -> dict[str, Any]:
    """The event's personal-data-free payload: its aggregate's id, its ``Public`` fields
    and what its renderer adds. An event class without a declaration is refused
    (``UndeclaredFieldError``): nothing is published by default."""
    declared = declaration(type(event))
    data: dict[str, Any] = {}
    if declared.id_on_topic is not None:
        data[declared.id_on_topic] = str(event.originator_id)
    for field, name in declared.public.items():
        data[name] = json_value(getattr(event, field))
    render = RENDERERS.get(type(event))
    if render is not None:
        data.update(render(event))
    return data


@renders(Customer.Registered)
def _(event: Customer.Registered) -> dict[str, Any]:
    return {"categories_held": sorted(event.data)}


@renders(Customer.DetailsCorrected)
def _(event: Customer.DetailsCorrected) -> dict[str, Any]:
    return {"fields": field_names(event.changes)}


def _evidence(evidence: dict[str, Any]) -> dict[str, Any]:
    captured = evidence.get("captured_at")
    return {
        "purpose": "marketing",
        "wording_version": evidence.get("wording_version"),
        "captured_at": _time(captured) if isinstance(captured, datetime) else None,
    }


@renders(Customer.ConsentGranted)
def _(event: Customer.ConsentGranted) -> dict[str, Any]:
    return {**_evidence(event.evidence), "granted": True}


@renders(Customer.ConsentWithdrawn)
def _(event: Customer.ConsentWithdrawn) -> dict[str, Any]:
    return {**_evidence(event.evidence), "granted": False}


@renders(DataRightsRequest.Submitted)
def _(event: DataRightsRequest.Submitted) -> dict[str, Any]:
    corrections = field_names(event.corrections) if event.corrections else None
    return {"status": "open", "categories_to_correct": corrections}


words(Customer.InvoiceRecorded, category="billing")
words(Customer.ActivityLogged, category="activity")
words(Customer.ActivityPurged, category="activity")
words(Customer.Erased, retained_categories=["billing", "payment_method"])
for _cls in (
    DataRightsRequest.IdentityVerified,
    DataRightsRequest.ExportPrepared,
    DataRightsRequest.PartnersNotified,
    DataRightsRequest.PartnerAcknowledged,
    DataRightsRequest.WorkDone,
):
    words(_cls, status="in_progress")
words(DataRightsRequest.DeadlineExtended, status="in_progress", extended=True)
words(DataRightsRequest.Denied, status="denied")
words(DataRightsRequest.Revoked, status="revoked")
words(DataRightsRequest.Fulfilled, status="fulfilled")
words(DataRightsRequest.Expired, status="expired")
words(DataRightsRequest.Overdue, overdue=True)
words(DataRightsRequest.Escalated, escalated=True)


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
    """Compact JSON with sorted keys, in UTF-8 (orjson; what it cannot write, such as an
    integer beyond 64 bits, goes through the standard library's encoder)."""
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(
            document, separators=(",", ":"), sort_keys=True, ensure_ascii=False
        ).encode()
