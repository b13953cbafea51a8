"""Request and response models. Every request model forbids unknown fields; text a person
wrote and personal values (``Text``, ``LongText``, ``Label``, email, phone) are refused when
they hold a card number, identifiers (ids, enumerated values, dates, amounts) never are."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from rightsledger.domain.cards import contains_card_number, find_unstorable
from rightsledger.domain.values import (
    ActivityKind,
    ActivityReason,
    Basis,
    Category,
    Channel,
    InvoiceStatus,
    PartnerKind,
    Purpose,
    RequestChannel,
    RequestStatus,
    RequestType,
)

CARD_NUMBER_ERROR = "card_number"
"""The validation error type of a card number in a field (see problems.py)."""


def _no_card_number(value: str) -> str:
    if contains_card_number(value):
        raise PydanticCustomError(
            CARD_NUMBER_ERROR,
            "contains a payment card number; card numbers are never stored, payments go "
            "through the payment processor's token",
        )
    return value


NoCardNumber = AfterValidator(_no_card_number)
"""Refuses a value holding a card number; the error names the field, never the value."""

Text = Annotated[str, Field(min_length=1, max_length=2000), NoCardNumber]
LongText = Annotated[str, Field(min_length=1, max_length=10_000), NoCardNumber]
Label = Annotated[str, Field(min_length=1, max_length=100), NoCardNumber]
"""A short name a person chose (a policy or wording version)."""
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320), NoCardNumber]
Phone = Annotated[str, Field(pattern=r"^\+?[0-9 ().-]{3,40}$"), NoCardNumber]
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z_]{0,63}$")]


def listed(vocabulary: type[StrEnum], max_length: int = 100) -> Any:
    """A value of one of the policy's vocabularies, listed as an enum in the OpenAPI document,
    whose refusal the domain explains with the policy's reason (e.g. why data is never sold)."""
    return Field(
        min_length=1,
        max_length=max_length,
        json_schema_extra={"enum": [member.value for member in vocabulary]},
    )


BasisName = Annotated[str, listed(Basis)]
ChannelName = Annotated[str, listed(Channel)]
CategoryName = Annotated[str, listed(Category)]
InvoiceStatusName = Annotated[str, listed(InvoiceStatus)]
PartnerKindName = Annotated[str, listed(PartnerKind)]
AnyPurposeName = Annotated[str, listed(Purpose)]
PurposeName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        json_schema_extra={"enum": [p.value for p in Purpose if p is not Purpose.MARKETING]},
    ),
]
"""A purpose data is shared for: never marketing (the domain explains the refusal)."""
RequestChannelName = Annotated[str, listed(RequestChannel, max_length=50)]


Jurisdiction = Annotated[
    str,
    Field(
        min_length=1,
        max_length=50,
        description="One of the configured jurisdictions (the OpenAPI document lists them).",
    ),
]


class Command(BaseModel):
    """Base of request bodies: unknown fields are refused, and so is text PostgreSQL cannot
    store anywhere; card numbers are refused by the text types (``Text`` and the like)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        broken = find_unstorable(value, info.field_name or "")
        if broken is not None:
            msg = f"'{broken}' contains a NUL character or an unpaired surrogate"
            raise ValueError(msg)
        return value


# ---------------------------------------------------------------------- customers


class IdentityIn(Command):
    name: Text
    email: Email | None = None
    phone: Phone | None = None
    postal_address: Text | None = None


AccountReference = Annotated[str, Field(min_length=1, max_length=100)]


class AccountIn(Command):
    plan: Text
    activated_at: AwareDatetime | None = None
    reference: AccountReference | None = Field(
        default=None, description="The customer's account reference (as on their bills)."
    )


class PaymentMethodIn(Command):
    processor: Text = Field(description="The payment processor's name.")
    token: Text = Field(description="The processor's token for the payment method; never a card.")


class CustomerCreate(Command):
    policy_version: Label = Field(
        description="Version of the privacy policy the customer accepted."
    )
    identity: IdentityIn
    account: AccountIn | None = None
    payment_method: PaymentMethodIn | None = None
    purposes: dict[Category, list[Purpose]] | None = Field(
        default=None,
        description="Purposes each category is collected for: fewer of those the policy holds "
        "it for (the defaults), never another; marketing comes only from consent.",
    )


class IdentityPatch(Command):
    name: Text | None = None
    email: Email | None = None
    phone: Phone | None = None
    postal_address: Text | None = None


class AccountPatch(Command):
    plan: Text | None = None
    activated_at: AwareDatetime | None = None
    reference: AccountReference | None = None


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
    wording_version: Label
    captured_at: AwareDatetime


class ConsentChange(Command):
    purpose: Literal["marketing"] = "marketing"
    channel: Channel
    granted: StrictBool = Field(description="true or false (JSON booleans only).")
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
    basis: BasisName = Field(
        description="legal_obligation, service_provider or fraud_prevention; nothing else."
    )
    categories: Annotated[list[Category], Field(min_length=1, max_length=5)]
    purpose: PurposeName = Field(
        description="Why the data is shared; never marketing."
    )
    reference: Annotated[str, Field(max_length=2000), NoCardNumber] = ""


class CustomerCreated(BaseModel):
    customer_id: UUID
    position: int


class CommandAccepted(BaseModel):
    id: UUID
    position: int


class CategoryOut(BaseModel):
    purposes: list[AnyPurposeName]
    fields: dict[str, str] = Field(default_factory=dict)


class ConsentOut(BaseModel):
    channel: ChannelName
    granted: bool
    changed_at: datetime
    evidence: dict[str, Any]


class InvoiceOut(BaseModel):
    invoice_id: UUID
    amount: Decimal | str = Field(description="The amount; '[erased]' once purged.")
    currency: str
    status: InvoiceStatusName
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
    partner_kind: PartnerKindName | None
    basis: BasisName
    categories: list[CategoryName]
    purpose: AnyPurposeName
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
    erased_at: datetime | None = Field(
        default=None,
        description="When the customer's personal data was erased (a deletion request); "
        "null while it is held. Billing records stay until their retention ends.",
    )


class ConsentEventOut(BaseModel):
    channel: ChannelName
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
    kind: PartnerKindName
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
    channel: RequestChannelName = Field(
        description="How the written request arrived: web_form, email or postal_mail."
    )
    jurisdiction: Jurisdiction
    statement: LongText | None = None
    document_reference: Text | None = None
    corrections: dict[Category, dict[FieldName, Text]] | None = None


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
    channel: RequestChannelName
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
    awaiting: list[UUID] = Field(
        default_factory=list,
        description="Partners told of a deletion who have not acknowledged it yet.",
    )


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
    basis: BasisName
    categories: list[CategoryName]
    purpose: AnyPurposeName
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
    purpose: AnyPurposeName | None
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
    field: str | None = Field(
        default=None, description="The offending field's path, e.g. identity.name or items.2."
    )
    errors: list[dict[str, Any]] | None = None
    line: int | None = Field(default=None, description="Malformed JSON: the error's line.")
    column: int | None = Field(default=None, description="Malformed JSON: the error's column.")


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem responses a route can give."""
    meaning = {
        400: "Bad request",
        401: "No valid API key",
        403: "The key's role, or the declared purpose, is not allowed",
        404: "Unknown id",
        405: "Method not allowed",
        409: "Not allowed in the current state, or a concurrent change",
        413: "Request body too large (streamed or not)",
        422: "Invalid input (names the field; malformed JSON names the line and column)",
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


# -- answers in writing: receipts (built by rightsledger.domain.receipts) ---------------------


class Answer(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErasedOut(Answer):
    category: Category
    field: str = Field(description="A field of the category, or `invoices` / `entries`.")
    items: int | None = Field(default=None, description="For records: how many.")


class KeptOut(Answer):
    category: Category
    field: str = Field(description="A field of the category, or `invoices` / `entries`.")
    ground: str = Field(description="The legal ground on which it is kept.")
    until: datetime = Field(description="When it will be purged.")
    items: int | None = Field(default=None, description="For records: how many.")
    purged_at: datetime | None = Field(
        default=None, description="When it was purged, once the retention has ended."
    )


class PartnerToldOut(Answer):
    partner_id: UUID
    name: str | None
    categories: list[Category]
    told_at: datetime
    acknowledged_at: datetime | None = None


class ExportedOut(Answer):
    categories: list[Category]
    items: int
    digest: str = Field(description="SHA-256 of the export as delivered (`ExportPrepared`).")
    prepared_at: datetime
    deleted_at: datetime | None = Field(
        default=None, description="When the export was deleted (the customer's erasure)."
    )


class ChangedOut(Answer):
    category: Category
    fields: list[str]
    changed_at: datetime


class CorrectedOut(Answer):
    changes: list[ChangedOut]
    partners_told: list[PartnerToldOut]


class WithdrawnOut(Answer):
    channel: Channel
    withdrawn_at: datetime


class OptedOutOut(Answer):
    withdrawn: list[WithdrawnOut]


class DeletedOut(Answer):
    erased_at: datetime
    erased: list[ErasedOut]
    kept: list[KeptOut]
    partners_told: list[PartnerToldOut]


class RetentionRuleOut(BaseModel):
    """How long one category is kept for one purpose, from when, and why."""

    category: str
    purpose: str
    period: dict[str, int] | None = Field(description="`{months, days}`; null: while held.")
    counted_from: str
    kept: str = Field(description="The period in words.")
    basis: str


class ReceiptOut(Answer):
    """What a fulfilled request did, rebuilt from the events; no personal value in it."""

    request_id: UUID
    customer_id: UUID
    type: RequestType
    status: RequestStatus
    channel: str
    jurisdiction: str
    received_at: datetime
    due_at: datetime
    verified_at: datetime | None
    fulfilled_at: datetime
    summary: str
    request_version: int = Field(description="The request's version the receipt was built at.")
    customer_version: int = Field(description="The customer's version it was built at.")
    access: ExportedOut | None = None
    correction: CorrectedOut | None = None
    opt_out: OptedOutOut | None = None
    deletion: DeletedOut | None = None
    notes: list[str] = []
    retention: list[RetentionRuleOut] = Field(
        default=[], description="The retention schedule in force: each category's rules."
    )


# ---------------------------------------------------------------------- finding a customer


class CustomerMatches(BaseModel):
    """The customers an identifier finds, each limited to the declared purpose."""

    items: list[CustomerOut]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last."
    )
    position: int = Field(description="Log position the index reflects.")


# ---------------------------------------------------------------------- partners: list, notices


class PartnerPage(BaseModel):
    items: list[PartnerOut] = Field(description="Partners by name, then id.")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last."
    )
    position: int = Field(description="Log position the list reflects.")


class NotificationOut(BaseModel):
    request_id: UUID
    request_type: RequestType
    categories: list[str] = Field(description="The categories the partner received.")
    status: Literal["awaiting", "acknowledged", "informed", "lapsed"]
    notified_at: datetime
    due_at: datetime = Field(description="The request's due date (extension included).")
    acknowledged_at: datetime | None


class NotificationPage(BaseModel):
    partner_id: UUID
    items: list[NotificationOut] = Field(description="Soonest due first, then by request id.")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last."
    )
    position: int = Field(description="Log position the list reflects.")
