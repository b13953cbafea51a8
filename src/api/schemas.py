"""Request and response models. Every request model forbids unknown fields and card numbers."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from rightsledger.domain.cards import find_card_number, find_unstorable
from rightsledger.domain.values import (
    ActivityKind,
    ActivityReason,
    Category,
    Channel,
    InvoiceStatus,
    PartnerKind,
    Purpose,
    RequestStatus,
    RequestType,
)

Text = Annotated[str, Field(min_length=1, max_length=2000)]
LongText = Annotated[str, Field(min_length=1, max_length=10_000)]


class Command(BaseModel):
    """Base of request bodies: unknown fields are refused, and so are card numbers anywhere."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_card_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        broken = find_unstorable(value, info.field_name or "")
        if broken is not None:
            msg = f"'{broken}' contains a NUL character or an unpaired surrogate"
            raise ValueError(msg)
        where = find_card_number(value, info.field_name or "")
        if where is not None:
            msg = (
                f"'{where}' contains a payment card number; card numbers are never stored, "
                "payments go through the payment processor's token"
            )
            raise ValueError(msg)
        return value


# ---------------------------------------------------------------------- customers


class IdentityIn(Command):
    name: Text
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)] | None = None
    phone: Annotated[str, Field(pattern=r"^\+?[0-9 ().-]{3,40}$")] | None = None
    postal_address: Text | None = None


class AccountIn(Command):
    plan: Text
    activated_at: AwareDatetime | None = None


class PaymentMethodIn(Command):
    processor: Text = Field(description="The payment processor's name.")
    token: Text = Field(description="The processor's token for the payment method; never a card.")


class CustomerCreate(Command):
    policy_version: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        description="Version of the privacy policy the customer accepted."
    )
    identity: IdentityIn
    account: AccountIn | None = None
    payment_method: PaymentMethodIn | None = None
    purposes: dict[Category, list[Purpose]] | None = Field(
        default=None,
        description="Purposes each category is collected for; marketing comes only from consent.",
    )


class IdentityPatch(Command):
    name: Text | None = None
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)] | None = None
    phone: Annotated[str, Field(pattern=r"^\+?[0-9 ().-]{3,40}$")] | None = None
    postal_address: Text | None = None


class AccountPatch(Command):
    plan: Text | None = None
    activated_at: AwareDatetime | None = None


class PaymentPatch(Command):
    processor: Text | None = None
    token: Text | None = None


class CustomerPatch(Command):
    """A correction: only the fields given change; each category corrected is one event."""

    identity_contact: IdentityPatch | None = None
    account_service: AccountPatch | None = None
    payment_method: PaymentPatch | None = None

    def changes(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for category in ("identity_contact", "account_service", "payment_method"):
            part = getattr(self, category)
            if part is None:
                continue
            fields = {
                k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in part.model_dump(exclude_none=True).items()
            }
            if fields:
                out[category] = fields
        return out


class Evidence(Command):
    method: Text = Field(description="How consent was captured, e.g. 'web_form_checkbox'.")
    wording_version: Annotated[str, Field(min_length=1, max_length=100)]
    captured_at: AwareDatetime


class ConsentChange(Command):
    purpose: Literal["marketing"] = "marketing"
    channel: Channel
    granted: bool
    evidence: Evidence


class InvoiceIn(Command):
    amount: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    status: InvoiceStatus = InvoiceStatus.ISSUED
    issued_at: AwareDatetime


class ActivityIn(Command):
    kind: ActivityKind
    reason: ActivityReason
    detail: Text
    occurred_at: AwareDatetime


class DisclosureIn(Command):
    partner_id: UUID
    basis: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        description="legal_obligation, service_provider or fraud_prevention; nothing else."
    )
    categories: Annotated[list[Category], Field(min_length=1, max_length=5)]
    purpose: Annotated[str, Field(min_length=1, max_length=100)]
    reference: Annotated[str, Field(max_length=2000)] = ""


class CustomerCreated(BaseModel):
    customer_id: UUID
    position: int


class CommandAccepted(BaseModel):
    id: UUID
    position: int


class CategoryOut(BaseModel):
    purposes: list[str]
    fields: dict[str, str] = Field(default_factory=dict)


class ConsentOut(BaseModel):
    channel: str
    granted: bool
    changed_at: datetime
    evidence: dict[str, Any]


class InvoiceOut(BaseModel):
    invoice_id: UUID
    amount: Decimal | str = Field(description="The amount; '[erased]' once purged.")
    currency: str
    status: str
    issued_at: datetime


class ActivityOut(BaseModel):
    entry_id: UUID
    kind: str
    reason: str
    detail: str
    occurred_at: datetime


class DisclosureOut(BaseModel):
    disclosure_id: UUID
    customer_id: UUID
    partner_id: UUID
    partner_name: str | None
    partner_kind: str | None
    basis: str
    categories: list[str]
    purpose: str
    reference: str
    actor: str
    disclosed_at: datetime
    position: int


class DisclosurePage(BaseModel):
    items: list[DisclosureOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page (also in the Link header); "
        "null on the last page."
    )
    position: int = Field(description="Log position the register reflects.")


class CustomerOut(BaseModel):
    customer_id: UUID
    version: int
    policy_version: str
    registered_at: datetime
    modified_at: datetime
    categories: dict[str, CategoryOut]
    consents: list[ConsentOut]
    invoices: list[InvoiceOut]
    activity: list[ActivityOut]


class ConsentEventOut(BaseModel):
    channel: str
    granted: bool
    evidence: dict[str, Any]
    recorded_at: datetime
    actor: str
    version: int
    request_id: UUID | None = None


class ConsentsOut(BaseModel):
    customer_id: UUID
    current: list[ConsentOut]
    history: list[ConsentEventOut]
    position: int


# ---------------------------------------------------------------------- partners


class PartnerIn(Command):
    name: Text
    kind: PartnerKind
    contract_reference: Text | None = None
    confidentiality_agreement: Text | None = None
    contract_valid_until: date | None = None


class ContractRenewal(Command):
    contract_reference: Text
    confidentiality_agreement: Text
    valid_until: date


class PartnerOut(BaseModel):
    partner_id: UUID
    name: str
    kind: str
    contract_reference: str | None
    confidentiality_agreement: str | None
    contract_valid_until: date | None
    contract_valid_today: bool
    registered_at: datetime
    version: int


class PartnerCreated(BaseModel):
    partner_id: UUID
    position: int


# ---------------------------------------------------------------------- requests


class RequestIn(Command):
    customer_id: UUID
    type: RequestType
    channel: Annotated[str, Field(min_length=1, max_length=50)] = Field(
        description="How the written request arrived: web_form, email or postal_mail."
    )
    jurisdiction: Annotated[str, Field(min_length=1, max_length=50)]
    statement: LongText | None = None
    document_reference: Text | None = None
    corrections: dict[Category, dict[str, Text]] | None = None


class VerifyIn(Command):
    method: Text = Field(description="How identity was verified, e.g. 'id_document'.")
    reference: Text = Field(description="Where the verification evidence is kept.")


class ReasonIn(Command):
    reason: LongText


class RevokeIn(Command):
    reason: LongText | None = None


class RequestAccepted(BaseModel):
    request_id: UUID
    status: RequestStatus
    due_at: datetime
    position: int


class RequestChanged(BaseModel):
    request_id: UUID
    status: RequestStatus
    due_at: datetime
    position: int


class TimelineEntry(BaseModel):
    version: int
    at: datetime
    type: str = Field(description="The event's type, e.g. `DataRightsRequest.IdentityVerified`.")
    actor: str | None = Field(description="Who issued the command; null when not recorded.")
    summary: str
    changes: dict[str, Any] = Field(
        description="What the event recorded (personal values shown as `[personal]`)."
    )


class AwaitedPartner(BaseModel):
    partner_id: UUID
    categories: list[str]
    notified_at: datetime


class RequestOut(BaseModel):
    request_id: UUID
    customer_id: UUID
    type: RequestType
    status: RequestStatus
    channel: str
    jurisdiction: str
    statement: str | None
    document_reference: str | None
    corrections: dict[str, Any] | None
    received_at: datetime
    due_at: datetime
    verified_at: datetime | None
    extension_reason: str | None
    reason: str | None
    closed_at: datetime | None
    overdue: bool
    time_left: timedelta | None = Field(
        description="Until the due date (ISO 8601 duration); null once closed or overdue."
    )
    overdue_by: timedelta | None = Field(
        description="How long past its due date an open request is; null otherwise."
    )
    awaiting: list[AwaitedPartner] = Field(
        description="Partners notified of a deletion that have not acknowledged yet."
    )
    acknowledged: list[UUID] = Field(description="Partners that have acknowledged.")
    timeline: list[TimelineEntry] = Field(description="Every event of the request, in order.")
    version: int


class RequestSummary(BaseModel):
    request_id: UUID
    customer_id: UUID
    type: RequestType
    status: RequestStatus
    channel: str
    jurisdiction: str
    received_at: datetime
    verified_at: datetime | None
    due_at: datetime
    extended: bool
    reason: str | None
    closed_at: datetime | None
    overdue: bool


class RequestPage(BaseModel):
    items: list[RequestSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page (also in the Link header); "
        "null on the last page."
    )
    position: int = Field(description="Log position the list reflects.")


class RequestCounts(BaseModel):
    by_status: dict[RequestStatus, int] = Field(description="Requests in each status.")
    open_work: int = Field(description="Open and in progress: what the inbox lists.")
    overdue: int = Field(description="Open or in progress and past their due date.")
    position: int = Field(description="Log position the counts reflect.")


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    position: int
    followers: dict[str, int] = Field(
        default_factory=dict, description="Each follower's position in the log."
    )


# ---------------------------------------------------------------------- audit


class LogEvent(BaseModel):
    position: int
    recorded_at: datetime
    type: str
    aggregate_id: UUID
    version: int
    actor: str | None
    payload: dict[str, Any]


class LogPage(BaseModel):
    items: list[LogEvent]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page (also in the Link header); "
        "null on the last page."
    )
    position: int = Field(description="The log's last position when read.")
    head: int = Field(description="The log's last position when read (as `position`).")


class DisclosureAsOf(BaseModel):
    disclosure_id: UUID
    partner_id: UUID
    basis: str
    categories: list[str]
    purpose: str
    reference: str
    disclosed_at: datetime


class CustomerState(BaseModel):
    version: int
    policy_version: str
    categories: dict[str, CategoryOut]
    consents: list[ConsentOut]
    invoices: list[InvoiceOut]
    activity: list[ActivityOut]
    disclosures: list[DisclosureAsOf]


class CustomerAsOf(BaseModel):
    customer_id: UUID
    as_of: datetime
    registered: bool
    state: CustomerState | None


class TrailEntry(BaseModel):
    position: int
    recorded_at: datetime
    event_type: str
    aggregate_type: str
    aggregate_id: UUID
    customer_id: UUID | None
    version: int
    actor: str | None
    purpose: str | None
    summary: str


class TrailPage(BaseModel):
    items: list[TrailEntry]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page (also in the Link header); "
        "null on the last page."
    )
    position: int


class ExportOut(BaseModel):
    request_id: UUID
    customer_id: UUID
    digest: str = Field(description="SHA-256 of the document, as recorded in the log.")
    document: dict[str, Any]
    created_at: datetime


class AcknowledgementIn(Command):
    request_id: UUID


class VerificationOut(BaseModel):
    ok: bool
    checked: int = Field(description="Events whose link was recomputed and matched.")
    head_position: int
    head_hash: str | None
    first_break: int | None = Field(description="First position where the chain breaks.")
    reason: str | None
    checkpoints_checked: int


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem responses a route can give."""
    meaning = {
        400: "Bad request",
        401: "No valid API key",
        403: "The key's role, or the declared purpose, is not allowed",
        404: "Unknown id",
        405: "Method not allowed",
        409: "Not allowed in the current state, or a concurrent change",
        413: "Request body too large",
        422: "Invalid input (names the field)",
        429: "Too many failed authentications",
        503: "A view has not reached the requested position",
    }
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        code: {
            "description": meaning[code],
            "content": {"application/problem+json": {"schema": schema}},
        }
        for code in codes
    }
