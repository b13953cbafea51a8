"""The data-rights request lifecycle and its invariants, checked statefully."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rightsledger.domain.deadlines import DeadlineRule, Period
from rightsledger.domain.errors import (
    DomainError,
    ExtensionError,
    InvalidCommandError,
    NotInWritingError,
    NotVerifiedError,
    RequestClosedError,
    UnknownJurisdictionError,
)
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.domain.values import FINAL_STATUSES, RequestStatus

RULES = {
    "gdpr": DeadlineRule(Period(months=1), Period(months=2)),
    "ccpa": DeadlineRule(Period(days=45), Period(days=45)),
}
RECEIVED = datetime(2026, 1, 31, 9, tzinfo=UTC)


def submit(**kwargs: object) -> DataRightsRequest:
    args: dict[str, object] = {
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
    return DataRightsRequest.submit(**args)  # type: ignore[arg-type]


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
