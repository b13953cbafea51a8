"""The data-rights request lifecycle and its invariants, checked statefully."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rightsledger.domain.deadlines import DeadlineRule, Period
from rightsledger.domain.errors import (
    DomainError,
    ExtensionError,
    IllegalTransitionError,
    InvalidCommandError,
    NotInWritingError,
    NotVerifiedError,
    RequestClosedError,
    UnknownJurisdictionError,
)
from rightsledger.domain.partner import Recipient
from rightsledger.domain.requests import Attention, DataRightsRequest
from rightsledger.domain.values import FINAL_STATUSES, RequestStatus

RULES = {
    "gdpr": DeadlineRule(Period(months=1), Period(months=2)),
    "ccpa": DeadlineRule(Period(days=45), Period(days=45)),
}
RECEIVED = datetime(2026, 1, 31, 9, tzinfo=UTC)
WINDOW = timedelta(days=7)
"""The reminder window (the policy's ``remind_before``)."""


def submit(**kwargs: Any) -> DataRightsRequest:
    args: dict[str, Any] = {
        "customer_id": uuid4(),
        "request_type": "access",
        "channel": "email",
        "jurisdiction": "gdpr",
        "rules": RULES,
        "received_at": RECEIVED,
        "actor": "intake:desk",
        "statement": "Please send me a copy of my data.",
    }
    args.update(kwargs)
    return DataRightsRequest.submit(**args)


def test_the_jurisdiction_sets_the_due_date_at_receipt() -> None:
    """GDPR: one calendar month; CCPA: 45 days."""
    assert submit().due_at == datetime(2026, 2, 28, 9, tzinfo=UTC)
    assert submit(jurisdiction="ccpa").due_at == RECEIVED + timedelta(days=45)
    with pytest.raises(UnknownJurisdictionError):
        submit(jurisdiction="mars")


@pytest.mark.parametrize("channel", ["phone", "in_person", "chat", ""])
def test_requests_must_be_in_writing(channel: str) -> None:
    """Only web form, email and postal mail are written channels."""
    with pytest.raises(NotInWritingError):
        submit(channel=channel)


def test_a_written_request_carries_a_statement_or_a_document() -> None:
    """A postal letter may be referenced instead of transcribed; one of the two is required."""
    with pytest.raises(NotInWritingError):
        submit(statement="  ")
    letter = submit(channel="postal_mail", statement=None, document_reference="scan 2026-0042")
    assert letter.document_reference == "scan 2026-0042"


def test_corrections_belong_to_correction_requests_only() -> None:
    """A correction request names fields to correct; other types carry none."""
    with pytest.raises(InvalidCommandError):
        submit(request_type="correction")
    with pytest.raises(InvalidCommandError):
        submit(corrections={"identity_contact": {"email": "a@b.c"}})
    with pytest.raises(InvalidCommandError):
        submit(request_type="correction", corrections={"identity_contact": {"iban": "x"}})
    request = submit(
        request_type="correction", corrections={"identity_contact": {"email": "a@b.c"}}
    )
    assert request.corrections == {"identity_contact": {"email": "a@b.c"}}


def test_gdpr_extension_adds_two_months_once() -> None:
    """An extension moves the due date by the jurisdiction's extension, and only once."""
    request = submit()
    request.extend(reason="complex request", now=RECEIVED, actor="po")
    assert request.due_at == datetime(2026, 4, 28, 9, tzinfo=UTC)
    with pytest.raises(ExtensionError):
        request.extend(reason="again", now=RECEIVED, actor="po")


def test_no_extension_after_the_due_date() -> None:
    """A deadline that has passed cannot be extended."""
    request = submit()
    with pytest.raises(ExtensionError):
        request.extend(reason="late", now=request.due_at, actor="po")


def deletion_awaiting(*partners: UUID) -> DataRightsRequest:
    """A verified deletion, carried out, whose recipients have not acknowledged yet."""
    request = submit(request_type="deletion")
    request.verify_identity(method="id_document", reference="doc-1", actor="po")
    request.record_work(action="personal data erased", actor="worker")
    request.notify_partners(
        notifications=[Recipient(partner_id=p, categories=("identity_contact",)) for p in partners],
        await_acknowledgement=True,
        actor="worker",
    )
    return request


def chase(request: DataRightsRequest, now: datetime) -> list[str]:
    return request.chase(now=now, remind_before=WINDOW, actor="worker")


def test_a_deletion_awaiting_partners_is_escalated_then_expires_naming_them() -> None:
    """Reminder and escalation in the window; past the due date: overdue, then expired,
    with the partners still awaited named in the reason and listed on the event."""
    first, second, answered = sorted([uuid4(), uuid4(), uuid4()], key=str)
    request = deletion_awaiting(first, second, answered)
    request.acknowledge(partner_id=answered, actor="partner:x")
    due = request.due_at
    assert request.next_attention_at(WINDOW) == due - WINDOW
    assert chase(request, due - WINDOW - timedelta(seconds=1)) == []
    assert chase(request, due - WINDOW) == ["reminded", "escalated"]
    assert request.next_attention_at(WINDOW) == due
    assert chase(request, due - timedelta(days=1)) == []
    assert chase(request, due) == []  # the due date itself is not past it
    assert chase(request, due + timedelta(seconds=1)) == ["overdue", "expired"]
    assert request.status is RequestStatus.EXPIRED
    assert request.reason == f"expired: 2 recipient(s) never acknowledged: {first}, {second}"
    expired = request._pending_events[-1]
    assert isinstance(expired, DataRightsRequest.Expired)
    assert expired.unacknowledged == [str(first), str(second)]
    assert request.next_attention_at(WINDOW) is None
    assert chase(request, due + timedelta(days=400)) == []


def test_an_extension_moves_the_expiry_of_a_deletion_awaiting_partners() -> None:
    """The due date includes the extension: no expiry until that date has passed."""
    request = submit(request_type="deletion")
    request.extend(reason="many recipients", now=RECEIVED, actor="po")
    request.verify_identity(method="id_document", reference="doc-1", actor="po")
    request.record_work(action="personal data erased", actor="worker")
    request.notify_partners(
        notifications=[Recipient(partner_id=uuid4(), categories=("billing",))],
        await_acknowledgement=True,
        actor="worker",
    )
    extended_due = request.due_at
    assert extended_due == datetime(2026, 4, 28, 9, tzinfo=UTC)
    assert chase(request, datetime(2026, 3, 1, tzinfo=UTC)) == []
    assert chase(request, extended_due + timedelta(hours=1)) == [
        "reminded",
        "escalated",
        "overdue",
        "expired",
    ]


def test_a_request_being_worked_on_is_marked_overdue_and_then_left_alone() -> None:
    """Verified, not awaiting anyone: overdue once; nothing more can happen by the clock."""
    request = submit()
    request.verify_identity(method="id_document", reference="doc-1", actor="po")
    due = request.due_at
    assert chase(request, due + timedelta(days=1)) == ["reminded", "overdue"]
    assert request.status is RequestStatus.IN_PROGRESS
    assert request.next_attention_at(WINDOW) is None


def test_an_unverified_request_expires_after_its_due_date() -> None:
    """The rule that was there before: never verified by the due date, expired."""
    request = submit()
    due = request.due_at
    assert chase(request, due - timedelta(days=3)) == ["reminded"]
    assert request.next_attention_at(WINDOW) == due
    assert chase(request, due + timedelta(minutes=1)) == ["overdue", "expired"]
    assert request.reason == "identity was not verified before the due date"
    assert request.next_attention_at(WINDOW) is None


def test_a_deletion_carried_out_can_no_longer_be_revoked() -> None:
    """Once the erasure is recorded it cannot be undone, so the request cannot end revoked."""
    request = deletion_awaiting(uuid4())
    with pytest.raises(IllegalTransitionError):
        request.revoke(reason="changed my mind", actor="intake:desk")
    assert request.status is RequestStatus.IN_PROGRESS


def test_a_deletion_carried_out_can_no_longer_be_denied() -> None:
    """Once the erasure is recorded the request cannot end denied: that would tell the
    customer their data was kept and let the recipients' notifications lapse; it stays in
    progress, awaiting them."""
    partner = uuid4()
    request = deletion_awaiting(partner)
    with pytest.raises(IllegalTransitionError, match="no longer be denied"):
        request.deny(reason="changed our mind", actor="privacy_officer:po")
    assert request.status is RequestStatus.IN_PROGRESS
    assert request.awaiting == {partner}


def test_a_version_1_expiry_reads_with_no_unacknowledged_partners() -> None:
    """Expiries recorded before the field existed load (upcast) with an empty list."""
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    mapper: Mapper[UUID] = Mapper(transcoder=transcoder)
    request = submit()
    request.expire(reason="late", now=request.due_at, actor="po")
    stored = mapper.to_stored_event(request._pending_events[-1])
    state = json.loads(stored.state)
    assert state.pop("class_version") == 2
    del state["unacknowledged"]
    old = StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=json.dumps(state).encode(),
    )
    event = mapper.to_domain_event(old)
    assert isinstance(event, DataRightsRequest.Expired)
    assert event.unacknowledged == []
    assert event.reason == "late"


class RequestLifecycle(RuleBasedStateMachine):
    """Random sequences of commands never break the lifecycle's invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.request = submit()
        self.now = RECEIVED
        self.verified = False
        self.extensions = 0
        self.final_status: RequestStatus | None = None
        self.original_due = self.request.due_at

    def _attempt(self, command: str, **kwargs: object) -> bool:
        before_version = self.request.version
        before_status = self.request.status
        try:
            getattr(self.request, command)(actor="po", **kwargs)
        except DomainError:
            assert self.request.version == before_version, "a refused command changed state"
            assert self.request.status is before_status
            return False
        return True

    @rule(days=st.integers(min_value=0, max_value=120))
    def time_passes(self, days: int) -> None:
        self.now += timedelta(days=days)

    @rule()
    def verify(self) -> None:
        accepted = self._attempt("verify_identity", method="id_document", reference="doc-1")
        expected = not self.verified and self.final_status is None
        assert accepted == expected
        if accepted:
            self.verified = True

    @rule()
    def extend(self) -> None:
        due = self.request.due_at
        accepted = self._attempt("extend", reason="complex", now=self.now)
        assert accepted == (self.final_status is None and self.extensions == 0 and self.now < due)
        if accepted:
            self.extensions += 1

    @rule()
    def fulfil(self) -> None:
        try:
            self.request.fulfil(summary="export sent", actor="worker")
        except RequestClosedError:
            assert self.final_status is not None
            return
        except NotVerifiedError:
            assert not self.verified
            return
        assert self.verified
        assert self.final_status is None
        self.final_status = RequestStatus.FULFILLED

    @rule(reason=st.sampled_from(["identity could not be verified", "manifestly unfounded"]))
    def deny(self, reason: str) -> None:
        if self._attempt("deny", reason=reason):
            assert self.final_status is None
            self.final_status = RequestStatus.DENIED
        else:
            assert self.final_status is not None

    @rule()
    def revoke(self) -> None:
        if self._attempt("revoke", reason="changed my mind"):
            assert self.final_status is None
            self.final_status = RequestStatus.REVOKED
        else:
            assert self.final_status is not None

    @rule()
    def expire(self) -> None:
        due = self.request.due_at
        if self._attempt("expire", reason="could not be completed in time", now=self.now):
            assert self.final_status is None
            assert self.now >= due
            self.final_status = RequestStatus.EXPIRED
        else:
            assert self.final_status is not None or self.now < due

    @rule()
    def chase(self) -> None:
        """The deadline chase takes what is due, once, and leaves nothing due behind it."""
        due = self.request.due_at
        done = chase(self.request, self.now)
        if self.final_status is not None:
            assert done == []
        if "expired" in done:
            assert not self.verified, "a request being worked on (no partner awaited) stays"
            assert self.now > due
            self.final_status = RequestStatus.EXPIRED
        assert chase(self.request, self.now) == []
        attention = self.request.chase_state.attention()
        if attention is None:
            assert self.request.next_attention_at(WINDOW) is None
        else:
            assert not attention.reached(self.now, due, WINDOW)
            assert self.request.next_attention_at(WINDOW) == attention.at(due, WINDOW)
            assert attention is (
                Attention.REMINDER if not self.request.reminded else Attention.DEADLINE
            )

    @precondition(lambda self: self.final_status is not None)
    @rule()
    def nothing_leaves_a_final_state(self) -> None:
        for command, kwargs in (
            ("verify_identity", {"method": "m", "reference": "r"}),
            ("extend", {"reason": "r", "now": RECEIVED}),
            ("deny", {"reason": "r"}),
            ("revoke", {}),
            ("fulfil", {"summary": "s"}),
            ("expire", {"reason": "r", "now": self.now + timedelta(days=1000)}),
        ):
            with pytest.raises(RequestClosedError):
                getattr(self.request, command)(actor="po", **kwargs)

    @invariant()
    def status_matches_the_model(self) -> None:
        if self.final_status is not None:
            assert self.request.status is self.final_status
            assert self.request.status in FINAL_STATUSES
        elif self.verified:
            assert self.request.status is RequestStatus.IN_PROGRESS
        else:
            assert self.request.status is RequestStatus.OPEN

    @invariant()
    def fulfilled_only_after_verification(self) -> None:
        if self.request.status is RequestStatus.FULFILLED:
            assert self.request.verified_at is not None

    @invariant()
    def due_date_moves_only_by_one_extension(self) -> None:
        if self.extensions:
            assert self.request.due_at == Period(months=2).after(self.original_due)
        else:
            assert self.request.due_at == self.original_due

    @invariant()
    def replaying_the_events_gives_the_same_state(self) -> None:
        events = list(self.request._pending_events)
        replayed = None
        for event in events:
            replayed = event.mutate(replayed)
        assert replayed is not None
        assert replayed.status is self.request.status
        assert replayed.due_at == self.request.due_at
        assert replayed.version == self.request.version


TestRequestLifecycle = RequestLifecycle.TestCase


def test_a_deletion_is_fulfilled_only_once_its_erasure_is_carried_out() -> None:
    """Recording the erasure does not fulfil a deletion with no recipients; confirming that
    the keys and exports are gone does, once (a repeat records nothing)."""
    request = submit(request_type="deletion")
    request.verify_identity(method="id_document", reference="doc-1", actor="po")
    request.record_work(action="personal data erased", actor="worker")
    recorded = request.status  # a copy: mypy keeps a narrowed attribute across method calls
    assert recorded is RequestStatus.IN_PROGRESS
    assert request.confirm_erasure(actor="worker")
    assert request.status is RequestStatus.FULFILLED
    assert not request.confirm_erasure(actor="worker")


def test_recipients_still_awaited_keep_the_deletion_open_after_its_erasure() -> None:
    """With a partner still awaited, the carried-out erasure leaves the deletion in progress."""
    partner = uuid4()
    request = deletion_awaiting(partner)
    assert request.confirm_erasure(actor="worker")
    assert request.status is RequestStatus.IN_PROGRESS
    assert request.awaiting == {partner}


@pytest.mark.parametrize(
    ("corrections", "field"),
    [
        ({"identity_contact": {"email": "not-an-email"}}, "corrections.identity_contact.email"),
        ({"identity_contact": {"phone": "   "}}, "corrections.identity_contact.phone"),
        ({"identity_contact": {"shoe_size": "7"}}, "corrections.identity_contact.shoe_size"),
        ({"billing": {"amount": "0"}}, "corrections.billing"),
        ({"identity_contact": {}}, "corrections.identity_contact"),
    ],
)
def test_a_correction_request_the_worker_could_not_carry_out_is_refused_at_once(
    corrections: dict[str, dict[str, str]], field: str
) -> None:
    """A correction request is checked as a correction is (PATCH): a value the customer's
    record would refuse is refused when the request is received, naming the field, rather
    than denied after the requester has proved who they are."""
    with pytest.raises(InvalidCommandError) as caught:
        submit(request_type="correction", corrections=corrections)
    assert caught.value.field == field
    assert "corrected are ," not in str(caught.value)
    accepted = submit(
        request_type="correction", corrections={"identity_contact": {"email": " ada@example.org "}}
    )
    assert accepted.corrections == {"identity_contact": {"email": "ada@example.org"}}
