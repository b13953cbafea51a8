"""The access export: everything held about a customer, why, and who received it."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from rightsledger.domain.customer import Customer
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.projections.base import jsonable

SOURCES = {
    "identity_contact": "provided by the customer at registration or in corrections",
    "account_service": "created when the service was activated",
    "payment_method": "the payment processor's token, provided by the processor",
    "billing": "issued by the provider's billing system",
    "activity": "logged by the provider's network and account systems",
}


def assemble(
    request: DataRightsRequest,
    customer: Customer,
    partners: dict[str, Partner],
    *,
    retention: str,
    generated_at: datetime,
) -> dict[str, Any]:
    """The machine-readable export for an access request."""
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
                {"invoice_id": k, **v} for k, v in sorted(customer.invoices.items())
            ]
        if category == "activity":
            entry["entries"] = list(customer.activity)
        categories[category] = entry
    disclosures = []
    for disclosure in customer.disclosures:
        partner = partners.get(str(disclosure["partner_id"]))
        disclosures.append(
            {
                **disclosure,
                "partner_name": partner.name if partner else None,
                "partner_kind": partner.kind.value if partner else None,
            }
        )
    document = {
        "request_id": request.id,
        "customer_id": customer.id,
        "generated_at": generated_at,
        "privacy_policy_version": customer.policy_version,
        "categories": categories,
        "marketing_consents": [
            {"channel": channel, **state} for channel, state in sorted(customer.consents.items())
        ],
        "disclosures": disclosures,
        "access_log": list(customer.access_log),
        "retention": retention,
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
