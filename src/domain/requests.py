"""Data-rights requests: access, correction, opt-out and deletion, made in writing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from rightsledger.domain.cards import refuse_card_numbers
from rightsledger.domain.copying import CheapCopy
from rightsledger.domain.deadlines import DeadlineRule, Period
from rightsledger.domain.errors import (
    ExtensionError,
    IllegalTransitionError,
    InvalidCommandError,
    NotInWritingError,
    NotVerifiedError,
    RequestClosedError,
    StateError,
    UnknownJurisdictionError,
)
from rightsledger.domain.fields import check_fields
from rightsledger.domain.partner import Recipient
from rightsledger.domain.personal import Internal, Key, Personal, Public, Published
from rightsledger.domain.values import (
    Category,
    RequestChannel,
    RequestStatus,
    RequestType,
)

if TYPE_CHECKING:
    from rightsledger.domain.customer import Customer

_TEXT_LIMIT = 10_000
_NAMED_PARTNERS = 50
"""Partners an expiry's reason names at most (the event's ``unacknowledged`` lists all)."""
_ALL_ACKNOWLEDGED = "personal data erased; every recipient acknowledged"


class DuplicateRequestError(StateError):
    """A request of the same type for the same customer is still open."""

    title = "Duplicate request"

    def __init__(self, detail: str, *, open_request: UUID) -> None:
        super().__init__(detail, field="type")
        self.open_request = open_request


def _reason(reason: str, field: str = "reason") -> str:
    text = reason.strip()
    if not text:
        raise InvalidCommandError(f"'{field}' must not be empty", field=field)
    if len(text) > _TEXT_LIMIT:
        raise InvalidCommandError(f"'{field}' is too long", field=field)
    return text


class Attention(StrEnum):
    """The clock a request's next chase step waits for."""

    REMINDER = "reminder"
    """The start of the reminder window: ``due_at`` minus the policy's ``remind_before``."""
    DEADLINE = "deadline"
    """The due date itself (which includes any extension granted)."""

    def at(self, due_at: datetime, remind_before: timedelta) -> datetime:
        """When this clock strikes for a request due at ``due_at``."""
        return due_at - remind_before if self is Attention.REMINDER else due_at

    def reached(self, now: datetime, due_at: datetime, remind_before: timedelta) -> bool:
        """Reminders are due from the window's start; deadline steps once the date has passed."""
        moment = self.at(due_at, remind_before)
        return now >= moment if self is Attention.REMINDER else now > moment


CHASE_STEPS: tuple[tuple[str, Attention], ...] = (
    ("reminded", Attention.REMINDER),
    ("escalated", Attention.REMINDER),
    ("overdue", Attention.DEADLINE),
    ("expired", Attention.DEADLINE),
)
"""The deadline chase's steps, in the order they are taken, with the clock each waits for."""


@dataclass(frozen=True)
class ChaseState:
    """What the deadline chase knows of a request: the aggregate and the request queue
    (``request_queue``) both hold these facts, and this is the one place that says which
    steps are still to come and when the request next needs attention."""

    status: RequestStatus
    reminded: bool
    escalated: bool
    overdue_recorded: bool
    awaiting: int
    """Partners still awaited (a deletion's notified recipients yet to acknowledge)."""

    def pending(self) -> tuple[str, ...]:
        """The steps still to come, in order; none once the request is closed."""
        if self.status.is_final:
            return ()
        open_ = self.status is RequestStatus.OPEN
        still = {
            "reminded": not self.reminded,
            "escalated": self.awaiting > 0 and not self.escalated,
            "overdue": not self.overdue_recorded,
            # Past the due date (extension included) without completion: expired, as in
            # the Data Rights Protocol; a request being worked on by us is only overdue.
            "expired": open_ or self.awaiting > 0,
        }
        return tuple(step for step, _ in CHASE_STEPS if still[step])

    def attention(self) -> Attention | None:
        """The clock the next step waits for; None when nothing more can happen by the clock."""
        pending = self.pending()
        return _CLOCK[pending[0]] if pending else None

    def next_attention_at(self, due_at: datetime, remind_before: timedelta) -> datetime | None:
        attention = self.attention()
        return attention.at(due_at, remind_before) if attention is not None else None


_CLOCK = dict(CHASE_STEPS)


@dataclass(frozen=True, slots=True)
class Verification:
    """How the requester's identity was verified, as ``IdentityVerified`` recorded it
    (``reference`` reads ``"[erased]"`` once the request's key is destroyed)."""

    method: str
    reference: str


class DataRightsRequest(CheapCopy, Aggregate):
    """A customer's written request to exercise a right of section 1.4 of the policy."""

    class Event(Aggregate.Event):
        id_on_topic: ClassVar[str | None] = "request_id"
        actor: Internal[str]

    class Submitted(Aggregate.Created):
        id_on_topic: ClassVar[str | None] = "request_id"
        actor: Internal[str]
        customer_id: Public[UUID]
        request_type: Annotated[str, Published("type")]
        channel: Public[str]
        statement: Annotated[str | None, Personal(Key.REQUEST)]
        document_reference: Annotated[str | None, Personal(Key.REQUEST)]
        jurisdiction: Public[str]
        received_at: Public[datetime]
        due_at: Public[datetime]
        extension_months: Internal[int]
        extension_days: Internal[int]
        corrections: Annotated[dict[str, dict[str, str]] | None, Personal(Key.REQUEST)]

    class IdentityVerified(Event):
        method: Public[str]
        reference: Annotated[str, Personal(Key.REQUEST)]

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.status = RequestStatus.IN_PROGRESS
            aggregate.verified_at = self.timestamp
            aggregate.verification = Verification(method=self.method, reference=self.reference)

    class DeadlineExtended(Event):
        reason: Annotated[str, Personal(Key.REQUEST)]
        due_at: Public[datetime]

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.extension_reason = self.reason
            aggregate.extended_at = self.timestamp
            aggregate.due_at = self.due_at

    class Denied(Event):
        reason: Annotated[str, Personal(Key.REQUEST)]

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.status = RequestStatus.DENIED
            aggregate.reason = self.reason
            aggregate.closed_at = self.timestamp

    class Revoked(Event):
        reason: Annotated[str | None, Personal(Key.REQUEST)]

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.status = RequestStatus.REVOKED
            aggregate.reason = self.reason
            aggregate.closed_at = self.timestamp

    class Fulfilled(Event):
        summary: Internal[str]

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.status = RequestStatus.FULFILLED
            aggregate.reason = self.summary
            aggregate.closed_at = self.timestamp

    class ExportPrepared(Event):
        """The access export was assembled; its digest proves what was delivered."""

        digest: Public[str]
        categories: Public[list[str]]
        items: Public[int]

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.export_digest = self.digest

    class PartnersNotified(Event):
        """Partners that received the customer's data were told of a correction or deletion."""

        notifications: Public[list[dict[str, Any]]]
        awaiting_acknowledgement: Public[bool]

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.notified = [
                Recipient(partner_id=UUID(str(n["partner_id"])), categories=tuple(n["categories"]))
                for n in self.notifications
            ]
            if self.awaiting_acknowledgement:
                aggregate.awaiting = {n.partner_id for n in aggregate.notified}

    class PartnerAcknowledged(Event):
        partner_id: Public[UUID]

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.awaiting.discard(self.partner_id)
            aggregate.acknowledged.add(self.partner_id)

    class WorkDone(Event):
        """The worker's part is recorded: what it did, so a repeated delivery does nothing."""

        action: Public[str]

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.work_done = self.action

    class ErasureCarriedOut(Event):
        """The erasure's consequences are done: the customer's keys destroyed and their
        exports deleted. Only then can a deletion be fulfilled."""

        id_on_topic: ClassVar[str | None] = None

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.erasure_carried_out = True

    class DeadlineApproaching(Event):
        due_at: Public[datetime]

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.reminded = True

    class Overdue(Event):
        due_at: Public[datetime]

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.overdue_recorded = True

    class Escalated(Event):
        reason: Internal[str]

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.escalated = True

    class Expired(Event):
        """Past the due date (extension included) without being completed."""

        class_version = 2
        reason: Annotated[str, Personal(Key.REQUEST)]
        unacknowledged: Internal[list[str]]
        """Partners (ids) a deletion still awaited: not sealed, so still named after the
        erasure has made ``reason`` unreadable. Version 1 events had none: read as []."""

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["unacknowledged"] = []

        def apply(self, aggregate: DataRightsRequest) -> None:
            aggregate.status = RequestStatus.EXPIRED
            aggregate.reason = self.reason
            aggregate.closed_at = self.timestamp

    def __init__(
        self,
        actor: str,
        customer_id: UUID,
        request_type: str,
        channel: str,
        statement: str | None,
        document_reference: str | None,
        jurisdiction: str,
        received_at: datetime,
        due_at: datetime,
        extension_months: int,
        extension_days: int,
        corrections: dict[str, dict[str, str]] | None,
    ) -> None:
        self.submitted_by = actor
        self.customer_id = customer_id
        self.request_type = RequestType(request_type)
        self.channel = RequestChannel(channel)
        self.statement = statement
        self.document_reference = document_reference
        self.jurisdiction = jurisdiction
        self.received_at = received_at
        self.due_at = due_at
        self.extension = Period(months=extension_months, days=extension_days)
        self.corrections = corrections
        self.status = RequestStatus.OPEN
        self.verified_at: datetime | None = None
        self.verification: Verification | None = None
        self.extension_reason: str | None = None
        self.extended_at: datetime | None = None
        self.reason: str | None = None
        self.closed_at: datetime | None = None
        self.export_digest: str | None = None
        self.notified: list[Recipient] = []
        """The partners a correction or deletion was told of, with the categories each had
        received (as ``PartnersNotified`` recorded them)."""
        self.awaiting: set[UUID] = set()
        self.acknowledged: set[UUID] = set()
        self.work_done: str | None = None
        self.erasure_carried_out = False
        self.reminded = False
        self.overdue_recorded = False
        self.escalated = False

    # ------------------------------------------------------------------ commands

    @classmethod
    def submit(
        cls,
        *,
        customer_id: UUID,
        request_type: str,
        channel: str,
        jurisdiction: str,
        rules: Mapping[str, DeadlineRule],
        received_at: datetime,
        actor: str,
        statement: str | None = None,
        document_reference: str | None = None,
        corrections: Mapping[str, Mapping[str, str]] | None = None,
        request_id: UUID | None = None,
    ) -> DataRightsRequest:
        """Receive a written request; the jurisdiction's rule sets the due date now."""
        refuse_card_numbers(
            statement=statement or "",
            document_reference=document_reference or "",
            corrections=corrections or {},
        )
        try:
            kind = RequestType(request_type)
        except ValueError:
            allowed = ", ".join(t.value for t in RequestType)
            raise InvalidCommandError(
                f"unknown request type {request_type!r}; expected one of {allowed}", field="type"
            ) from None
        try:
            written = RequestChannel(channel)
        except ValueError:
            allowed = ", ".join(c.value for c in RequestChannel)
            raise NotInWritingError(
                f"requests must be submitted in writing ({allowed}); {channel!r} is not accepted",
                field="channel",
            ) from None
        statement_text = (statement or "").strip() or None
        document = (document_reference or "").strip() or None
        if statement_text is None and document is None:
            raise NotInWritingError(
                "a written request carries the requester's statement or a reference to the "
                "written document",
                field="statement",
            )
        rule = rules.get(jurisdiction)
        if rule is None:
            known = ", ".join(sorted(rules)) or "none configured"
            raise UnknownJurisdictionError(
                # the value is not echoed: it is whatever the caller sent, a card number too
                f"no response deadline is configured for this jurisdiction (known: {known})",
                field="jurisdiction",
            )
        if received_at.tzinfo is None:
            raise InvalidCommandError("'received_at' needs a time zone", field="received_at")
        checked_corrections = cls._check_corrections(kind, corrections)
        return cls._create(
            cls.Submitted,
            id=request_id or uuid4(),
            actor=actor,
            customer_id=customer_id,
            request_type=kind.value,
            channel=written.value,
            statement=statement_text,
            document_reference=document,
            jurisdiction=jurisdiction,
            received_at=received_at,
            due_at=rule.respond_within.after(received_at),
            extension_months=rule.extension.months,
            extension_days=rule.extension.days,
            corrections=checked_corrections,
        )

    @staticmethod
    def _check_corrections(
        kind: RequestType, corrections: Mapping[str, Mapping[str, str]] | None
    ) -> dict[str, dict[str, str]] | None:
        if kind is not RequestType.CORRECTION:
            if corrections:
                raise InvalidCommandError(
                    "only a correction request carries corrections", field="corrections"
                )
            return None
        if not corrections:
            raise InvalidCommandError(
                "a correction request names the fields to correct", field="corrections"
            )
        checked: dict[str, dict[str, str]] = {}
        for category_name, fields in corrections.items():
            try:
                category = Category(category_name)
            except ValueError:
                raise InvalidCommandError(
                    f"unknown category {category_name!r}", field=f"corrections.{category_name}"
                ) from None
            where = f"corrections.{category_name}"
            if not fields:
                raise InvalidCommandError(
                    f"name the {category.value} fields to correct", field=where
                )
            # the checks a correction (PATCH) applies, so that a request the worker could
            # not carry out is refused now, not denied after the requester proved who they are
            checked[category.value] = check_fields(category, fields, where)
        return checked

    def _ensure_open(self) -> None:
        if self.status.is_final:
            raise RequestClosedError(
                f"the request is {self.status.value}; a closed request cannot change",
                field="status",
            )

    def verify_identity(self, *, method: str, reference: str, actor: str) -> None:
        """Record that the requester's identity was verified; work may start."""
        refuse_card_numbers(method=method, reference=reference)
        self._ensure_open()
        if self.status is not RequestStatus.OPEN:
            raise IllegalTransitionError("the requester's identity is already verified")
        self.trigger_event(
            self.IdentityVerified,
            actor=actor,
            method=_reason(method, "method"),
            reference=_reason(reference, "reference"),
        )

    def extend(self, *, reason: str, now: datetime, actor: str) -> None:
        """Extend the deadline by the jurisdiction's extension: once, before it passes."""
        refuse_card_numbers(reason=reason)
        self._ensure_open()
        if self.extension_reason is not None:
            raise ExtensionError("the deadline has already been extended once")
        if now >= self.due_at:
            raise ExtensionError(
                f"the deadline passed at {self.due_at.isoformat()}; it can no longer be extended"
            )
        self.trigger_event(
            self.DeadlineExtended,
            actor=actor,
            reason=_reason(reason),
            due_at=self.extension.after(self.due_at),
        )

    def deny(self, *, reason: str, actor: str) -> None:
        """Deny the request, stating why: only before its work is done."""
        refuse_card_numbers(reason=reason)
        self._ensure_open()
        if self.work_done is not None:
            # A deletion awaiting its recipients' acknowledgements has already erased the
            # customer: denying it would tell the customer their data was kept, and let the
            # recipients' notifications lapse. It ends fulfilled when every one has answered.
            raise IllegalTransitionError(
                f"the request's work is already done ({self.work_done}); it can no longer be denied"
            )
        self.trigger_event(self.Denied, actor=actor, reason=_reason(reason))

    def revoke(self, *, actor: str, reason: str | None = None) -> None:
        """The requester withdraws the request."""
        refuse_card_numbers(reason=reason or "")
        self._ensure_open()
        if self.work_done is not None:
            # A deletion awaiting its recipients' acknowledgements has already erased the
            # customer: that cannot be undone, so the request cannot end as revoked.
            raise IllegalTransitionError(
                f"the request's work is already done ({self.work_done}); it can no longer be "
                "revoked"
            )
        self.trigger_event(self.Revoked, actor=actor, reason=(reason or "").strip() or None)

    def fulfil(self, *, summary: str, actor: str) -> None:
        """Mark the request fulfilled; only after verification and every partner's answer."""
        self._ensure_open()
        if self.status is not RequestStatus.IN_PROGRESS:
            raise NotVerifiedError(
                "the requester's identity must be verified before the request is fulfilled"
            )
        if self.awaiting:
            raise IllegalTransitionError(
                f"{len(self.awaiting)} partner(s) have not acknowledged the notification yet"
            )
        self.trigger_event(self.Fulfilled, actor=actor, summary=_reason(summary, "summary"))

    def expire(self, *, reason: str, now: datetime, actor: str) -> None:
        """Close a request that could not be completed by its due date."""
        self._ensure_open()
        if now < self.due_at:
            raise IllegalTransitionError(
                f"the request is due at {self.due_at.isoformat()} and has not expired"
            )
        self.trigger_event(
            self.Expired,
            actor=actor,
            reason=_reason(reason),
            unacknowledged=sorted(str(partner) for partner in self.awaiting),
        )

    def _ensure_in_progress(self) -> None:
        self._ensure_open()
        if self.status is not RequestStatus.IN_PROGRESS:
            raise NotVerifiedError("the requester's identity must be verified first")

    def record_work(self, *, action: str, actor: str) -> None:
        """Record that the worker has done its part (once)."""
        self._ensure_in_progress()
        if self.work_done is not None:
            raise IllegalTransitionError(f"the work was already done: {self.work_done}")
        self.trigger_event(self.WorkDone, actor=actor, action=_reason(action, "action"))

    def confirm_erasure(self, *, actor: str) -> bool:
        """Record that the erasure's keys and exports are gone, and fulfil the deletion when
        no recipient is awaited; False when there was nothing left to record."""
        if self.status.is_final or self.erasure_carried_out or self.work_done is None:
            return False
        self.trigger_event(self.ErasureCarriedOut, actor=actor)
        if not self.awaiting:
            summary = (
                _ALL_ACKNOWLEDGED
                if self.notified
                else "personal data erased; no recipient to notify"
            )
            self.fulfil(summary=summary, actor=actor)
        return True

    def record_export(self, *, digest: str, categories: list[str], items: int, actor: str) -> None:
        """Record the access export's digest and contents summary."""
        self._ensure_in_progress()
        if self.request_type is not RequestType.ACCESS:
            raise IllegalTransitionError("only an access request has an export")
        if self.export_digest is not None:
            raise IllegalTransitionError("the export was already prepared")
        self.trigger_event(
            self.ExportPrepared,
            actor=actor,
            digest=digest,
            categories=sorted(categories),
            items=items,
        )

    def notify_partners(
        self, *, notifications: Iterable[Recipient], await_acknowledgement: bool, actor: str
    ) -> None:
        """Record the partners told of a correction or deletion (the relay delivers it)."""
        self._ensure_in_progress()
        if self.request_type not in (RequestType.CORRECTION, RequestType.DELETION):
            raise IllegalTransitionError("partners are notified of corrections and deletions")
        if self.notified:
            raise IllegalTransitionError("the partners were already notified")
        clean = [
            {"partner_id": str(n.partner_id), "categories": sorted(n.categories)}
            for n in notifications
        ]
        self.trigger_event(
            self.PartnersNotified,
            actor=actor,
            notifications=clean,
            awaiting_acknowledgement=await_acknowledgement and bool(clean),
        )

    def acknowledge(self, *, partner_id: UUID, actor: str) -> bool:
        """A notified partner confirms it has acted on the notification; the last awaited
        acknowledgement of a deletion whose erasure was carried out fulfils it. False,
        recording nothing, when that partner had already acknowledged it (a repeat confirms,
        even once the request is closed)."""
        if partner_id in self.acknowledged:
            return False
        self._ensure_open()
        if partner_id not in self.awaiting:
            raise IllegalTransitionError(
                "this partner has no notification awaiting acknowledgement for this request",
                field="partner_id",
            )
        self.trigger_event(self.PartnerAcknowledged, actor=actor, partner_id=partner_id)
        if not self.awaiting and self.erasure_carried_out:
            self.fulfil(summary=_ALL_ACKNOWLEDGED, actor=actor)
        return True

    def fulfil_access(self, *, digest: str, categories: list[str], items: int, actor: str) -> None:
        """Record the access export and fulfil the request, together."""
        self.record_export(digest=digest, categories=categories, items=items, actor=actor)
        self.fulfil(summary=f"access export prepared ({items} items)", actor=actor)

    def fulfil_correction(self, customer: Customer, *, actor: str) -> None:
        """Apply the requested corrections to the customer, notify the partners that received
        those categories (no acknowledgement awaited), and fulfil."""
        self.record_work(action="corrections applied", actor=actor)
        corrections = self.corrections or {}
        customer.apply_corrections(corrections, actor=actor, request_id=self.id)
        notifications = customer.recipients(corrections)
        if notifications:
            self.notify_partners(
                notifications=notifications, await_acknowledgement=False, actor=actor
            )
        self.fulfil(summary="corrections applied and recipients notified", actor=actor)

    def fulfil_opt_out(self, customer: Customer, *, now: datetime, actor: str) -> None:
        """Withdraw the customer's marketing consent on every channel at once, then fulfil."""
        self.record_work(action="marketing consent withdrawn", actor=actor)
        evidence = {
            "method": "data_rights_request",
            "wording_version": f"request:{self.id}",
            "captured_at": now,
        }
        customer.opt_out(evidence=evidence, actor=actor, request_id=self.id)
        self.fulfil(summary="opted out of marketing on every channel", actor=actor)

    def erase(self, customer: Customer, *, retained_until: datetime, actor: str) -> None:
        """Erase the customer's personal data and notify every partner that received any,
        awaiting their acknowledgements. Fulfilment follows ``confirm_erasure`` (and the last
        acknowledgement when anyone was notified)."""
        self.record_work(action="personal data erased", actor=actor)
        customer.erase(request_id=self.id, retained_until=retained_until, actor=actor)
        notifications = customer.recipients()
        if notifications:
            self.notify_partners(
                notifications=notifications, await_acknowledgement=True, actor=actor
            )

    def remind(self, *, actor: str) -> None:
        self._ensure_open()
        if self.reminded:
            raise IllegalTransitionError("a reminder was already recorded")
        self.trigger_event(self.DeadlineApproaching, actor=actor, due_at=self.due_at)

    def mark_overdue(self, *, now: datetime, actor: str) -> None:
        self._ensure_open()
        if self.overdue_recorded or now <= self.due_at:
            raise IllegalTransitionError("the request is not newly overdue")
        self.trigger_event(self.Overdue, actor=actor, due_at=self.due_at)

    def escalate(self, *, reason: str, actor: str) -> None:
        self._ensure_open()
        if self.escalated:
            raise IllegalTransitionError("the request was already escalated")
        self.trigger_event(self.Escalated, actor=actor, reason=_reason(reason))

    def chase(self, *, now: datetime, remind_before: timedelta, actor: str) -> list[str]:
        """Take every step of the deadline chase whose time has come (each at most once);
        the steps taken, in order (see ``CHASE_STEPS``).

        ``reminded`` and ``escalated`` (partners still awaited) from ``due_at`` minus
        ``remind_before``; ``overdue`` once the due date has passed; then ``expired`` when
        the request can no longer be completed in time: never verified, or a deletion
        whose notified recipients have not all acknowledged.
        """
        done: list[str] = []
        for step, clock in CHASE_STEPS:
            due = clock.reached(now, self.due_at, remind_before)
            if due and step in self.chase_state.pending():
                self._take(step, now=now, actor=actor)
                done.append(step)
        return done

    def _take(self, step: str, *, now: datetime, actor: str) -> None:
        if step == "reminded":
            self.remind(actor=actor)
        elif step == "escalated":
            self.escalate(
                reason=f"{len(self.awaiting)} recipient(s) have not acknowledged the deletion "
                "and the due date is near",
                actor=actor,
            )
        elif step == "overdue":
            self.mark_overdue(now=now, actor=actor)
        elif self.status is RequestStatus.OPEN:
            reason = "identity was not verified before the due date"
            self.expire(reason=reason, now=now, actor=actor)
        else:
            awaited = sorted(str(partner) for partner in self.awaiting)
            named = ", ".join(awaited[:_NAMED_PARTNERS])
            if len(awaited) > _NAMED_PARTNERS:
                named += f" and {len(awaited) - _NAMED_PARTNERS} more"  # all in the event
            self.expire(
                reason=f"expired: {len(awaited)} recipient(s) never acknowledged: {named}",
                now=now,
                actor=actor,
            )

    # ------------------------------------------------------------------ queries

    @property
    def chase_state(self) -> ChaseState:
        return ChaseState(
            status=self.status,
            reminded=self.reminded,
            escalated=self.escalated,
            overdue_recorded=self.overdue_recorded,
            awaiting=len(self.awaiting),
        )

    def next_attention_at(self, remind_before: timedelta) -> datetime | None:
        """When the deadline chase next has something to do; None when it never will."""
        return self.chase_state.next_attention_at(self.due_at, remind_before)

    def is_overdue(self, now: datetime) -> bool:
        return not self.status.is_final and now > self.due_at
