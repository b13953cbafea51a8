"""Retention schedules: how long each category of personal data is kept, for each purpose.

The policy logs network and account activity "for security, legal compliance, and
troubleshooting purposes", and keeps billing records after a deletion "for regulatory
compliance". A :class:`RetentionSchedule` bounds both. It is one value, built once from
settings by the composition root; the customer decides what is past its schedule with it
(``Customer.purge_activity``, ``Customer.erase``), and anyone who must state the schedule
(the access export, the erasure receipt) asks it to :meth:`~RetentionSchedule.describe`
itself.

Activity entries are kept per *period*: the calendar month (UTC) in which they occurred.
An entry is kept for its purpose's span counted from the end of that month, so a whole
month's entries fall due at the same moment and are purged together; an entry is kept at
least its span and at most a month longer. The store seals each month's entries with a key
of their own, so purging one month destroys that month's key and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, TypedDict

from rightsledger.domain.values import ActivityReason, Category, Purpose


@dataclass(frozen=True, order=True)
class Span:
    """How long something is kept: whole calendar months plus days (zero allowed)."""

    months: int = 0
    days: int = 0

    def __post_init__(self) -> None:
        if self.months < 0 or self.days < 0:
            msg = "a retention span is zero or more months and days"
            raise ValueError(msg)

    def after(self, moment: datetime) -> datetime:
        """The moment this span after ``moment`` (a month's last day when clamped)."""
        index = moment.month - 1 + self.months
        year, month = moment.year + index // 12, index % 12 + 1
        day = min(moment.day, _days_in(year, month))
        return moment.replace(year=year, month=month, day=day) + timedelta(days=self.days)

    def describe(self) -> str:
        parts = []
        if self.months:
            years, months = divmod(self.months, 12)
            if years and not months:
                parts.append(f"{years} year{'s' if years != 1 else ''}")
            else:
                parts.append(f"{self.months} month{'s' if self.months != 1 else ''}")
        if self.days or not parts:
            parts.append(f"{self.days} day{'s' if self.days != 1 else ''}")
        return " and ".join(parts)

    def as_dict(self) -> dict[str, int]:
        return {"months": self.months, "days": self.days}


def _days_in(year: int, month: int) -> int:
    following = datetime(year + month // 12, month % 12 + 1, 1)
    return (following - timedelta(days=1)).day


class CountedFrom(StrEnum):
    """The moment a retention span is counted from."""

    PERIOD_END = "period_end"
    """The end of the calendar month (UTC) in which the entry occurred."""
    ERASURE = "erasure"
    """The customer's erasure on request."""
    HELD = "held"
    """No span: kept while the customer is a customer, erased on a deletion request."""


@dataclass(frozen=True)
class ActivityPeriod:
    """The calendar month (UTC) an activity entry occurred in: its key and its due date."""

    label: str
    """``YYYY-MM``."""
    start: datetime
    end: datetime
    """The first moment of the next month."""


def activity_period(occurred_at: datetime) -> ActivityPeriod:
    """The period an entry that occurred at ``occurred_at`` belongs to."""
    moment = occurred_at.astimezone(UTC)
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    end = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)
    return ActivityPeriod(f"{moment.year:04d}-{moment.month:02d}", start, end)


def periods_due(keep: Span, now: datetime) -> datetime:
    """The latest period boundary whose span has passed by ``now``: every entry of a period
    ending on or before it is past its schedule, every other entry is not."""
    boundary = activity_period(now).start  # no later boundary can be due (spans are >= 0)
    while keep.after(boundary) > now:
        boundary = activity_period(boundary - timedelta(days=1)).start
    return boundary


class RuleStatement(TypedDict):
    """A retention rule as the access export, the erasure receipt and ``ActivityPurged``
    state it."""

    category: str
    purpose: str
    period: dict[str, int] | None
    """``months`` and ``days``; None when the category is kept while held."""
    counted_from: str
    kept: str
    """The period in words."""
    basis: str


@dataclass(frozen=True)
class RetentionRule:
    """How long one category is kept for one purpose, from when, and why."""

    category: Category
    purpose: str
    """A policy purpose; for activity, the purpose it was logged for (``ActivityReason``)."""
    keep: Span | None
    """None: no span (``CountedFrom.HELD``)."""
    counted_from: CountedFrom
    basis: str
    """Why this long: the legal ground or the need the span answers."""

    def describe(self) -> RuleStatement:
        """The rule as the access export and the erasure receipt state it."""
        if self.keep is None:
            period = "while the customer is a customer; erased on a deletion request"
        elif self.counted_from is CountedFrom.PERIOD_END:
            period = f"{self.keep.describe()} after the end of the month the entry occurred in"
        else:
            period = f"{self.keep.describe()} after erasure"
        return RuleStatement(
            category=self.category.value,
            purpose=self.purpose,
            period=self.keep.as_dict() if self.keep is not None else None,
            counted_from=self.counted_from.value,
            kept=period,
            basis=self.basis,
        )


@dataclass(frozen=True)
class RuleSetting:
    """A rule's span and reasoning, as settings give them."""

    keep: Span
    basis: str


DEFAULT_ACTIVITY: Final[Mapping[ActivityReason, RuleSetting]] = {
    ActivityReason.TROUBLESHOOTING: RuleSetting(
        Span(days=90),
        "Troubleshooting needs the recent history of a line or an account: a fault reported "
        "now, and the faults that came back, within about one billing quarter; older logs no "
        "longer help to repair anything.",
    ),
    ActivityReason.SECURITY: RuleSetting(
        Span(months=12),
        "Fraud and intrusions are often found late and follow yearly patterns (contract "
        "renewals, seasonal scams); a year of history lets an investigation see them.",
    ),
    ActivityReason.LEGAL: RuleSetting(
        Span(months=12),
        "Kept for legal compliance (e.g. orders from an authority). National laws on traffic "
        "and location data of providers set between 6 and 24 months; 12 is a common figure. "
        "Set this to what the law of your jurisdiction requires, and no longer.",
    ),
}
"""Default spans of activity by the purpose it was logged for, with their reasoning."""

RETENTION_PURPOSES: Final[Mapping[str, tuple[str, ...]]] = {
    Category.ACTIVITY.value: tuple(reason.value for reason in ActivityReason),
    Category.BILLING.value: (Purpose.LEGAL.value,),
}
"""The (category, purpose) entries a schedule sets; other categories have no span."""

DEFAULT_BILLING: Final = RuleSetting(
    Span(days=2557),
    "Tax and accounting law requires invoices to be kept (7 years in many jurisdictions), "
    "also after the customer asked for deletion; the payment processor's token is kept with "
    "the billing records it settles.",
)
"""Default span of billing records after erasure (7 years, in days), with its reasoning."""

_HELD_BASIS: Final = {
    Category.IDENTITY: "Needed to provide the service, bill for it and support the customer; "
    "kept while the account exists, erased when the customer asks.",
    Category.ACCOUNT: "Needed to provide the service; kept while the account exists, erased "
    "when the customer asks.",
}


@dataclass(frozen=True)
class RetentionSchedule:
    """Every category's retention rules; activity by purpose, billing after erasure."""

    activity: tuple[RetentionRule, ...]
    billing: RetentionRule

    @classmethod
    def build(
        cls,
        activity: Mapping[ActivityReason, RuleSetting] | None = None,
        billing: RuleSetting | None = None,
    ) -> RetentionSchedule:
        """A schedule from settings; purposes not given keep their default."""
        given = {ActivityReason(k): v for k, v in (activity or {}).items()}
        rules = tuple(
            RetentionRule(
                Category.ACTIVITY,
                reason.value,
                setting.keep,
                CountedFrom.PERIOD_END,
                setting.basis,
            )
            for reason in ActivityReason
            for setting in (given.get(reason, DEFAULT_ACTIVITY[reason]),)
        )
        bill = billing or DEFAULT_BILLING
        return cls(
            activity=rules,
            billing=RetentionRule(
                Category.BILLING, Purpose.LEGAL.value, bill.keep, CountedFrom.ERASURE, bill.basis
            ),
        )

    def activity_rule(self, reason: ActivityReason | str) -> RetentionRule:
        wanted = ActivityReason(reason).value
        return next(rule for rule in self.activity if rule.purpose == wanted)

    def activity_due(self, reason: ActivityReason | str, now: datetime) -> datetime:
        """Entries of ``reason`` in periods ending on or before this are past their schedule."""
        keep = self.activity_rule(reason).keep
        assert keep is not None
        return periods_due(keep, now)

    def retained_until(self, erased_at: datetime) -> datetime:
        """Until when billing records (and the payment token) are kept after erasure."""
        assert self.billing.keep is not None
        return self.billing.keep.after(erased_at)

    def rules(self) -> list[RetentionRule]:
        """Every category's rules, in the categories' order."""
        payment = RetentionRule(
            Category.PAYMENT,
            Purpose.BILLING.value,
            self.billing.keep,
            CountedFrom.ERASURE,
            "Kept with the billing records it settles, and purged with them.",
        )
        held = [
            RetentionRule(category, "all", None, CountedFrom.HELD, basis)
            for category, basis in _HELD_BASIS.items()
        ]
        return [*held, payment, self.billing, *self.activity]

    def describe(self) -> list[RuleStatement]:
        """Each category's schedule (category, purpose, period, counted from, basis), for the
        access export and the erasure receipt to state."""
        return [rule.describe() for rule in self.rules()]

    def describe_category(self, category: Category | str) -> list[RuleStatement]:
        """The rules of one category (e.g. what a receipt says was kept, and until when)."""
        wanted = Category(category)
        return [rule.describe() for rule in self.rules() if rule.category is wanted]

    def statement(self) -> str:
        """The schedule in a sentence or two per category, for a reader."""
        assert self.billing.keep is not None
        activity = ", ".join(
            f"for {rule.purpose} {rule.keep.describe()}"
            for rule in self.activity
            if rule.keep is not None
        )
        return (
            "Billing records and the payment processor's token are kept for "
            f"{self.billing.keep.describe()} after erasure for regulatory compliance. "
            "Network and account activity is kept, counted from the end of the month it "
            f"occurred in, {activity}; then it is purged. Everything else is kept while you "
            "are a customer and erased on a deletion request."
        )


DEFAULT_SCHEDULE: Final = RetentionSchedule.build()
