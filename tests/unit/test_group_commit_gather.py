"""When the group commit's writer waits for more commands: only under load."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsledger.storage.group_commit import GroupCommit

GATHER = 0.002


@pytest.fixture
def committer() -> Iterator[GroupCommit]:
    # the policy needs no store: the writer thread only waits on its queue here
    made = GroupCommit(cast(Any, None), gather=GATHER)
    try:
        yield made
    finally:
        made.stop()


def test_a_first_command_is_written_at_once(committer: GroupCommit) -> None:
    """With no command before it, a command does not wait for company."""
    committer.arrived(100.0)
    assert not committer.gathering


def test_commands_arriving_close_together_gather(committer: GroupCommit) -> None:
    """Commands a millisecond apart (about 1,000 a second) make batches wait for more."""
    for n in range(100):
        committer.arrived(100.0 + n * 0.001)
    assert committer.gathering


def test_commands_arriving_far_apart_do_not_gather(committer: GroupCommit) -> None:
    """Commands 10 ms apart (a quiet service) are each written at once."""
    for n in range(100):
        committer.arrived(100.0 + n * 0.010)
    assert not committer.gathering


def test_after_a_pause_the_next_command_is_written_at_once(committer: GroupCommit) -> None:
    """A burst then a second of quiet: the next command does not wait."""
    for n in range(100):
        committer.arrived(100.0 + n * 0.001)
    assert committer.gathering
    committer.arrived(101.6)
    assert not committer.gathering


def test_never_waits_when_gathering_is_off() -> None:
    """``gather=0`` (``RIGHTSLEDGER_GROUP_COMMIT_GATHER_MS=0``): no arrival rate makes it wait."""
    committer = GroupCommit(cast(Any, None), gather=0.0)
    try:
        for n in range(100):
            committer.arrived(100.0 + n * 0.000001)
        assert not committer.gathering
    finally:
        committer.stop()


@given(st.lists(st.floats(min_value=0.0, max_value=0.01), min_size=1, max_size=200))
def test_the_average_gap_stays_within_the_gaps_seen(gaps: list[float]) -> None:
    """Whatever the arrivals, the policy gathers only when some recent gap was below the
    window, and never when every gap was above it."""
    committer = GroupCommit(cast(Any, None), gather=GATHER)
    try:
        at = 100.0
        for gap in gaps:
            at += gap
            committer.arrived(at)
        if min(gaps) >= GATHER:
            assert not committer.gathering
        if committer.gathering:
            assert min(gaps) < GATHER
    finally:
        committer.stop()
