"""Customers: the personal data held, why it is held, consents and disclosures."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, NotRequired, TypedDict
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from rightsledger.domain.cards import refuse_card_numbers
from rightsledger.domain.copying import CheapCopy
from rightsledger.domain.errors import (
    CustomerErasedError,
    DisclosureRefusedError,
    InvalidCategoryError,
    InvalidCommandError,
    InvalidPurposeError,
    MarketingConsentRequiredError,
    StateError,
)
from rightsledger.domain.fields import check_fields as _check_fields
from rightsledger.domain.fields import text as _text
from rightsledger.domain.partner import Partner, Recipient
from rightsledger.domain.personal import Internal, Key, PeriodScope, Personal, Public
from rightsledger.domain.requests import DuplicateRequestError
from rightsledger.domain.retention import RetentionSchedule, activity_period
from rightsledger.domain.values import (
    AUTHORITY_KINDS,
    CATEGORY_FIELDS,
    DEFAULT_PURPOSES,
    ActivityKind,
    ActivityReason,
    Basis,
    Category,
    Channel,
    InvoiceStatus,
    Purpose,
)

_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True, slots=True)
class Disclosure:
    """One share of the customer's data with a partner, as ``DataDisclosed`` recorded it."""

    disclosure_id: UUID
    partner_id: UUID
    basis: str
    categories: tuple[str, ...]
    purpose: str
    reference: str
    disclosed_at: datetime


@dataclass(frozen=True, slots=True)
class Consent:
    """Marketing consent on one channel, as the last ``ConsentGranted`` or
    ``ConsentWithdrawn`` recorded it."""

    granted: bool
    evidence: dict[str, str | datetime]
    """How it was captured, as recorded: ``method``, ``wording_version``, ``captured_at``."""
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class Invoice:
    """An invoice, as ``InvoiceRecorded`` recorded it (``Customer.invoices`` is keyed by its
    id). ``amount`` reads ``"[erased]"`` once the retained key is destroyed."""

    amount: Decimal | str
    currency: str
    status: str
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class ActivityEntry:
    """A network or account activity entry, as ``ActivityLogged`` recorded it. ``detail``
    reads ``"[erased]"`` once its period's key is destroyed."""

    entry_id: UUID
    kind: str
    reason: str
    detail: str
    occurred_at: datetime


class AccessLogEntry(TypedDict):
    """One line of a customer's access log (a read of their personal data, answered or
    refused), in the shape it has always had: ``reason`` only when the read was refused.
    ``Customer.access_log`` holds the reads recorded in the former form, on the customer's
    own stream (``DataAccessed``, ``AccessRefused``); the access export lists those, then
    the customer's ``AccessRecord``s, in this shape. A mapping rather than a record, so the
    line keeps exactly the keys it always had."""

    actor: str
    role: str
    purpose: str
    categories: list[str]
    what: str
    at: datetime
    refused: bool
    reason: NotRequired[str]


def _purpose(value: str, field: str) -> Purpose:
    try:
        purpose = Purpose(value)
    except ValueError:
        allowed = ", ".join(p.value for p in Purpose)
        raise InvalidPurposeError(
            f"unknown purpose {value!r}; the policy's purposes are {allowed}", field=field
        ) from None
    return purpose


def _category(value: str, field: str) -> Category:
    try:
        return Category(value)
    except ValueError:
        allowed = ", ".join(c.value for c in Category)
        raise InvalidCategoryError(
            f"unknown category {value!r}; expected one of {allowed}", field=field
        ) from None


def _correction_key(event: Customer.DetailsCorrected) -> Key:
    """Corrected payment details are retained with the billing records; the rest is personal."""
    return Key.RETAINED if event.category == Category.PAYMENT.value else Key.CUSTOMER


def _activity_scope(event: Customer.ActivityLogged) -> PeriodScope:
    """Activity is sealed per purpose and month it occurred in, so each period is purged alone."""
    period = activity_period(event.occurred_at)
    return PeriodScope(Category.ACTIVITY.value, event.reason, period.label, period.end)


FUTURE_TOLERANCE = timedelta(minutes=5)
"""How far past the ledger's clock a time a client gives may be (clocks differ a little)."""


def not_in_future(moment: datetime, now: datetime | None, field: str) -> None:
    """Refuse a time after ``now`` (beyond ``FUTURE_TOLERANCE``): consent not yet captured,
    an invoice not yet issued, activity that has not happened. Dated ahead, activity would
    also outlive its retention period by as much."""
    if now is not None and moment > now + FUTURE_TOLERANCE:
        raise InvalidCommandError(
            f"'{field}' is in the future ({moment.isoformat()}); record what has happened",
            field=field,
        )


def _ensure_contract_valid(partner: Partner, now: datetime) -> None:
    """Refuse a share with a partner whose confidentiality contract is not valid on ``now``."""
    if not partner.contract_valid_on(now):
        raise DisclosureRefusedError(
            f"the partner's confidentiality contract is not valid on {now.date()} "
            f"(valid until {partner.contract_valid_until})",
            field="partner_id",
        )


def _evidence(
    evidence: Mapping[str, object], now: datetime | None = None
) -> dict[str, str | datetime]:
    method = _text(evidence.get("method", ""), "evidence.method")
    wording = _text(evidence.get("wording_version", ""), "evidence.wording_version")
    captured = evidence.get("captured_at")
    if not isinstance(captured, datetime) or captured.tzinfo is None:
        raise InvalidCommandError(
            "'evidence.captured_at' must be a time with a time zone", field="evidence.captured_at"
        )
    not_in_future(captured, now, "evidence.captured_at")
    return {"method": method, "wording_version": wording, "captured_at": captured}


class Customer(CheapCopy, Aggregate):
    """A customer, the personal data held about them by category, and their consents."""

    class Event(Aggregate.Event):
        id_on_topic: ClassVar[str | None] = "customer_id"
        actor: Internal[str]

    class Registered(Aggregate.Created):
        id_on_topic: ClassVar[str | None] = "customer_id"
        actor: Internal[str]
        policy_version: Public[str]
        data: Annotated[
            dict[str, dict[str, str]],
            Personal(
                items={
                    Category.IDENTITY.value: Key.CUSTOMER,
                    Category.ACCOUNT.value: Key.CUSTOMER,
                    Category.PAYMENT.value: Key.RETAINED,
                }
            ),
        ]
        purposes: Public[dict[str, list[str]]]

    class DetailsCorrected(Event):
        category: Public[str]
        changes: Annotated[dict[str, str], Personal(_correction_key)]
        request_id: Public[UUID | None]

        def apply(self, aggregate: Customer) -> None:
            aggregate.data.setdefault(self.category, {}).update(self.changes)

    class ConsentGranted(Event):
        channel: Public[str]
        evidence: Internal[dict[str, Any]]

        def apply(self, aggregate: Customer) -> None:
            aggregate.consents[self.channel] = Consent(
                granted=True, evidence=self.evidence, changed_at=self.timestamp
            )

    class ConsentWithdrawn(Event):
        channel: Public[str]
        evidence: Internal[dict[str, Any]]
        request_id: Public[UUID | None]

        def apply(self, aggregate: Customer) -> None:
            aggregate.consents[self.channel] = Consent(
                granted=False, evidence=self.evidence, changed_at=self.timestamp
            )

    class InvoiceRecorded(Event):
        invoice_id: Public[UUID]
        amount: Annotated[Decimal, Personal(Key.RETAINED)]
        currency: Internal[str]
        status: Public[str]
        issued_at: Public[datetime]

        def apply(self, aggregate: Customer) -> None:
            aggregate.invoices[self.invoice_id] = Invoice(
                amount=self.amount,
                currency=self.currency,
                status=self.status,
                issued_at=self.issued_at,
            )

    class ActivityLogged(Event):
        entry_id: Public[UUID]
        kind: Public[str]
        reason: Public[str]
        detail: Annotated[str, Personal(Key.PERIOD, period=_activity_scope)]
        occurred_at: Public[datetime]

        def apply(self, aggregate: Customer) -> None:
            aggregate.activity.append(
                ActivityEntry(
                    entry_id=self.entry_id,
                    kind=self.kind,
                    reason=self.reason,
                    detail=self.detail,
                    occurred_at=self.occurred_at,
                )
            )

    class DataAccessed(Event):
        """The former form of a recorded read: someone read the customer's personal data,
        for a declared purpose. Reads are now ``AccessRecord.DataAccessed``, each on a
        stream of its own (``rightsledger.domain.access``); nothing new is written as this
        event, but stored logs hold it and it keeps loading into ``access_log``."""

        role: Public[str]
        purpose: Public[str]
        categories: Public[list[str]]
        what: Public[str]

        def apply(self, aggregate: Customer) -> None:
            aggregate.access_log.append(
                AccessLogEntry(
                    actor=self.actor,
                    role=self.role,
                    purpose=self.purpose,
                    categories=list(self.categories),
                    what=self.what,
                    at=self.timestamp,
                    refused=False,
                )
            )

    class AccessRefused(Event):
        """The former form of a recorded refusal: a read of the customer's personal data was
        refused (role or purpose not allowed). Refusals are now ``AccessRecord.AccessRefused``;
        nothing new is written as this event, but stored logs hold it and it keeps loading."""

        role: Public[str]
        purpose: Public[str]
        what: Public[str]
        reason: Internal[str]

        def apply(self, aggregate: Customer) -> None:
            aggregate.access_log.append(
                AccessLogEntry(
                    actor=self.actor,
                    role=self.role,
                    purpose=self.purpose,
                    categories=[],
                    what=self.what,
                    at=self.timestamp,
                    refused=True,
                    reason=self.reason,
                )
            )

    class DataDisclosed(Event):
        disclosure_id: Public[UUID]
        partner_id: Public[UUID]
        basis: Public[str]
        categories: Public[list[str]]
        purpose: Public[str]
        reference: Internal[str]

        def apply(self, aggregate: Customer) -> None:
            aggregate.disclosures.append(
                Disclosure(
                    disclosure_id=self.disclosure_id,
                    partner_id=self.partner_id,
                    basis=self.basis,
                    categories=tuple(self.categories),
                    purpose=self.purpose,
                    reference=self.reference,
                    disclosed_at=self.timestamp,
                )
            )

    class ActivityPurged(Event):
        """Activity entries logged for one purpose whose schedule has passed: dropped from the
        customer's record. Every period ending on or before ``through`` is purged, and its
        key is destroyed after this is recorded (``periods`` lists those holding entries)."""

        purpose: Public[str]
        through: Public[datetime]
        entries: Public[list[UUID]]
        periods: Public[list[str]]
        schedule: Public[dict[str, Any]]

        def apply(self, aggregate: Customer) -> None:
            gone = set(self.entries)
            aggregate.activity = [e for e in aggregate.activity if e.entry_id not in gone]
            marks = aggregate.activity_purged_through
            if self.purpose not in marks or marks[self.purpose] < self.through:
                marks[self.purpose] = self.through

    class RequestReceived(Event):
        """A data-rights request of the customer's was received. The customer's stream lists
        their requests so that submissions for one customer are decided one at a time, on
        the store's state (the version check at insert), and never duplicate an open one."""

        id_on_topic: ClassVar[str | None] = None
        request_id: Internal[UUID]
        request_type: Internal[str]

        def apply(self, aggregate: Customer) -> None:
            aggregate.requests[self.request_id] = self.request_type

    class Erased(Event):
        """Personal data erased on request; billing records and the processor's token kept."""

        request_id: Public[UUID]
        retained_until: Public[datetime]

        def apply(self, aggregate: Customer) -> None:
            payment = aggregate.data.get(Category.PAYMENT.value)
            aggregate.data = {Category.PAYMENT.value: dict(payment)} if payment else {}
            aggregate.activity = []
            aggregate.erased_at = self.timestamp
            aggregate.retained_until = self.retained_until

    class RetainedRecordsPurged(Event):
        """Billing records and the processor's token deleted once their retention ended."""

        def apply(self, aggregate: Customer) -> None:
            aggregate.data = {}
            aggregate.invoices = {}
            aggregate.purged_at = self.timestamp

    def __init__(
        self,
        actor: str,
        policy_version: str,
        data: dict[str, dict[str, str]],
        purposes: dict[str, list[str]],
    ) -> None:
        self.registered_by = actor
        self.policy_version = policy_version
        self.data: dict[str, dict[str, str]] = {k: dict(v) for k, v in data.items()}
        self.purposes: dict[str, list[str]] = {k: list(v) for k, v in purposes.items()}
        self.consents: dict[str, Consent] = {}
        """Per channel, the consent last granted or withdrawn."""
        self.invoices: dict[UUID, Invoice] = {}
        """Per invoice id, the invoice recorded (kept until the retained records are purged)."""
        self.activity: list[ActivityEntry] = []
        """Activity entries in the order logged (dropped when purged or erased)."""
        self.disclosures: list[Disclosure] = []
        self.erased_at: datetime | None = None
        self.retained_until: datetime | None = None
        self.purged_at: datetime | None = None
        self.activity_purged_through: dict[str, datetime] = {}
        """Per purpose, the period boundary activity has been purged through."""

        self.requests: dict[UUID, str] = {}
        """The customer's data-rights requests (id -> type), received since the streams
        record them; older requests are not listed."""
        # Reads recorded in the former form only; reads are now ``AccessRecord``s.
        self.access_log: list[AccessLogEntry] = []

    # ------------------------------------------------------------------ commands

    @classmethod
    def register(
        cls,
        *,
        policy_version: str,
        identity: Mapping[str, str],
        actor: str,
        account: Mapping[str, str] | None = None,
        payment_method: Mapping[str, str] | None = None,
        purposes: Mapping[str, Iterable[str]] | None = None,
        customer_id: UUID | None = None,
    ) -> Customer:
        """Register a customer with the personal data collected and why it is held."""
        refuse_card_numbers(
            policy_version=policy_version,
            identity=identity,
            account=account or {},
            payment_method=payment_method or {},
        )
        version = _text(policy_version, "policy_version")
        data: dict[str, dict[str, str]] = {
            Category.IDENTITY.value: _check_fields(Category.IDENTITY, identity, "identity")
        }
        if not data[Category.IDENTITY.value].get("name"):
            raise InvalidCommandError("a customer needs a name", field="identity.name")
        if account:
            data[Category.ACCOUNT.value] = _check_fields(Category.ACCOUNT, account, "account")
        if payment_method:
            payment = _check_fields(Category.PAYMENT, payment_method, "payment_method")
            if set(payment) != {"processor", "token"}:
                raise InvalidCommandError(
                    "a payment method is the processor's name and its token, both required",
                    field="payment_method",
                )
            data[Category.PAYMENT.value] = payment
        declared = {c.value: [p.value for p in DEFAULT_PURPOSES[c]] for c in Category}
        for category_name, purpose_names in (purposes or {}).items():
            category = _category(category_name, f"purposes.{category_name}")
            checked = []
            for name in purpose_names:
                purpose = _purpose(name, f"purposes.{category_name}")
                if purpose is Purpose.MARKETING:
                    raise MarketingConsentRequiredError(
                        "marketing is never a purpose of collection without explicit consent; "
                        "record consent per channel instead",
                        field=f"purposes.{category_name}",
                    )
                if purpose not in DEFAULT_PURPOSES[category]:
                    allowed = ", ".join(p.value for p in DEFAULT_PURPOSES[category])
                    raise InvalidPurposeError(
                        f"{category.value} is held only for {allowed} (the policy's purposes for "
                        f"it): a registration may name fewer of them, never {purpose.value}",
                        field=f"purposes.{category_name}",
                    )
                if purpose.value not in checked:
                    checked.append(purpose.value)
            if not checked:
                raise InvalidPurposeError(
                    f"{category.value} must be held for at least one purpose",
                    field=f"purposes.{category_name}",
                )
            declared[category.value] = checked
        return cls._create(
            cls.Registered,
            id=customer_id or uuid4(),
            actor=actor,
            policy_version=version,
            data=data,
            purposes=declared,
        )

    def correct(
        self,
        *,
        category: str,
        changes: Mapping[str, str],
        actor: str,
        request_id: UUID | None = None,
    ) -> None:
        """Correct fields of one category; each correction is its own event."""
        self._ensure_not_erased()
        refuse_card_numbers(changes=changes)
        cat = _category(category, "category")
        if not CATEGORY_FIELDS[cat]:
            raise InvalidCategoryError(
                f"{cat.value} holds records, not correctable fields", field="category"
            )
        if not changes:
            raise InvalidCommandError("a correction needs at least one field", field="changes")
        checked = _check_fields(cat, changes, "changes")
        self.trigger_event(
            self.DetailsCorrected,
            actor=actor,
            category=cat.value,
            changes=checked,
            request_id=request_id,
        )

    def apply_corrections(
        self,
        changes: Mapping[str, Mapping[str, str]],
        *,
        actor: str,
        request_id: UUID | None = None,
    ) -> None:
        """Correct several categories: one event per category corrected."""
        for category, fields in changes.items():
            self.correct(category=category, changes=fields, actor=actor, request_id=request_id)

    def change_consent(
        self,
        *,
        channel: str,
        granted: bool,
        evidence: Mapping[str, object],
        actor: str,
        now: datetime | None = None,
    ) -> None:
        """Grant or withdraw marketing consent on one channel (evidence captured by ``now``,
        when given)."""
        if granted:
            self.grant_consent(channel=channel, evidence=evidence, actor=actor, now=now)
        else:
            self.withdraw_consent(channel=channel, evidence=evidence, actor=actor, now=now)

    def opt_out(self, *, evidence: Mapping[str, object], actor: str, request_id: UUID) -> None:
        """Withdraw marketing consent on every channel it is held on (none held: nothing)."""
        for channel in self.consented_channels():
            self.withdraw_consent(
                channel=channel, evidence=evidence, actor=actor, request_id=request_id
            )

    def grant_consent(
        self,
        *,
        channel: str,
        evidence: Mapping[str, object],
        actor: str,
        now: datetime | None = None,
    ) -> None:
        """Record explicit marketing consent on one channel, with how it was captured."""
        self._ensure_not_erased()
        refuse_card_numbers(evidence=evidence)
        self.trigger_event(
            self.ConsentGranted,
            actor=actor,
            channel=self._channel(channel).value,
            evidence=_evidence(evidence, now),
        )

    def withdraw_consent(
        self,
        *,
        channel: str,
        evidence: Mapping[str, object],
        actor: str,
        request_id: UUID | None = None,
        now: datetime | None = None,
    ) -> None:
        """Withdraw marketing consent on one channel; effective when recorded."""
        refuse_card_numbers(evidence=evidence)
        chan = self._channel(channel)
        if not self.has_consent(chan):
            raise StateError(
                f"there is no marketing consent on {chan.value} to withdraw", field="channel"
            )
        self.trigger_event(
            self.ConsentWithdrawn,
            actor=actor,
            channel=chan.value,
            evidence=_evidence(evidence, now),
            request_id=request_id,
        )

    def record_invoice(
        self,
        *,
        amount: Decimal | str,
        currency: str,
        status: str,
        issued_at: datetime,
        actor: str,
        invoice_id: UUID | None = None,
        now: datetime | None = None,
    ) -> UUID:
        """Record an invoice (billing records are kept for regulatory compliance); one issued
        after ``now`` (when given) is refused."""
        self._ensure_not_erased()
        try:
            value = Decimal(str(amount))
        except InvalidOperation:
            raise InvalidCommandError("'amount' is not a number", field="amount") from None
        if not value.is_finite() or value < 0:
            raise InvalidCommandError("'amount' must be zero or more", field="amount")
        if not _CURRENCY.match(currency):
            raise InvalidCommandError(
                "'currency' must be a three-letter ISO 4217 code", field="currency"
            )
        try:
            invoice_status = InvoiceStatus(status)
        except ValueError:
            allowed = ", ".join(s.value for s in InvoiceStatus)
            raise InvalidCommandError(
                f"unknown invoice status {status!r}; expected one of {allowed}", field="status"
            ) from None
        if issued_at.tzinfo is None:
            raise InvalidCommandError("'issued_at' needs a time zone", field="issued_at")
        not_in_future(issued_at, now, "issued_at")
        new_id = invoice_id or uuid4()
        self.trigger_event(
            self.InvoiceRecorded,
            actor=actor,
            invoice_id=new_id,
            amount=value,
            currency=currency,
            status=invoice_status.value,
            issued_at=issued_at,
        )
        return new_id

    def log_activity(
        self,
        *,
        kind: str,
        reason: str,
        detail: str,
        occurred_at: datetime,
        actor: str,
        now: datetime | None = None,
    ) -> UUID:
        """Log network or account activity for security, legal or troubleshooting reasons;
        activity after ``now`` (when given) is refused, and so is activity of a month already
        purged for its reason."""
        self._ensure_not_erased()
        refuse_card_numbers(detail=detail)
        try:
            activity_kind = ActivityKind(kind)
        except ValueError:
            raise InvalidCommandError(
                f"unknown activity kind {kind!r}; expected network or account", field="kind"
            ) from None
        try:
            activity_reason = ActivityReason(reason)
        except ValueError:
            raise InvalidCommandError(
                f"activity may be logged only for security, legal or troubleshooting, "
                f"not {reason!r}",
                field="reason",
            ) from None
        if occurred_at.tzinfo is None:
            raise InvalidCommandError("'occurred_at' needs a time zone", field="occurred_at")
        not_in_future(occurred_at, now, "occurred_at")
        period = activity_period(occurred_at)
        through = self.activity_purged_through.get(activity_reason.value)
        if through is not None and period.end <= through:
            raise InvalidCommandError(
                f"activity for {activity_reason.value} in {period.label} is past its retention "
                f"period (the months ending by {through.date()} were purged); it is not "
                "recorded",
                field="occurred_at",
            )
        entry_id = uuid4()
        self.trigger_event(
            self.ActivityLogged,
            actor=actor,
            entry_id=entry_id,
            kind=activity_kind.value,
            reason=activity_reason.value,
            detail=_text(detail, "detail"),
            occurred_at=occurred_at,
        )
        return entry_id

    def disclose(
        self,
        *,
        partner: Partner,
        basis: str,
        categories: Iterable[str],
        purpose: str,
        reference: str,
        actor: str,
        now: datetime,
    ) -> UUID:
        """Share categories with a partner, only on a basis the policy permits."""
        self._ensure_not_erased()
        refuse_card_numbers(reference=reference)
        try:
            share_basis = Basis(basis)
        except ValueError:
            raise DisclosureRefusedError(
                f"{basis!r} is not a basis for sharing: customer data is never sold, rented or "
                "distributed; it is shared only for a legal obligation, with a contracted "
                "service provider, or for fraud prevention",
                field="basis",
            ) from None
        wanted = [_category(c, "categories") for c in categories]
        if not wanted:
            raise DisclosureRefusedError(
                "a disclosure names the categories shared", field="categories"
            )
        if len(set(wanted)) != len(wanted):
            raise DisclosureRefusedError("a category is named twice", field="categories")
        try:
            share_purpose = Purpose(purpose)
        except ValueError:
            raise DisclosureRefusedError(
                f"{purpose!r} is not one of the policy's purposes", field="purpose"
            ) from None
        if share_purpose is Purpose.MARKETING:
            raise DisclosureRefusedError(
                "customer data is never shared with third parties for marketing", field="purpose"
            )
        ref = reference.strip()
        for category in wanted:
            if not self.holds(category):
                raise DisclosureRefusedError(
                    f"no {category.value} data is held for this customer", field="categories"
                )
        if share_basis is Basis.LEGAL_OBLIGATION:
            if partner.kind not in AUTHORITY_KINDS:
                raise DisclosureRefusedError(
                    "a legal obligation is a request from law enforcement or an authority",
                    field="partner_id",
                )
            if not ref:
                raise DisclosureRefusedError(
                    "a disclosure under a legal obligation records the authority's reference",
                    field="reference",
                )
            if share_purpose is not Purpose.LEGAL:
                raise DisclosureRefusedError(
                    "a legal obligation serves the legal purpose", field="purpose"
                )
        elif share_basis is Basis.SERVICE_PROVIDER:
            if not partner.kind.is_contracted:
                raise DisclosureRefusedError(
                    f"a {partner.kind.value} is not a contracted service provider",
                    field="partner_id",
                )
            _ensure_contract_valid(partner, now)
            self._ensure_held_for(wanted, share_purpose)
        else:
            self._check_fraud_prevention(partner, wanted, share_purpose, ref, now)
        disclosure_id = uuid4()
        self.trigger_event(
            self.DataDisclosed,
            actor=actor,
            disclosure_id=disclosure_id,
            partner_id=partner.id,
            basis=share_basis.value,
            categories=[c.value for c in wanted],
            purpose=share_purpose.value,
            reference=ref,
        )
        return disclosure_id

    def _check_fraud_prevention(
        self,
        partner: Partner,
        wanted: list[Category],
        purpose: Purpose,
        reference: str,
        now: datetime,
    ) -> None:
        """A share to detect, investigate or prevent fraud (policy 1.3): for the legal purpose,
        naming the case, to an authority or to a contracted partner bound by a valid
        confidentiality contract, of categories held for the legal purpose."""
        if purpose is not Purpose.LEGAL:
            raise DisclosureRefusedError(
                "fraud prevention falls under the legal purpose", field="purpose"
            )
        if not reference:
            raise DisclosureRefusedError(
                "a disclosure for fraud prevention records the case it serves",
                field="reference",
            )
        if partner.kind not in AUTHORITY_KINDS:
            if not partner.kind.is_contracted:
                raise DisclosureRefusedError(
                    f"a {partner.kind.value} is neither an authority nor a contracted partner",
                    field="partner_id",
                )
            _ensure_contract_valid(partner, now)
        self._ensure_held_for(wanted, Purpose.LEGAL)

    def _ensure_held_for(self, wanted: list[Category], purpose: Purpose) -> None:
        """Refuse a share of a category not held for ``purpose``."""
        for category in wanted:
            if purpose.value not in self.purposes_of(category):
                raise DisclosureRefusedError(
                    f"{category.value} is not held for the purpose {purpose.value}",
                    field="categories",
                )

    def receive_request(
        self,
        *,
        request_id: UUID,
        request_type: str,
        still_open: Callable[[UUID], bool],
        actor: str,
    ) -> None:
        """Record a new data-rights request; refused while one of the same type is still
        open (``still_open`` says whether an earlier request is: the request's own stream
        decides, not this one). Received after an erasure too: a request is not personal data."""
        for earlier, kind in self.requests.items():
            if kind == request_type and earlier != request_id and still_open(earlier):
                kind = request_type.replace("_", "-")
                raise DuplicateRequestError(
                    f"the customer's {kind} request {earlier} is still open: it is the one "
                    "to answer; another of the same type is received once it is closed",
                    open_request=earlier,
                )
        if request_id in self.requests:
            raise StateError(f"request {request_id} was already received")
        self.trigger_event(
            self.RequestReceived, actor=actor, request_id=request_id, request_type=request_type
        )

    def erase(self, *, request_id: UUID, retained_until: datetime, actor: str) -> None:
        """Erase personal data; billing records stay until ``retained_until`` (regulation)."""
        self._ensure_not_erased()
        self.trigger_event(
            self.Erased, actor=actor, request_id=request_id, retained_until=retained_until
        )

    def purge_retained(self, *, now: datetime, actor: str) -> None:
        """Delete the retained billing records once their retention date has passed."""
        if self.erased_at is None or self.retained_until is None:
            raise StateError("only an erased customer's retained records are purged")
        if self.purged_at is not None:
            raise StateError("the retained records were already purged")
        if now < self.retained_until:
            raise StateError(
                f"billing records are retained until {self.retained_until.isoformat()}"
            )
        self.trigger_event(self.RetainedRecordsPurged, actor=actor)

    def purge_activity(
        self, *, reason: str, schedule: RetentionSchedule, now: datetime, actor: str
    ) -> list[UUID] | None:
        """Purge the activity logged for ``reason`` whose schedule has passed by ``now``: the
        entries purged, or None when nothing new is (no event). An erased customer holds no
        activity (the erasure destroyed every key), so nothing is recorded for them."""
        try:
            activity_reason = ActivityReason(reason)
        except ValueError:
            raise InvalidCommandError(
                f"unknown activity purpose {reason!r}", field="reason"
            ) from None
        if self.erased_at is not None:
            return None
        through = schedule.activity_due(activity_reason, now)
        due = [
            entry
            for entry in self.activity
            if entry.reason == activity_reason.value
            and activity_period(entry.occurred_at).end <= through
        ]
        mark = self.activity_purged_through.get(activity_reason.value)
        if not due and mark is not None and through <= mark:
            return None
        self.trigger_event(
            self.ActivityPurged,
            actor=actor,
            purpose=activity_reason.value,
            through=through,
            entries=[entry.entry_id for entry in due],
            periods=sorted({activity_period(entry.occurred_at).label for entry in due}),
            schedule=schedule.activity_rule(activity_reason).describe(),
        )
        return [entry.entry_id for entry in due]

    def _ensure_not_erased(self) -> None:
        if self.erased_at is not None:
            raise CustomerErasedError(
                "the customer's personal data was erased on request; nothing more is recorded"
            )

    # ------------------------------------------------------------------ queries

    @staticmethod
    def _channel(channel: str) -> Channel:
        try:
            return Channel(channel)
        except ValueError:
            allowed = ", ".join(c.value for c in Channel)
            raise InvalidCommandError(
                f"unknown channel {channel!r}; expected one of {allowed}", field="channel"
            ) from None

    def has_consent(self, channel: Channel | str) -> bool:
        state = self.consents.get(str(Channel(channel).value))
        return state is not None and state.granted

    def consented_channels(self) -> list[str]:
        return [c.value for c in Channel if self.has_consent(c)]

    def holds(self, category: Category) -> bool:
        if category is Category.BILLING:
            return bool(self.invoices)
        if category is Category.ACTIVITY:
            return bool(self.activity)
        return bool(self.data.get(category.value))

    def holds_name(self, category: str) -> bool:
        return self.holds(Category(category))

    def recipients(self, categories: Iterable[str] | None = None) -> list[Recipient]:
        """The partners that received the customer's data (only ``categories`` when given),
        each with the categories it received, sorted: whom a correction or erasure is told."""
        wanted = None if categories is None else set(categories)
        received: dict[UUID, set[str]] = {}
        for disclosure in self.disclosures:
            shared = set(disclosure.categories)
            if wanted is not None:
                shared &= wanted
            if shared:
                received.setdefault(disclosure.partner_id, set()).update(shared)
        return [
            Recipient(partner_id=partner, categories=tuple(sorted(cats)))
            for partner, cats in sorted(received.items(), key=lambda item: str(item[0]))
        ]

    def purposes_of(self, category: Category | str) -> list[str]:
        """Purposes a category is held for; marketing only while consent is held."""
        cat = Category(category)
        purposes = list(self.purposes.get(cat.value, []))
        if cat is Category.IDENTITY and self.consented_channels():
            purposes.append(Purpose.MARKETING.value)
        return purposes
