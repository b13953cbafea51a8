"""Receipts folded from events alone: what each kind of request did, field by field."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rightsledger.domain.customer import Customer
from rightsledger.domain.deadlines import DeadlineRule, Period
from rightsledger.domain.partner import Partner
from rightsledger.domain.receipts import (
    BILLING_GROUND,
    NotFulfilledError,
    Retention,
    build_receipt,
)
from rightsledger.domain.requests import DataRightsRequest
from tests.conftest import EVIDENCE

RULES = {"gdpr": DeadlineRule(Period(months=1), Period(months=2))}
NOW = datetime(2026, 11, 2, 9, tzinfo=UTC)
IDENTITY = {
    "name": "Ada Lovelace",
    "email": "ada@example.org",
    "phone": "+44 20 7946 0000",
    "postal_address": "12 St James's Square",
}


class Stream:
    """An aggregate and every event it has triggered so far, in order."""

    def __init__(self, aggregate: Any) -> None:
        self.aggregate = aggregate
        self.events: list[Any] = []
        self.take()

    def take(self) -> None:
        self.events += self.aggregate.collect_events()


def customer(identity: dict[str, str] | None = None) -> Stream:
    return Stream(
        Customer.register(
            policy_version="2026-01",
            identity=identity or IDENTITY,
            account={"plan": "fibre-500"},
            payment_method={"processor": "Acme", "token": "tok_1"},
            actor="intake:desk",
        )
    )


def request(of: Stream, kind: str, **extra: Any) -> Stream:
    stream = Stream(
        DataRightsRequest.submit(
            customer_id=of.aggregate.id,
            request_type=kind,
            channel="email",
            jurisdiction="gdpr",
            rules=RULES,
            received_at=NOW,
            actor="intake:desk",
            statement="please",
            **extra,
        )
    )
    stream.aggregate.verify_identity(method="id_document", reference="r", actor="po")
    stream.take()
    return stream


def erase(person: Stream, police: Partner) -> tuple[Stream, datetime]:
    """A deletion carried out to its end, the police told and acknowledging."""
    deletion = request(person, "deletion")
    until = NOW + timedelta(days=30)
    deletion.aggregate.record_work(action="personal data erased", actor="w")
    person.aggregate.erase(request_id=deletion.aggregate.id, retained_until=until, actor="w")
    deletion.aggregate.notify_partners(
        notifications=person.aggregate.recipients(), await_acknowledgement=True, actor="w"
    )
    deletion.aggregate.confirm_erasure(actor="w")
    deletion.aggregate.acknowledge(partner_id=police.id, actor="partner")  # fulfils it
    person.take()
    deletion.take()
    return deletion, until


def with_activity_and_a_share() -> tuple[Stream, Partner]:
    person = customer()
    person.aggregate.record_invoice(
        amount="9.99", currency="EUR", status="paid", issued_at=NOW, actor="billing"
    )
    person.aggregate.log_activity(
        kind="network", reason="security", detail="login from 10.0.0.1", occurred_at=NOW, actor="s"
    )
    police = Partner.register(name="Police", kind="law_enforcement", actor="po")
    person.aggregate.disclose(
        partner=police,
        basis="legal_obligation",
        categories=["identity_contact"],
        purpose="legal",
        reference="warrant 1",
        actor="po",
        now=NOW,
    )
    person.take()
    return person, police


def test_a_deletion_receipt_lists_each_field_erased_or_kept_until_its_purge() -> None:
    """Identity, account and activity are erased; the payment token and invoices are kept on
    the billing ground until the erasure's retained_until; the partner told is named with
    its acknowledgement."""
    person, police = with_activity_and_a_share()
    deletion, until = erase(person, police)
    receipt = build_receipt(
        deletion.events, person.events, partner_names={police.id: "Police"}
    ).deletion
    assert receipt is not None
    assert [(e.category, e.field, e.items) for e in receipt.erased] == [
        ("identity_contact", "name", None),
        ("identity_contact", "email", None),
        ("identity_contact", "phone", None),
        ("identity_contact", "postal_address", None),
        ("account_service", "plan", None),
        ("activity", "entries", 1),
    ]
    assert [(k.category, k.field, k.items, k.until, k.ground) for k in receipt.kept] == [
        ("billing", "invoices", 1, until, BILLING_GROUND),
        ("payment_method", "processor", None, until, BILLING_GROUND),
        ("payment_method", "token", None, until, BILLING_GROUND),
    ]
    assert all(k.purged_at is None for k in receipt.kept)
    (told,) = receipt.partners_told
    assert (told.partner_id, told.name, told.categories) == (
        police.id,
        "Police",
        ["identity_contact"],
    )
    assert told.acknowledged_at is not None


def test_once_the_retention_ends_the_kept_records_show_when_they_were_purged() -> None:
    """RetainedRecordsPurged after the erasure marks every kept entry purged, at that time."""
    person, police = with_activity_and_a_share()
    deletion, until = erase(person, police)
    person.aggregate.purge_retained(now=until, actor="w")
    person.take()
    receipt = build_receipt(deletion.events, person.events).deletion
    assert receipt is not None
    purged = person.events[-1].timestamp
    assert [k.purged_at for k in receipt.kept] == [purged, purged, purged]


def test_a_retention_schedule_turns_a_category_from_erased_to_kept() -> None:
    """Categories kept under a retention schedule are listed as kept with its ground and end."""
    person, police = with_activity_and_a_share()
    deletion, _ = erase(person, police)
    end = NOW + timedelta(days=365)
    schedules = {"activity": Retention("security monitoring (12 months)", end)}
    receipt = build_receipt(deletion.events, person.events, schedules=schedules).deletion
    assert receipt is not None
    assert ("activity", "entries") not in {(e.category, e.field) for e in receipt.erased}
    (activity,) = [k for k in receipt.kept if k.category == "activity"]
    assert (activity.ground, activity.until, activity.items) == (
        "security monitoring (12 months)",
        end,
        1,
    )


@pytest.mark.parametrize("end", ["open", "in_progress", "denied", "revoked"])
def test_a_request_not_fulfilled_has_no_receipt(end: str) -> None:
    """Open, in progress, denied or revoked: NotFulfilledError naming the status."""
    person = customer()
    stream = Stream(
        DataRightsRequest.submit(
            customer_id=person.aggregate.id,
            request_type="access",
            channel="email",
            jurisdiction="gdpr",
            rules=RULES,
            received_at=NOW,
            actor="intake:desk",
            statement="please",
        )
    )
    if end != "open":
        stream.aggregate.verify_identity(method="m", reference="r", actor="po")
    if end == "denied":
        stream.aggregate.deny(reason="no", actor="po")
    if end == "revoked":
        stream.aggregate.revoke(actor="intake")
    stream.take()
    with pytest.raises(NotFulfilledError, match=f"the request is {end}"):
        build_receipt(stream.events, person.events)


def test_an_opt_out_lists_the_channels_it_withdrew_and_only_those() -> None:
    """Withdrawals by hand, or by another request, are not this request's."""
    person = customer()
    for channel in ("email", "sms", "post"):
        person.aggregate.grant_consent(channel=channel, evidence=EVIDENCE, actor="m")
    person.aggregate.withdraw_consent(channel="post", evidence=EVIDENCE, actor="m")
    opt_out = request(person, "opt_out")
    opt_out.aggregate.record_work(action="marketing consent withdrawn", actor="w")
    for channel in person.aggregate.consented_channels():
        person.aggregate.withdraw_consent(
            channel=channel, evidence=EVIDENCE, actor="w", request_id=opt_out.aggregate.id
        )
    opt_out.aggregate.fulfil(summary="opted out", actor="w")
    person.take()
    opt_out.take()
    receipt = build_receipt(opt_out.events, person.events)
    assert receipt.opt_out is not None
    assert [w.channel for w in receipt.opt_out.withdrawn] == ["email", "sms"]
    assert receipt.access is None
    assert receipt.deletion is None


marked = st.text(alphabet="abcdefghijklmnopqrstuvwxyz<>&\"' ", min_size=6, max_size=30).map(
    lambda s: "zq" + s
)


@settings(max_examples=40, deadline=None)
@given(name=marked, email=marked, plan=marked)
def test_no_receipt_ever_holds_a_personal_value(name: str, email: str, plan: str) -> None:
    """Whatever the customer's values and corrections, a receipt holds none of them: only
    categories, field names, channels, partners and dates."""
    person = customer({"name": name, "email": f"{email}@x"})
    correction = request(person, "correction", corrections={"account_service": {"plan": plan}})
    correction.aggregate.record_work(action="corrections applied", actor="w")
    person.aggregate.correct(
        category="account_service",
        changes={"plan": plan},
        actor="w",
        request_id=correction.aggregate.id,
    )
    correction.aggregate.fulfil(summary="corrections applied", actor="w")
    person.take()
    correction.take()
    police = Partner.register(name="Police", kind="law_enforcement", actor="po")
    person.aggregate.disclose(
        partner=police,
        basis="legal_obligation",
        categories=["identity_contact"],
        purpose="legal",
        reference="w",
        actor="po",
        now=NOW,
    )
    person.take()
    deletion, _ = erase(person, police)
    for stream in (correction, deletion):
        text = repr(asdict(build_receipt(stream.events, person.events)))
        for value in (name, email, plan):
            assert value not in text
