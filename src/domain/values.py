"""The policy's vocabulary: purposes, data categories, channels, bases, statuses."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Purpose(StrEnum):
    """The five purposes for which the policy allows collection (section 1)."""

    ACCOUNT = "account"
    """Account creation and service activation."""
    BILLING = "billing"
    """Billing, invoicing and payment processing."""
    SUPPORT = "support"
    """Technical support, service quality monitoring and network improvements."""
    LEGAL = "legal"
    """Legal compliance, fraud prevention and security monitoring."""
    MARKETING = "marketing"
    """Marketing communications, only with explicit consent."""


class Category(StrEnum):
    """Categories of personal data held about a customer."""

    IDENTITY = "identity_contact"
    ACCOUNT = "account_service"
    BILLING = "billing"
    PAYMENT = "payment_method"
    ACTIVITY = "activity"


CATEGORY_FIELDS: Final = MappingProxyType(
    {
        Category.IDENTITY: ("name", "email", "phone", "postal_address"),
        Category.ACCOUNT: ("plan", "activated_at", "reference"),
        Category.PAYMENT: ("processor", "token"),
        Category.BILLING: (),
        Category.ACTIVITY: (),
    }
)
"""The correctable fields of each category; billing and activity are records, not fields."""

DEFAULT_PURPOSES: Final = MappingProxyType(
    {
        Category.IDENTITY: (Purpose.ACCOUNT, Purpose.BILLING, Purpose.SUPPORT, Purpose.LEGAL),
        Category.ACCOUNT: (Purpose.ACCOUNT, Purpose.SUPPORT),
        Category.BILLING: (Purpose.BILLING, Purpose.LEGAL),
        Category.PAYMENT: (Purpose.BILLING,),
        Category.ACTIVITY: (Purpose.LEGAL, Purpose.SUPPORT),
    }
)
"""Purposes each category is held for when registration does not say otherwise, and the
most it may be held for: a registration may name fewer of them, never another (purpose
limitation: whoever registers a customer cannot widen who may read a category)."""


class Channel(StrEnum):
    """Marketing channels, each with its own consent."""

    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    POST = "post"


class PartnerKind(StrEnum):
    """Kinds of recipient the policy names (section 1.3)."""

    PAYMENT_PROCESSOR = "payment_processor"
    SUPPORT_PROVIDER = "support_provider"
    INFRASTRUCTURE = "infrastructure"
    LAW_ENFORCEMENT = "law_enforcement"
    AUTHORITY = "authority"

    @property
    def is_contracted(self) -> bool:
        """Contracted providers must be bound by a confidentiality agreement."""
        return self in CONTRACTED_KINDS


CONTRACTED_KINDS: Final = frozenset(
    {PartnerKind.PAYMENT_PROCESSOR, PartnerKind.SUPPORT_PROVIDER, PartnerKind.INFRASTRUCTURE}
)
AUTHORITY_KINDS: Final = frozenset({PartnerKind.LAW_ENFORCEMENT, PartnerKind.AUTHORITY})


class Basis(StrEnum):
    """The only bases on which customer data may be shared (section 1.3)."""

    LEGAL_OBLIGATION = "legal_obligation"
    SERVICE_PROVIDER = "service_provider"
    FRAUD_PREVENTION = "fraud_prevention"


class RequestType(StrEnum):
    """The rights of section 1.4."""

    ACCESS = "access"
    CORRECTION = "correction"
    OPT_OUT = "opt_out"
    DELETION = "deletion"


class RequestChannel(StrEnum):
    """Written channels through which a data-rights request may arrive."""

    WEB_FORM = "web_form"
    EMAIL = "email"
    POSTAL_MAIL = "postal_mail"


class RequestStatus(StrEnum):
    """Request statuses as named in the Data Rights Protocol 1.0."""

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    FULFILLED = "fulfilled"
    DENIED = "denied"
    REVOKED = "revoked"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES: Final = frozenset(
    {RequestStatus.FULFILLED, RequestStatus.DENIED, RequestStatus.REVOKED, RequestStatus.EXPIRED}
)


class ActivityKind(StrEnum):
    NETWORK = "network"
    ACCOUNT = "account"


class ActivityReason(StrEnum):
    """Why activity may be logged (section 1.2), and the purpose each serves."""

    SECURITY = "security"
    LEGAL = "legal"
    TROUBLESHOOTING = "troubleshooting"

    @property
    def purpose(self) -> Purpose:
        return Purpose.SUPPORT if self is ActivityReason.TROUBLESHOOTING else Purpose.LEGAL


class InvoiceStatus(StrEnum):
    ISSUED = "issued"
    PAID = "paid"
    OVERDUE = "overdue"
    VOID = "void"
