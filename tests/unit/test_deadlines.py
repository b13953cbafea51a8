"""Legal deadlines: calendar months and days as jurisdictions define them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rightsledger.domain.deadlines import Period

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)


def test_one_month_after_the_31st_of_january_is_the_last_day_of_february() -> None:
    """Month arithmetic clamps to the end of a shorter month."""
    assert Period(months=1).after(datetime(2026, 1, 31, 12, tzinfo=UTC)) == datetime(
        2026, 2, 28, 12, tzinfo=UTC
    )
    assert Period(months=1).after(datetime(2028, 1, 31, tzinfo=UTC)).day == 29


def test_months_roll_over_the_year() -> None:
    """Two months after November is January of the next year."""
    assert Period(months=2).after(datetime(2026, 11, 24, tzinfo=UTC)) == datetime(
        2027, 1, 24, tzinfo=UTC
    )


def test_days_are_added_after_months() -> None:
    """A period of 45 days is exactly 45 days."""
    start = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    assert (Period(days=45).after(start) - start).days == 45


@given(moments, st.integers(0, 36), st.integers(0, 400))
def test_a_period_always_ends_after_it_starts(start: datetime, months: int, days: int) -> None:
    """Deadlines never fall before receipt, whatever the period."""
    assume(months or days)
    end = Period(months=months, days=days).after(start)
    assert end > start
    assert end.tzinfo is start.tzinfo


def test_empty_or_negative_periods_are_refused() -> None:
    """A jurisdiction cannot be configured with no time to respond."""
    with pytest.raises(ValueError, match="positive"):
        Period()
    with pytest.raises(ValueError, match="positive"):
        Period(days=-1)
