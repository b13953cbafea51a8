"""One follower mechanism, one failure policy, one place to see every follower's state.

The projection worker, the request worker and the relay each follow the log from a
tracked position. They all run their batches through ``FollowerRunner``:

- **Transient failures** (connection lost, pool exhausted, lock timeout, broker away)
  are retried with back-off (0.5 s doubling to 30 s) without end; the follower's state
  is ``retrying`` and the failure is logged once per episode (and once when it ends).
- **A deterministic failure** (anything else) is retried one event at a time, so the
  failing event is known; when the same position has failed ``park_after`` times in a
  row the follower **parks** there: state ``parked``, with the position and the error,
  logged as an error, and it waits. ``rightsledger followers resume NAME`` makes it try
  again; ``--skip`` makes it record a deliberate skip (an ``OperationsLog.EventSkipped``
  event naming the follower, the position and who decided) and go on after it. Never a
  silent stall, never a silent skip.
- The active follower of each kind (the one holding its advisory lock; a second one
  stands by silently) writes its state, position and the time of its last heartbeat to
  ``follower_status`` (every ``heartbeat`` seconds at most), so any process can report
  it: ``rightsledger followers status`` and ``/ready``.
"""

from __future__ import annotations

import logging
import operator
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from rightsledger.domain.ledger import ConcurrentChangeError

log = logging.getLogger(__name__)

TABLE = "follower_status"


class State(StrEnum):
    RUNNING = "running"
    RETRYING = "retrying"
    PARKED = "parked"
    STOPPED = "stopped"


def is_transient(error: BaseException) -> bool:
    """Failures that go away by themselves: the store or the broker is away for a while."""
    if getattr(error, "transient", False):
        return True
    if isinstance(
        error,
        ConcurrentChangeError  # another writer got there first: handled again, fresh
        | psycopg.OperationalError
        | psycopg.InterfaceError
        | OperationalError
        | InterfaceError
        | PoolTimeout
        | ConnectionError
        | TimeoutError,
    ):
        return True
    module = type(error).__module__
    if module.startswith("kafka"):
        return bool(getattr(error, "retriable", True))
    cause = error.__cause__ or error.__context__
    return cause is not None and cause is not error and is_transient(cause)


@dataclass(frozen=True)
class Status:
    """One follower's row of ``follower_status``."""

    name: str
    state: State
    position: int
    error: str | None
    error_position: int | None
    failures: int
    heartbeat_at: datetime
    since: datetime
    pid: int | None
    host: str | None
    requested: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "position": self.position,
            "error": self.error,
            "error_position": self.error_position,
            "failures": self.failures,
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "since": self.since.isoformat(),
            "pid": self.pid,
            "host": self.host,
        }


class FollowerBoard:
    """The ``follower_status`` table: written by followers, read by anyone."""

    def __init__(self, pool: ConnectionPool, schema: str) -> None:
        self._pool = pool
        self._table = sql.Identifier(schema, TABLE)

    def create_table(self) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " name text PRIMARY KEY,"
                    " state text NOT NULL,"
                    " position bigint NOT NULL,"
                    " error text,"
                    " error_position bigint,"
                    " failures integer NOT NULL DEFAULT 0,"
                    " heartbeat_at timestamptz NOT NULL,"
                    " since timestamptz NOT NULL,"
                    " pid integer,"
                    " host text,"
                    " requested text)"
                ).format(self._table)
            )

    def report(
        self,
        name: str,
        state: State,
        position: int,
        *,
        error: str | None = None,
        error_position: int | None = None,
        failures: int = 0,
    ) -> None:
        now = datetime.now(UTC)
        # a report is best effort: never held up long by a store that is away
        with self._pool.connection(timeout=2.0) as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {t} (name, state, position, error, error_position, failures,"
                    " heartbeat_at, since, pid, host) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
                    " %s, %s) ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state,"
                    " position = EXCLUDED.position, error = EXCLUDED.error,"
                    " error_position = EXCLUDED.error_position, failures = EXCLUDED.failures,"
                    " heartbeat_at = EXCLUDED.heartbeat_at, pid = EXCLUDED.pid,"
                    " host = EXCLUDED.host,"
                    " since = CASE WHEN {t}.state = EXCLUDED.state THEN {t}.since"
                    " ELSE EXCLUDED.since END"
                ).format(t=self._table),
                (
                    name,
                    state.value,
                    position,
                    error,
                    error_position,
                    failures,
                    now,
                    now,
                    os.getpid(),
                    socket.gethostname(),
                ),
            )

    def statuses(self) -> list[Status]:
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(sql.SQL("SELECT * FROM {} ORDER BY name").format(self._table))
            return [
                Status(
                    name=row["name"],
                    state=State(row["state"]),
                    position=int(row["position"]),
                    error=row["error"],
                    error_position=row["error_position"],
                    failures=int(row["failures"]),
                    heartbeat_at=row["heartbeat_at"],
                    since=row["since"],
                    pid=row["pid"],
                    host=row["host"],
                    requested=row["requested"],
                )
                for row in rows.fetchall()
            ]

    def request(self, name: str, action: str) -> bool:
        """Ask a parked follower to ``resume`` or ``skip``; False when it is not parked."""
        with self._pool.connection() as conn:
            cur = conn.execute(
                sql.SQL("UPDATE {} SET requested = %s WHERE name = %s AND state = %s").format(
                    self._table
                ),
                (action, name, State.PARKED.value),
            )
            return cur.rowcount > 0

    def take_request(self, name: str) -> str | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                sql.SQL(
                    "UPDATE {t} SET requested = NULL WHERE name = %s AND requested IS NOT NULL"
                    " RETURNING (SELECT requested FROM {t} WHERE name = %s)"
                ).format(t=self._table),
                (name, name),
            ).fetchone()
        return None if row is None else str(row[0])


@dataclass(frozen=True)
class Health:
    """Whether the followers are keeping up, as ``/ready`` and the CLI report it."""

    ok: bool
    problems: list[str]
    statuses: list[Status]


def assess(
    statuses: list[Status],
    *,
    head: int,
    oldest_waiting: Callable[[int], datetime | None],
    now: datetime,
    stale_after: timedelta,
    lag_limit: timedelta,
    expected: tuple[str, ...] = (),
) -> Health:
    """Dead (no heartbeat), parked, or behind by events older than ``lag_limit``: not ok.

    ``oldest_waiting(position)`` is the time of the first event after ``position``."""
    problems: list[str] = []
    seen = {status.name for status in statuses}
    problems += [f"{name} has never reported" for name in expected if name not in seen]
    for status in statuses:
        if status.state is State.STOPPED:
            problems.append(f"{status.name} is stopped")
            continue
        if status.state is State.PARKED:
            problems.append(
                f"{status.name} is parked at position {status.error_position}: {status.error}"
            )
            continue
        if now - status.heartbeat_at > stale_after:
            age = int((now - status.heartbeat_at).total_seconds())
            problems.append(f"{status.name} has not reported for {age} s (dead or frozen)")
            continue
        if status.position >= head:
            continue
        waiting_since = oldest_waiting(status.position)
        if waiting_since is not None and now - waiting_since > lag_limit:
            behind = head - status.position
            age = int((now - waiting_since).total_seconds())
            problems.append(
                f"{status.name} is {behind} events behind; the oldest has waited {age} s"
            )
    return Health(not problems, problems, statuses)


class FollowerRunner:
    """Runs one follower's batches under the policy in the module's docstring."""

    def __init__(
        self,
        name: str,
        board: FollowerBoard | None,
        *,
        park_after: int = 5,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        heartbeat: float = 2.0,
    ) -> None:
        self.name = name
        self.board = board
        self.park_after = park_after
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.heartbeat = heartbeat
        self.state = State.RUNNING
        self._reported = 0.0
        self._episode: str | None = None

    def _report(self, state: State, position: int, **details: Any) -> None:
        now = time.monotonic()
        if self.board is None or (
            state is self.state and not details and now - self._reported < self.heartbeat
        ):
            self.state = state
            return
        try:
            self.board.report(self.name, state, position, **details)
            self._reported = now
        except Exception as error:  # the status is best effort
            log.debug("could not report %s's status: %s", self.name, error)
        self.state = state

    def note_transient(self, error: BaseException, position: int) -> None:
        """A transient failure: state ``retrying``, logged once per episode."""
        if self._episode is None:
            self._episode = f"{type(error).__name__}: {error}"
            log.warning(
                "%s: transient failure, retrying with back-off: %s", self.name, self._episode
            )
        self._report(State.RETRYING, position, error=str(error)[:500])

    def run(
        self,
        *,
        step: Callable[[int], int],
        position: Callable[[], int],
        wait: Callable[[float], None],
        stop: threading.Event,
        skip: Callable[[int, str], None] | None = None,
        locate: Callable[[int], int | None] | None = None,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        """Follow until ``stop``: ``step(limit)`` handles up to ``limit`` events (0: a whole
        batch) and returns the position reached; ``wait(seconds)`` waits for new events;
        ``skip(position, actor)`` steps over one event deliberately; ``locate(position)`` is
        the position of the event after ``position`` (where a failure happened); the loop
        returns early when ``alive()`` turns false (e.g. its listening connection died)."""
        delay = self.first_delay
        failing_at: int | None = None
        failures = 0
        last_error = ""
        while not stop.is_set() and alive():
            try:
                current = position()
                if self.state is State.PARKED:
                    action = self.board.take_request(self.name) if self.board else None
                    if action is None:
                        self._report(
                            State.PARKED,
                            current,
                            error=last_error,
                            error_position=failing_at,
                            failures=failures,
                        )
                        stop.wait(1.0)
                        continue
                    if action == "skip" and skip is not None and failing_at is not None:
                        skip(failing_at, "operator")
                        log.warning("%s skipped position %s on request", self.name, failing_at)
                    log.info("%s resuming from position %s", self.name, position())
                    failures = 0
                    failing_at = None
                    self.state = State.RUNNING
                    self._reported = 0.0
                # After a failure, go one event at a time so the failing one is known.
                reached = step(1 if failing_at is not None else 0)
                if failing_at is not None and reached >= failing_at:
                    failing_at, failures = None, 0
                if self._episode is not None:
                    log.info("%s recovered (%s)", self.name, self._episode)
                    self._episode = None
                delay = self.first_delay
                self._report(State.RUNNING, reached)
                if failing_at is None:
                    wait(self.heartbeat)
            except Exception as error:
                current = _safe(position)
                if is_transient(error):
                    self.note_transient(error, current)
                    stop.wait(delay)
                    delay = min(delay * 2, self.max_delay)
                    continue
                at = (_safe_locate(locate, current) if locate else None) or current + 1
                failures = failures + 1 if failing_at == at else 1
                failing_at = at
                last_error = f"{type(error).__name__}: {error}"[:1000]
                if failures >= self.park_after:
                    log.error(
                        "%s parked at position %s after %s failures: %s",
                        self.name,
                        at,
                        failures,
                        last_error,
                        exc_info=error,
                    )
                    self._report(
                        State.PARKED,
                        current,
                        error=last_error,
                        error_position=at,
                        failures=failures,
                    )
                    continue
                log.warning(
                    "%s failed at position %s (%s of %s before parking): %s",
                    self.name,
                    at,
                    failures,
                    self.park_after,
                    last_error,
                )
                self._report(
                    State.RETRYING, current, error=last_error, error_position=at, failures=failures
                )
                stop.wait(delay)
                delay = min(delay * 2, self.max_delay)
        if stop.is_set() and self.state is not State.PARKED:  # parked stays reported parked
            self._report(State.STOPPED, _safe(position), error=None)


def _safe_locate(locate: Callable[[int], int | None], after: int) -> int | None:
    try:
        return locate(after)
    except Exception:  # the store may be away
        return None


def _safe(position: Callable[[], int]) -> int:
    try:
        return position()
    except Exception:  # the store may be away
        return -1


@contextmanager
def exclusive(
    database_url: str, schema: str, stop: threading.Event, role: str
) -> Iterator[psycopg.Connection[Any] | None]:
    """Hold the schema's advisory lock for ``role`` while working; stand by until it is free.

    Yields the connection that holds the lock (the follower LISTENs on it too, so one
    connection serves both), or None when ``stop`` was set while standing by."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        key = f"rightsledger.{role}.{schema}"
        while not stop.is_set():
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
            if row and row[0]:
                try:
                    yield conn
                finally:
                    if not conn.closed:
                        with suppress(psycopg.Error):
                            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
                return
            stop.wait(1.0)
        yield None


BUSY_WITHIN = 0.25
"""A follower woken again within this many seconds is under load (see ``follow_log``)."""


def follow_log(
    runner: FollowerRunner,
    *,
    database_url: str,
    schema: str,
    role: str,
    channel: str,
    stop: threading.Event,
    step: Callable[[int], int],
    position: Callable[[], int],
    skip: Callable[[int, str], None] | None = None,
    locate: Callable[[int], int | None] | None = None,
    poll: float = 0.5,
    gather: float = 0.0,
    busy_gather: float | None = None,
    busy_within: float = BUSY_WITHIN,
    on_lock: Callable[[], None] | None = None,
) -> None:
    """The loop every follower runs: hold its advisory lock (standing by while another
    process holds it), LISTEN for new events on the lock's connection, and run its batches
    through ``runner`` until ``stop``. A lost connection (the lock went with it) retakes
    both; ``on_lock`` runs each time the lock is taken (e.g. to reload positions).

    A wake-up waits ``gather`` seconds for more commits before the batch is read; when the
    follower was woken less than ``busy_within`` seconds before (it is under load), it
    waits ``busy_gather`` instead (when given): larger batches, each costing its fixed
    round trips and commit once for more events, while a first command after a quiet
    spell is followed as soon as before."""
    last_wake = [-busy_within]
    while not stop.is_set():
        try:
            with exclusive(database_url, schema, stop, role) as listener:
                if listener is None:
                    return
                if on_lock is not None:
                    on_lock()
                listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                broken: list[BaseException] = []

                def wait(
                    seconds: float,
                    listener: psycopg.Connection[Any] = listener,
                    broken: list[BaseException] = broken,
                ) -> None:
                    # Every notification already received is taken at once (psycopg yields
                    # all those that came in one read, whatever ``stop_after`` says); only
                    # then a short wait for a few more commits: bigger, cheaper batches.
                    woken = False
                    try:
                        for _ in listener.notifies(timeout=min(seconds, poll), stop_after=1):
                            woken = True
                    except psycopg.Error as error:
                        broken.append(error)
                    if not woken:
                        return
                    now = time.monotonic()
                    busy = now - last_wake[0] < busy_within
                    last_wake[0] = now
                    pause = busy_gather if busy and busy_gather is not None else gather
                    if pause:
                        stop.wait(pause)

                runner.run(
                    step=step,
                    position=position,
                    wait=wait,
                    stop=stop,
                    skip=skip,
                    locate=locate,
                    alive=partial(operator.not_, broken),
                )
                if not broken:
                    return
                log.warning(
                    "%s lost its lock's connection (%s); retaking it", runner.name, broken[0]
                )
        except Exception as error:
            if not is_transient(error):
                raise
            runner.note_transient(error, _safe(position))
        stop.wait(1.0)
