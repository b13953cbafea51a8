"""Legal response deadlines for data-rights requests, by jurisdiction."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Period:
    """A calendar period: whole months (clamped to the month's last day) plus days."""

    months: int = 0
    days: int = 0

    def __post_init__(self) -> None:
        if self.months < 0 or self.days < 0 or (self.months == 0 and self.days == 0):
            msg = "a period must be positive"
            raise ValueError(msg)

    def after(self, moment: datetime) -> datetime:
        """The moment this period after ``moment``."""
        month_index = moment.month - 1 + self.months
        year = moment.year + month_index // 12
        month = month_index % 12 + 1
        day = min(moment.day, calendar.monthrange(year, month)[1])
        return moment.replace(year=year, month=month, day=day) + timedelta(days=self.days)

    def describe(self) -> str:
        parts = []
        if self.months:
            parts.append(f"{self.months} month{'s' if self.months != 1 else ''}")
        if self.days:
            parts.append(f"{self.days} day{'s' if self.days != 1 else ''}")
        return " and ".join(parts)


@dataclass(frozen=True)
class DeadlineRule:
    """How long a jurisdiction allows for a response, and by how much it may be extended."""

    respond_within: Period
    extension: Period
