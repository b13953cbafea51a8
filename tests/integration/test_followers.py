"""One failure policy for followers: poison events park, operators resume or skip, any process
sees the state (tested on the projection worker, on real PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from rightsledger.bootstrap import Container
from rightsledger.domain.operations import FollowerSkip
from rightsledger.projections.base import Positioned
from rightsledger.projections.customers import CustomerProfileView
from rightsledger.projections.worker import ProjectionWorker
from rightsledger.storage.followers import FollowerBoard, State, Status, assess, is_transient


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def status(board: FollowerBoard, name: str = "projections") -> Status | None:
    return next((s for s in board.statuses() if s.name == name), None)


class Running:
    """A projection worker following the log in a thread, as a follower process does."""

    def __init__(self, container: Container) -> None:
        self.stop = threading.Event()
        self.worker: ProjectionWorker = container.projection_worker()
        self.worker.retry_delay = 0.05  # park within a second instead of several
        self.thread = threading.Thread(
            target=self.worker.run_forever,
            args=(container.database.url, self.stop),
            kwargs={"poll": 0.05},
            daemon=True,
        )

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def poison(container: Container, monkeypatch: pytest.MonkeyPatch) -> set[UUID]:
    """Customers whose events the profile view fails to write, until removed from the set."""
    poisoned: set[UUID] = set()
    original = CustomerProfileView.write

    def failing(self: CustomerProfileView, curs: Any, events: Sequence[Positioned]) -> None:
        if any(event.originator_id in poisoned for event, _ in events):
            msg = "the profile view cannot hold this event"
            raise ValueError(msg)
        original(self, curs, events)

    monkeypatch.setattr(CustomerProfileView, "write", failing)
    return poisoned


def register(container: Container, name: str) -> tuple[UUID, int]:
    outcome = container.ledger.register_customer(
        policy_version="v1", identity={"name": name}, actor="intake:desk"
    )
    return outcome.id, outcome.position


def test_a_poison_event_parks_the_follower_at_its_position(
    container: Container, poison: set[UUID]
) -> None:
    """An event that always fails parks the projection worker at that event, with the error,
    where any process can read it; nothing after it is applied and nothing is skipped."""
    first, before = register(container, "Fine")
    bad, bad_position = register(container, "Poison")
    poison.add(bad)
    register(container, "After")
    with Running(container):
        parked = wait_until(
            lambda: (s := status(container.board)) is not None and s.state is State.PARKED and s,
            60,
            "the worker to park",
        )
        assert parked.error_position == bad_position
        assert "cannot hold this event" in (parked.error or "")
        assert container.views.customer_profile.position() == before
        assert container.views.customer_profile.get(first)[0] is not None
    health = assess(
        container.board.statuses(),
        head=bad_position + 1,
        oldest_waiting=lambda _: datetime.now(UTC),
        now=datetime.now(UTC),
        stale_after=timedelta(seconds=15),
        lag_limit=timedelta(seconds=30),
    )
    assert not health.ok
    assert any("parked at position" in p for p in health.problems)


def test_resume_after_the_fix_goes_on_and_skip_is_recorded(
    container: Container, poison: set[UUID]
) -> None:
    """`resume` retries the parked event (applied once fixed); `skip` records a FollowerSkip
    event and steps over it, never silently."""
    bad, _ = register(container, "Poison")
    poison.add(bad)
    _, head = register(container, "After")
    with Running(container):
        wait_until(
            lambda: (s := status(container.board)) is not None and s.state is State.PARKED,
            60,
            "the worker to park",
        )
        poison.clear()  # the fix
        assert container.board.request("projections", "resume")
        wait_until(
            lambda: container.views.customer_profile.position() >= head,
            30,
            "the worker to apply the fixed event and the rest",
        )
        assert container.views.customer_profile.get(bad)[0] is not None
        # a second poison, skipped by decision
        worse, worse_position = register(container, "Worse")
        poison.add(worse)
        wait_until(
            lambda: (s := status(container.board)) is not None and s.state is State.PARKED,
            60,
            "the worker to park again",
        )
        assert container.board.request("projections", "skip")
        _, last = register(container, "Later")
        wait_until(
            lambda: container.views.customer_profile.position() >= last,
            30,
            "the worker to go on after the skip",
        )
    assert container.views.customer_profile.get(worse)[0] is None
    skips = [
        event
        for _, event in container.ledger.log_page(0, 1000)
        if isinstance(event, FollowerSkip.Recorded)
    ]
    assert [(e.follower, e.position) for e in skips] == [("projections", worse_position)]


def test_terminated_connections_are_retried_not_parked(container: Container) -> None:
    """Every connection of the worker terminated: it reports retrying or recovers, never parks,
    and applies what came in meanwhile."""
    with Running(container):
        _, first = register(container, "One")
        wait_until(
            lambda: container.views.customer_profile.position() >= first, 30, "the first event"
        )
        for _ in range(3):
            with psycopg.connect(container.database.url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname ="
                    " current_database() AND pid <> pg_backend_pid() AND backend_type ="
                    " 'client backend' AND query NOT ILIKE '%%pg_stat_activity%%'"
                )
            _, last = register(container, "Two")
        wait_until(
            lambda: container.views.customer_profile.position() >= last,
            60,
            "the worker to apply what came after the terminations",
        )
        current = status(container.board)
        assert current is not None
        assert current.state is not State.PARKED


def test_connection_errors_are_transient_and_rule_errors_are_not() -> None:
    """The policy's split: lost connections retry without end, a bad event does not."""
    assert is_transient(psycopg.OperationalError("server closed the connection"))
    assert is_transient(TimeoutError())
    assert not is_transient(ValueError("bad event"))
    assert not is_transient(KeyError("missing"))


def test_a_follower_without_a_heartbeat_is_reported_dead() -> None:
    """`/ready`'s rule: a follower that stopped reporting (SIGKILL, SIGSTOP) is a problem,
    and so is one whose oldest waiting event is older than the lag limit."""
    now = datetime.now(UTC)

    def row(heartbeat: datetime, position: int) -> Status:
        return Status(
            name="projections",
            state=State.RUNNING,
            position=position,
            error=None,
            error_position=None,
            failures=0,
            heartbeat_at=heartbeat,
            since=heartbeat,
            pid=1,
            host="h",
            requested=None,
        )

    stale_after, lag_limit = timedelta(seconds=15), timedelta(seconds=30)
    dead = assess(
        [row(now - timedelta(seconds=20), 10)],
        head=10,
        oldest_waiting=lambda _: None,
        now=now,
        stale_after=stale_after,
        lag_limit=lag_limit,
    )
    assert not dead.ok
    behind = assess(
        [row(now, 5)],
        head=10,
        oldest_waiting=lambda _: now - timedelta(seconds=31),
        now=now,
        stale_after=stale_after,
        lag_limit=lag_limit,
    )
    assert not behind.ok
    fresh = assess(
        [row(now, 5)],
        head=10,
        oldest_waiting=lambda _: now - timedelta(seconds=2),
        now=now,
        stale_after=stale_after,
        lag_limit=lag_limit,
    )
    assert fresh.ok


def following(
    container: Container,
    name: str,
    channel: str,
    stop: threading.Event,
    step: Callable[[int], int],
    **options: Any,
) -> threading.Thread:
    """A follower ``name`` on ``channel`` running ``step`` in a thread (started), polling
    only every 5 s, so that its wake-ups are the notifications'."""
    from rightsledger.storage.followers import FollowerRunner, follow_log

    thread = threading.Thread(
        target=follow_log,
        kwargs={
            "runner": FollowerRunner(name, None, heartbeat=5.0),
            "database_url": container.database.url,
            "schema": container.settings.database_schema,
            "role": name,
            "channel": channel,
            "stop": stop,
            "step": step,
            "position": lambda: 0,
            "poll": 5.0,
            **options,
        },
        daemon=True,
    )
    thread.start()
    return thread


class CountingStop(threading.Event):
    """A stop event that counts the short waits a follower makes to gather commits."""

    def __init__(self, gather: float) -> None:
        super().__init__()
        self.gather = gather
        self.gathers = 0

    def wait(self, timeout: float | None = None) -> bool:
        if timeout == self.gather:
            self.gathers += 1
        return super().wait(timeout)


def test_a_backlog_of_notifications_wakes_a_follower_once(container: Container) -> None:
    """Many commits notified while a follower works wake it once: it waits to gather more
    commits once per wake-up, never once per notification (which left the relay and the
    request workers seconds behind the log under load)."""
    from psycopg import sql

    channel = "follower_backlog_test"
    gather = 0.05
    stop = CountingStop(gather)
    steps: list[float] = []
    first = threading.Event()

    def step(limit: int) -> int:
        steps.append(time.monotonic())
        first.set()
        return 0

    thread = following(container, "backlog-test", channel, stop, step, gather=gather)
    try:
        assert first.wait(10), "the follower never ran its first step"
        # listening starts before the first step: these arrive while it waits
        with psycopg.connect(container.database.url, autocommit=True) as conn, conn.transaction():
            for n in range(200):
                conn.execute(
                    sql.SQL("SELECT pg_notify({}, {})").format(
                        sql.Literal(channel), sql.Literal(str(n))
                    )
                )
        wait_until(lambda: len(steps) >= 2, 10, "a step after the notifications")
        assert stop.gathers <= 2, f"{stop.gathers} gathering waits for one backlog"
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


class RecordingStop(threading.Event):
    """A stop event that records the waits a follower makes to gather commits."""

    def __init__(self, *pauses: float) -> None:
        super().__init__()
        self.pauses = pauses
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout in self.pauses:
            self.waits.append(timeout)
        return super().wait(timeout)


def test_a_follower_under_load_gathers_longer(container: Container) -> None:
    """A follower woken after a quiet spell waits ``gather`` for more commits; woken again
    within ``busy_within`` (under load) it waits ``busy_gather``: larger batches."""
    from psycopg import sql

    channel = "follower_busy_test"
    gather, busy = 0.011, 0.033
    stop = RecordingStop(gather, busy)
    steps: list[float] = []

    def step(limit: int) -> int:
        steps.append(time.monotonic())
        return 0

    def notify() -> None:
        with psycopg.connect(container.database.url, autocommit=True) as conn:
            conn.execute(sql.SQL("SELECT pg_notify({}, 'x')").format(sql.Literal(channel)))

    thread = following(
        container,
        "busy-test",
        channel,
        stop,
        step,
        gather=gather,
        busy_gather=busy,
        busy_within=30.0,  # the second wake-up counts as under load, however slow
    )
    try:
        wait_until(lambda: len(steps) >= 1, 10, "the follower's first step")
        notify()
        wait_until(lambda: len(steps) >= 2, 10, "a step after the first notification")
        notify()
        wait_until(lambda: len(steps) >= 3, 10, "a step after the second notification")
        assert stop.waits[:2] == [gather, busy]
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
