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


def load(committer: GroupCommit, *, gap: float, size: int, batches: int = 100) -> None:
    """Batches of ``size`` commands arriving ``gap`` seconds apart."""
    at = 100.0
    for _ in range(batches):
        for _ in range(size):
            at += gap
            committer.arrived(at)
        committer.wrote(size)


def test_commands_from_several_clients_close_together_gather(committer: GroupCommit) -> None:
    """Commands a millisecond apart (about 1,000 a second) from clients waiting side by side
    (batches of three) make batches wait for more."""
    load(committer, gap=0.001, size=3)
    assert committer.gathering


def test_a_single_fast_client_is_never_kept_waiting(committer: GroupCommit) -> None:
    """One client sending command after command, however fast: each batch holds its one
    command, and none waits for company that cannot come."""
    load(committer, gap=0.0005, size=1)
    assert not committer.gathering


def test_commands_arriving_far_apart_do_not_gather(committer: GroupCommit) -> None:
    """Commands 10 ms apart (a quiet service) are each written at once, even in pairs."""
    load(committer, gap=0.010, size=2)
    assert not committer.gathering


def test_after_a_pause_the_next_command_is_written_at_once(committer: GroupCommit) -> None:
    """A burst then a second of quiet: the next command does not wait."""
    load(committer, gap=0.001, size=3)
    assert committer.gathering
    committer.arrived(1000.0)
    assert not committer.gathering


def test_never_waits_when_gathering_is_off() -> None:
    """``gather=0`` (``RIGHTSLEDGER_GROUP_COMMIT_GATHER_MS=0``): no arrival rate makes it wait."""
    committer = GroupCommit(cast(Any, None), gather=0.0)
    try:
        load(committer, gap=0.000001, size=8)
        assert not committer.gathering
    finally:
        committer.stop()


@given(
    st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=0.01), st.integers(1, 8)),
        min_size=1,
        max_size=100,
    )
)
def test_it_gathers_only_after_close_arrivals_and_shared_batches(
    batches: list[tuple[float, int]],
) -> None:
    """Whatever the arrivals, the writer gathers only when some gap was under two windows
    and some batch held more than one command; never when every gap was longer, nor when
    every batch held one command."""
    committer = GroupCommit(cast(Any, None), gather=GATHER)
    try:
        at = 100.0
        for gap, size in batches:
            for _ in range(size):
                at += gap
                committer.arrived(at)
            committer.wrote(size)
        gaps = [gap for gap, _ in batches]
        sizes = [size for _, size in batches]
        if min(gaps) >= 2 * GATHER or max(sizes) == 1:
            assert not committer.gathering
        if committer.gathering:
            assert min(gaps) < 2 * GATHER
            assert max(sizes) > 1
    finally:
        committer.stop()


def test_a_batch_with_everyone_in_it_waits_no_longer(committer: GroupCommit) -> None:
    """After batches of eight (eight clients sending at once), a batch of eight is complete
    (nobody else can come) and one of five is not."""
    load(committer, gap=0.0002, size=8, batches=10)
    assert committer.complete(8)
    assert not committer.complete(5)


def test_the_largest_batch_is_slowly_forgotten(committer: GroupCommit) -> None:
    """When fewer clients remain, the size a batch must reach falls with them: after one
    batch of eight and many of three, three make a batch complete."""
    load(committer, gap=0.0002, size=8, batches=1)
    assert not committer.complete(3)
    load(committer, gap=0.0002, size=3, batches=200)
    assert committer.complete(3)
    assert not committer.complete(2)
