"""Retention schedules: the schedule value, its settings, and what a purge takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from rightsledger.bootstrap import retention_schedule
from rightsledger.config import Settings
from rightsledger.domain.customer import Customer
from rightsledger.domain.errors import InvalidCommandError
from rightsledger.domain.retention import (
    DEFAULT_SCHEDULE,
    CountedFrom,
    RetentionSchedule,
    RuleSetting,
    Span,
    activity_period,
    periods_due,
)
from rightsledger.domain.values import ActivityReason, Category

NOW = datetime(2026, 6, 29, 12, tzinfo=UTC)

moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
spans = st.builds(Span, months=st.integers(0, 30), days=st.integers(0, 400))


def customer() -> Customer:
    return Customer.register(
        policy_version="2026-01", identity={"name": "Ada"}, actor="intake:desk"
    )


def log(c: Customer, reason: str, at: datetime) -> UUID:
    return c.log_activity(
        kind="network", reason=reason, detail=f"{reason} entry", occurred_at=at, actor="noc"
    )


def test_span_counts_calendar_months_then_days_and_describes_itself() -> None:
    """A span adds whole months (clamped to the month's last day) then days; zero is allowed
    (kept until the period ends) but not a negative span."""
    assert Span(months=1).after(datetime(2026, 1, 31, tzinfo=UTC)) == datetime(
        2026, 2, 28, tzinfo=UTC
    )
    assert Span(months=12, days=1).after(datetime(2026, 3, 1, tzinfo=UTC)) == datetime(
        2027, 3, 2, tzinfo=UTC
    )
    assert Span().after(NOW) == NOW
    assert Span(days=90).describe() == "90 days"
    assert Span(months=12).describe() == "1 year"
    assert Span(months=84).describe() == "7 years"
    assert Span(months=3, days=1).describe() == "3 months and 1 day"
    assert Span().describe() == "0 days"
    with pytest.raises(ValueError, match="zero or more"):
        Span(days=-1)


def test_an_entry_belongs_to_the_utc_month_it_occurred_in() -> None:
    """Periods are calendar months in UTC, whatever zone the time was given in."""
    late = datetime(2026, 3, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    period = activity_period(late)
    assert period.label == "2026-04"
    assert period.start == datetime(2026, 4, 1, tzinfo=UTC)
    assert period.end == datetime(2026, 5, 1, tzinfo=UTC)
    assert activity_period(datetime(2026, 12, 31, 23, tzinfo=UTC)).end == datetime(
        2027, 1, 1, tzinfo=UTC
    )


def test_periods_fall_due_a_span_after_they_end() -> None:
    """With 90 days, February (ended 1 March) is due on 30 May, March on 30 June."""
    keep = Span(days=90)
    assert periods_due(keep, NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert periods_due(keep, datetime(2026, 6, 30, tzinfo=UTC)) == datetime(2026, 4, 1, tzinfo=UTC)
    assert periods_due(Span(), NOW) == datetime(2026, 6, 1, tzinfo=UTC)


@given(keep=spans, now=moments)
def test_the_due_boundary_is_the_latest_period_end_past_its_span(keep: Span, now: datetime) -> None:
    """The boundary is a month's start whose span has passed by now, and the next month's
    has not: no period is purged early, none waits longer than it must."""
    boundary = periods_due(keep, now)
    assert activity_period(boundary).start == boundary
    assert keep.after(boundary) <= now
    assert keep.after(activity_period(boundary).end) > now


@given(
    dates=st.lists(st.tuples(moments, st.sampled_from(list(ActivityReason))), max_size=25),
    now=moments,
)
def test_a_purge_takes_exactly_the_entries_past_their_schedule(
    dates: list[tuple[datetime, ActivityReason]], now: datetime
) -> None:
    """For any entry dates and any moment, purging a purpose takes exactly its entries whose
    month ended at least the span before now (never one still within its span), leaves
    every other entry, and a second purge at the same moment records nothing."""
    c = customer()
    logged = {log(c, reason.value, at): (at, reason) for at, reason in dates}
    for reason in ActivityReason:
        keep = DEFAULT_SCHEDULE.activity_rule(reason).keep
        assert keep is not None
        purged = c.purge_activity(
            reason=reason.value, schedule=DEFAULT_SCHEDULE, now=now, actor="worker"
        )
        expected = {
            entry
            for entry, (at, why) in logged.items()
            if why is reason and keep.after(activity_period(at).end) <= now
        }
        assert set(purged or []) == expected
        assert all(keep.after(logged[entry][0]) <= now for entry in expected)
        assert (
            c.purge_activity(reason=reason.value, schedule=DEFAULT_SCHEDULE, now=now, actor="w")
            is None
        )
    gone = {
        entry
        for event in c.collect_events()
        if isinstance(event, Customer.ActivityPurged)
        for entry in event.entries
    }
    assert {e.entry_id for e in c.activity} == set(logged) - gone


def test_the_purge_event_states_the_schedule_applied_and_the_periods() -> None:
    """``ActivityPurged`` names the purpose, the boundary, the entries, their months and the
    rule applied (span, reasoning); activity of other purposes stays."""
    c = customer()
    old = log(c, "troubleshooting", datetime(2026, 1, 10, tzinfo=UTC))
    older = log(c, "troubleshooting", datetime(2025, 12, 31, tzinfo=UTC))
    kept = log(c, "troubleshooting", datetime(2026, 3, 5, tzinfo=UTC))
    security = log(c, "security", datetime(2026, 1, 10, tzinfo=UTC))
    assert c.purge_activity(
        reason="troubleshooting", schedule=DEFAULT_SCHEDULE, now=NOW, actor="worker"
    ) == [old, older]
    event = c.collect_events()[-1]
    assert isinstance(event, Customer.ActivityPurged)
    assert event.purpose == "troubleshooting"
    assert event.through == datetime(2026, 3, 1, tzinfo=UTC)
    assert event.periods == ["2025-12", "2026-01"]
    assert event.schedule["period"] == {"months": 0, "days": 90}
    assert event.schedule["basis"] == DEFAULT_SCHEDULE.activity_rule("troubleshooting").basis
    assert [e.entry_id for e in c.activity] == [kept, security]
    assert c.activity_purged_through == {"troubleshooting": datetime(2026, 3, 1, tzinfo=UTC)}


def test_activity_of_a_purged_period_is_refused_and_newer_is_taken() -> None:
    """Once a month is purged for a purpose, an entry of that month and purpose is refused
    (its key is destroyed or about to be); a later month, or another purpose, is taken."""
    c = customer()
    log(c, "troubleshooting", datetime(2026, 2, 1, tzinfo=UTC))
    c.purge_activity(reason="troubleshooting", schedule=DEFAULT_SCHEDULE, now=NOW, actor="w")
    with pytest.raises(InvalidCommandError, match="past its retention") as refused:
        log(c, "troubleshooting", datetime(2026, 2, 27, tzinfo=UTC))
    assert refused.value.field == "occurred_at"
    log(c, "troubleshooting", datetime(2026, 3, 1, tzinfo=UTC))
    log(c, "security", datetime(2026, 2, 27, tzinfo=UTC))


def test_an_erased_customer_has_nothing_to_purge() -> None:
    """After erasure the activity is gone with its keys: a purge records nothing."""
    c = customer()
    log(c, "troubleshooting", datetime(2026, 1, 1, tzinfo=UTC))
    c.erase(request_id=UUID(int=1), retained_until=NOW, actor="w")
    purged = c.purge_activity(
        reason="troubleshooting", schedule=DEFAULT_SCHEDULE, now=NOW, actor="w"
    )
    assert purged is None


def test_the_schedule_describes_every_category() -> None:
    """Each category is described (purpose, period, counted from, basis): the access export
    and the erasure receipt state it; activity by purpose, billing after erasure."""
    described = DEFAULT_SCHEDULE.describe()
    assert {d["category"] for d in described} == {c.value for c in Category}
    activity = {d["purpose"]: d for d in described if d["category"] == "activity"}
    assert activity["troubleshooting"]["period"] == {"months": 0, "days": 90}
    assert activity["security"]["period"] == {"months": 12, "days": 0}
    assert activity["troubleshooting"]["counted_from"] == CountedFrom.PERIOD_END.value
    assert all(d["basis"] for d in described)
    (billing,) = DEFAULT_SCHEDULE.describe_category("billing")
    assert billing == {
        "category": "billing",
        "purpose": "legal",
        "period": {"months": 0, "days": 2557},
        "counted_from": "erasure",
        "kept": "2557 days after erasure",
        "basis": billing["basis"],
    }
    (identity,) = DEFAULT_SCHEDULE.describe_category("identity_contact")
    assert identity["period"] is None
    assert "deletion request" in identity["kept"]
    assert "kept for 2557 days after erasure" in DEFAULT_SCHEDULE.statement()


def test_settings_set_the_table_over_the_defaults() -> None:
    """``RIGHTSLEDGER_RETENTION`` (JSON) sets entries; those left out keep their default, and
    an entry without a basis keeps the default's reasoning."""
    table: dict[str, Any] = {  # as read from JSON: validated by the settings
        "activity": {
            "troubleshooting": {"keep": {"days": 30}},
            "legal": {"keep": {"months": 6}, "basis": "national law: six months"},
        }
    }
    settings = Settings(retention=table)
    schedule = retention_schedule(settings)
    assert schedule.activity_rule("troubleshooting").keep == Span(days=30)
    assert schedule.activity_rule("troubleshooting").basis == (
        DEFAULT_SCHEDULE.activity_rule("troubleshooting").basis
    )
    assert schedule.activity_rule("legal").basis == "national law: six months"
    assert schedule.activity_rule("security") == DEFAULT_SCHEDULE.activity_rule("security")
    assert schedule.billing == DEFAULT_SCHEDULE.billing
    assert retention_schedule(Settings()) == DEFAULT_SCHEDULE


def test_the_environment_carries_the_table_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table is read from the environment as JSON, like the jurisdictions."""
    monkeypatch.setenv(
        "RIGHTSLEDGER_RETENTION", '{"billing": {"legal": {"keep": {"months": 120}}}}'
    )
    schedule = retention_schedule(Settings())
    assert schedule.billing.keep == Span(months=120)
    assert schedule.retained_until(NOW) == datetime(2036, 6, 29, 12, tzinfo=UTC)


def test_billing_retention_days_is_the_billing_entry() -> None:
    """The former ``billing_retention_days`` keeps working: it sets billing's entry; both
    set and disagreeing is refused at start."""
    schedule = retention_schedule(Settings(billing_retention_days=30))
    assert schedule.billing.keep == Span(days=30)
    assert schedule.billing.basis == DEFAULT_SCHEDULE.billing.basis
    same: dict[str, Any] = {"billing": {"legal": {"keep": {"days": 30}}}}
    assert retention_schedule(Settings(billing_retention_days=30, retention=same)) == schedule
    with pytest.raises(ValidationError, match="disagree"):
        Settings(billing_retention_days=31, retention=same)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"identity_contact": {"account": {"keep": {"days": 1}}}}, "no schedule is set"),
        ({"activity": {"marketing": {"keep": {"days": 1}}}}, "not 'marketing'"),
        ({"activity": {"security": {"keep": {"days": -1}}}}, "greater than or equal"),
    ],
)
def test_settings_refuse_entries_the_schedule_has_no_place_for(
    table: dict[str, Any], message: str
) -> None:
    """Categories without a span, purposes a category is not kept for and negative spans are
    refused when the settings are read."""
    with pytest.raises(ValidationError, match=message):
        Settings(retention=table)


def test_a_schedule_is_built_from_rule_settings() -> None:
    """``RetentionSchedule.build`` takes spans and reasons per purpose; the rest default."""
    schedule = RetentionSchedule.build(
        {ActivityReason.SECURITY: RuleSetting(Span(months=24), "two years")}
    )
    assert schedule.activity_rule("security").keep == Span(months=24)
    assert schedule.activity_due("security", NOW) == datetime(2024, 6, 1, tzinfo=UTC)
    assert schedule.activity_rule("legal") == DEFAULT_SCHEDULE.activity_rule("legal")


@given(moments, st.sampled_from(list(ActivityReason)))
def test_activity_dated_ahead_of_the_clock_is_refused_when_logged(
    at: datetime, reason: ActivityReason
) -> None:
    """Logged at ``NOW``: an entry dated after the ledger's clock (more than five minutes
    ahead; it would outlive its retention by as much) is refused naming ``occurred_at`` and
    nothing is recorded; any other is taken."""
    c = customer()
    arguments: dict[str, Any] = {
        "kind": "network",
        "reason": reason.value,
        "detail": "entry",
        "occurred_at": at,
        "actor": "noc",
        "now": NOW,
    }
    if at > NOW + timedelta(minutes=5):
        with pytest.raises(InvalidCommandError) as refused:
            c.log_activity(**arguments)
        assert refused.value.field == "occurred_at"
        assert c.activity == []
    else:
        c.log_activity(**arguments)
        assert [e.occurred_at for e in c.activity] == [at]
