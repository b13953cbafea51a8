"""The projection worker: follows the event log and keeps every view in step, exactly once.

It reads the log in batches (``select_notifications``), decodes each batch once,
and applies it to every view that has not yet seen it, in one transaction with
each view's tracking record. PostgreSQL LISTEN/NOTIFY (the event store notifies
on every insert) wakes it when new events are committed; a short poll covers
missed notifications. Only one worker per schema applies events at a time (a
PostgreSQL advisory lock); a second one waits as a standby.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import uuid4

from eventsourcing.persistence import InfrastructureFactory, IntegrityError, StoredEvent, Tracking
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
)
from eventsourcing.utils import Environment
from psycopg import Cursor, sql
from psycopg.rows import DictRow, dict_row, tuple_row

from rightsledger.domain.ledger import RightsLedger
from rightsledger.projections.audit import AuditTrailView
from rightsledger.projections.base import (
    APPLICATION_NAME,
    Positioned,
    RowsAlreadyThereError,
    View,
    bulk_copies,
)
from rightsledger.projections.customers import ConsentLedgerView, CustomerProfileView
from rightsledger.projections.disclosures import DisclosuresView
from rightsledger.projections.lookup import CustomerLookupView
from rightsledger.projections.partners import PartnersView
from rightsledger.projections.requests import RequestQueueView
from rightsledger.runtime import fewer_collections
from rightsledger.storage.followers import FollowerBoard, FollowerRunner, follow_log
from rightsledger.storage.sealing import SealingMapper

log = logging.getLogger(__name__)

FOLLOWER = "projections"
"""This follower's name in ``follower_status``."""

GATHER = 0.02
"""Seconds to wait after a wake-up before reading, so batches hold more than one event."""

BUSY_GATHER = 0.05
"""The same under load (woken again within ``followers.BUSY_WITHIN``): larger batches."""

VIEW_CLASSES: dict[str, type[View]] = {
    cls.name: cls
    for cls in (
        CustomerProfileView,
        ConsentLedgerView,
        RequestQueueView,
        DisclosuresView,
        AuditTrailView,
        CustomerLookupView,
        PartnersView,
    )
}

REBUILD_SUFFIX = "__rebuild"

_MAX_POSITION = 2**63 - 1

V = TypeVar("V", bound=View)
T = TypeVar("T")

Prepared = tuple[list[Positioned], dict[str, Any]]
"""A decoded batch and what each view (by name) prepared of it."""

Progress = Callable[[int, int], None]
"""Called with (position reached, head position) after each batch."""


@dataclass(frozen=True)
class Share:
    """One of ``count`` shares of the log, for a rebuild in several processes: the events of
    the streams whose owner's id hashes to ``index``. A stream's owner is the customer its
    creation event names (``customer_id``: a request, a read), or else the stream itself.
    Every view row is folded from one owner's streams (a customer's requests, say, are
    cleared by the customer's erasure), so each share's events, applied in log order, build
    the same rows as the whole log. ``split_log`` lists each event's share in ``table``."""

    index: int
    count: int
    table: str
    """The table (in the store's schema) of the log's positions by share: share, position."""

    @property
    def tracking_name(self) -> str:
        """The name a share's progress is tracked under in the views' tracking tables."""
        return f"{APPLICATION_NAME}#{self.index}/{self.count}"


def open_datastore(env: dict[str, str], *, pool_size: int = 4) -> PostgresDatastore:
    factory = InfrastructureFactory.construct(
        env=Environment(
            "projections",
            {
                **env,
                # one connection kept open, up to ``pool_size`` when busy
                "POSTGRES_POOL_SIZE": "1",
                "POSTGRES_MAX_OVERFLOW": str(max(0, pool_size - 1)),
                # reads of views are not retried: a connection the server ended is replaced
                # before use instead of failing the read
                "POSTGRES_PRE_PING": "y",
            },
        )
    )
    assert isinstance(factory, PostgresFactory)
    return factory.datastore


@dataclass
class ViewSet:
    """The live views of one schema, sharing one datastore; for reading and waiting."""

    datastore: PostgresDatastore
    views: dict[str, View]
    context: dict[str, Any] = field(default_factory=dict)
    """What views need beyond their tables (``blind_index`` for ``customer_lookup``), given
    to every view built for this schema, rebuilds included."""

    @classmethod
    def open(cls, env: dict[str, str], *, pool_size: int = 4, **context: Any) -> ViewSet:
        datastore = open_datastore(env, pool_size=pool_size)
        views = {name: view_cls(datastore, **context) for name, view_cls in VIEW_CLASSES.items()}
        for view in views.values():
            view.create_table()
        return cls(datastore, views, context)

    def __getitem__(self, name: str) -> View:
        return self.views[name]

    def _view(self, cls: type[V]) -> V:
        view = self.views[cls.name]
        assert isinstance(view, cls)
        return view

    @property
    def customer_profile(self) -> CustomerProfileView:
        return self._view(CustomerProfileView)

    @property
    def consent_ledger(self) -> ConsentLedgerView:
        return self._view(ConsentLedgerView)

    @property
    def request_queue(self) -> RequestQueueView:
        return self._view(RequestQueueView)

    @property
    def disclosures(self) -> DisclosuresView:
        return self._view(DisclosuresView)

    @property
    def audit_trail(self) -> AuditTrailView:
        return self._view(AuditTrailView)

    @property
    def customer_lookup(self) -> CustomerLookupView:
        return self._view(CustomerLookupView)

    @property
    def partners(self) -> PartnersView:
        return self._view(PartnersView)

    def positions(self) -> dict[str, int]:
        """Each view's position, read on one connection."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=dict_row) as curs:
            return {
                name: view._max_tracking_id(APPLICATION_NAME, curs) or 0
                for name, view in self.views.items()
            }

    def wait(
        self, view: View, position: int, timeout: float, stop: threading.Event | None = None
    ) -> bool:
        """Block until ``view`` has applied ``position``; False when the timeout passes first."""
        if view.position() >= position:
            return True
        interval = 0.005
        waiter = stop or threading.Event()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if waiter.wait(min(interval, max(0.0, deadline - time.monotonic()))):
                return False
            if view.position() >= position:
                return True
            interval = min(interval * 2, 0.05)
        return view.position() >= position

    def close(self) -> None:
        self.datastore.close()


class _InPlace(Executor):
    """An executor that runs each call at once, in the caller's thread."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


class ProjectionWorker:
    """Applies the log to a set of views, batch by batch, exactly once."""

    def __init__(
        self,
        app: RightsLedger,
        views: Sequence[View],
        *,
        batch_size: int = 1000,
        board: FollowerBoard | None = None,
        share: Share | None = None,
    ) -> None:
        if not views:
            msg = "a worker needs at least one view"
            raise ValueError(msg)
        datastores = {id(v.datastore) for v in views}
        if len(datastores) != 1:
            msg = "the views of one worker share one datastore, so they commit together"
            raise ValueError(msg)
        self.app = app
        self.views = list(views)
        self.datastore = views[0].datastore
        self.batch_size = batch_size
        self.board = board
        self.share = share
        self.read_ahead = share is None
        """Whether the next batch is read in a second thread while one is written. A share of
        a rebuild does not: the other shares' processes keep the cores busy while it waits
        for PostgreSQL, and a second thread would only contend for the interpreter (measured:
        about a tenth more CPU per event and a slower rebuild, docs/benchmarks.md)."""
        self.tracking_name = APPLICATION_NAME if share is None else share.tracking_name
        """The name the views' tracking records are kept under (a share's own, in a rebuild)."""
        self.retry_delay = 0.5
        """First back-off after a failure (doubling to 30 s)."""
        self.positions = self._positions()
        self._select_statement: str | None = None
        self._recorded_statement: str | None = None
        self._track_statements: dict[tuple[str, ...], str] = {}

    def head(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def _positions(self) -> dict[str, int]:
        """Each view's tracked position (under ``tracking_name``)."""
        return {view.name: view.max_tracking_id(self.tracking_name) or 0 for view in self.views}

    def _decode(self, start: int, until: int | None, size: int | None = None) -> list[Positioned]:
        """The events after ``start`` (up to ``until``), decoded, with their positions.

        Reads the stored events as plain tuples (``select_notifications`` builds a dict and a
        ``Notification`` per row, as much work as the decoding itself) and decodes each once,
        with the application's mapper (unsealing, upcasting), for every view.
        """
        recorder = self.app.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        statement = self._select_statement
        if statement is None:
            statement = self._select_statement = self._select(recorder).as_string()
        with (
            recorder.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            curs.execute(
                statement,
                (start, _MAX_POSITION if until is None else until, size or self.batch_size),
                prepare=True,
                binary=True,
            )
            rows = curs.fetchall()
        stored = [
            StoredEvent(
                originator_id=originator_id, originator_version=version, topic=topic, state=state
            )
            for _, originator_id, version, topic, state in rows
        ]
        mapper = self.app.mapper
        if isinstance(mapper, SealingMapper):
            events = mapper.to_domain_events(stored)  # the batch's keys read in one go
        else:
            events = [mapper.to_domain_event(s) for s in stored]
        return [(event, row[0]) for event, row in zip(events, rows, strict=True)]

    def _select(self, recorder: PostgresApplicationRecorder) -> sql.Composed:
        """The statement reading a batch of stored events (of the worker's share, if any)."""
        events = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)
        if self.share is None:
            return sql.SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state"
                " FROM {} WHERE notification_id > %s AND notification_id <= %s"
                " ORDER BY notification_id LIMIT %s"
            ).format(events)
        return sql.SQL(
            "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state"
            " FROM {events} e WHERE e.notification_id = ANY(ARRAY(SELECT notification_id"
            " FROM {shares} WHERE share = {index} AND notification_id > %s"
            " AND notification_id <= %s ORDER BY notification_id LIMIT %s))"
            " ORDER BY e.notification_id"
        ).format(
            events=events,
            shares=sql.Identifier(recorder.datastore.schema, self.share.table),
            index=sql.Literal(self.share.index),
        )

    def _read(self, start: int, until: int | None, size: int) -> Prepared:
        """The reader thread's part: a batch decoded, and what each view makes of it without
        the database (``View.prepare``)."""
        events = self._decode(start, until, size)
        return events, {view.name: view.prepare(events) for view in self.views} if events else {}

    def apply(self, events: Sequence[Positioned], prepared: dict[str, Any] | None = None) -> None:
        """Apply one batch to every view in one transaction with their tracking records
        (with what the views prepared of it, when given).

        Append-only rows go in by COPY (``bulk_copies``); should some be there already, the
        transaction is rolled back and the batch written again with ``INSERT ... ON
        CONFLICT DO NOTHING``, as it always was.
        """
        try:
            with bulk_copies():
                self._apply(events, prepared)
        except RowsAlreadyThereError:
            log.info("batch to %s: rows already there, inserted again", events[-1][1])
            self._apply(events, prepared)

    def _apply(self, events: Sequence[Positioned], prepared: dict[str, Any] | None) -> None:
        advanced: dict[str, int] = {}
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as curs,
        ):
            recorded = self._recorded(curs)
            for view in self.views:
                # the worker's idea of the position may be stale: the tracking record decides
                after = max(self.positions[view.name], recorded[view.name])
                fresh = (
                    events
                    if events[0][1] > after
                    else [(event, position) for event, position in events if position > after]
                )
                if fresh is events and prepared is not None:
                    view.write_prepared(curs, events, prepared[view.name])
                elif fresh:
                    view.write(curs, fresh)
                if fresh:
                    advanced[view.name] = fresh[-1][1]
            # every tracking record in one statement; one that does not advance fails the
            # whole transaction. The commit does not wait for the WAL flush: views are derived,
            # and a server crash loses the last batches' rows together with their tracking
            # records (WAL order), so they are applied again.
            with conn.pipeline():
                curs.execute("SET LOCAL synchronous_commit = off")
                if advanced:
                    self._track(curs, advanced)
        self.positions.update(advanced)

    def _track(self, curs: Cursor[DictRow], advanced: dict[str, int]) -> None:
        """Move the views' tracking records to ``advanced`` in one statement (one data-
        modifying CTE per view, the library's single-row upsert), where it would take one
        statement and one round trip per view; fails, as the library's insert does, when
        any of them does not move forward."""
        views = [view for view in self.views if view.name in advanced]
        if not self.datastore.single_row_tracking:  # the library's legacy multi-row tables
            for view in views:
                view._insert_tracking(curs, Tracking(self.tracking_name, advanced[view.name]))
            return
        names = tuple(view.name for view in views)
        statement = self._track_statements.get(names)
        if statement is None:
            schema = sql.Identifier(self.datastore.schema)
            moves = [
                sql.SQL(
                    "{step} AS (INSERT INTO {schema}.{table} VALUES (%s, %s)"
                    " ON CONFLICT (application_name) DO UPDATE"
                    " SET notification_id = EXCLUDED.notification_id"
                    " WHERE {schema}.{table}.notification_id < EXCLUDED.notification_id"
                    " RETURNING 1)"
                ).format(
                    step=sql.Identifier(f"t{n}"),
                    schema=schema,
                    table=sql.Identifier(view.tracking_table_name),
                )
                for n, view in enumerate(views)
            ]
            counted = sql.SQL(" + ").join(
                sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(f"t{n}"))
                for n in range(len(views))
            )
            statement = (
                sql.SQL("WITH {} SELECT {} AS moved")
                .format(sql.SQL(", ").join(moves), counted)
                .as_string()
            )
            self._track_statements[names] = statement
        params: list[object] = []
        for view in views:
            params += [self.tracking_name, advanced[view.name]]
        curs.execute(statement, params, prepare=True)
        row = curs.fetchone()
        if row is None or row["moved"] != len(views):
            raise IntegrityError(
                f"Failed to record tracking for {self.tracking_name} in {', '.join(names)}"
            )

    def _recorded(self, curs: Cursor[DictRow]) -> dict[str, int]:
        """Every view's tracked position, in one statement."""
        if self._recorded_statement is None:
            schema = self.datastore.schema
            self._recorded_statement = (
                sql.SQL(" UNION ALL ")
                .join(
                    sql.SQL(
                        "SELECT {} AS name, (SELECT max(notification_id) FROM {}"
                        " WHERE application_name = %s) AS position"
                    ).format(
                        sql.Literal(view.name),
                        sql.Identifier(schema, view.tracking_table_name),
                    )
                    for view in self.views
                )
                .as_string()
            )
        curs.execute(self._recorded_statement, [self.tracking_name] * len(self.views), prepare=True)
        return {row["name"]: row["position"] or 0 for row in curs.fetchall()}

    def catch_up(
        self,
        until: int | None = None,
        progress: Progress | None = None,
        *,
        batches: int | None = None,
        batch_size: int | None = None,
    ) -> int:
        """Apply everything up to ``until`` (default: the head now), or ``batches`` batches
        of ``batch_size`` events; the position reached.

        The next batch is read, decoded and prepared by the views (rows built) in a second
        thread while the current one is written, so that work overlaps with PostgreSQL's;
        a share of a rebuild reads in its own thread (``read_ahead``).
        """
        target = self.head() if until is None else until
        start = min(self.positions.values())
        if start >= target:
            return start
        size = batch_size or self.batch_size
        left = batches
        reader: Executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="projection-reader")
            if self.read_ahead
            else _InPlace()
        )
        with fewer_collections(), reader:
            pending: Future[Prepared] | None = reader.submit(self._read, start, target, size)
            while pending is not None:
                events, prepared = pending.result()
                if not events:
                    break
                last = events[-1][1]
                if left is not None:
                    left -= 1
                more = last < target and (left is None or left > 0)
                pending = reader.submit(self._read, last, target, size) if more else None
                before = dict(self.positions)
                try:
                    self.apply(events, prepared)
                except IntegrityError:
                    self.positions = self._positions()
                    if self.positions == before:
                        # No other worker moved on: a view refused this batch. Never step
                        # over it; the follower's policy retries it and parks on it.
                        raise
                    # Another worker applied some of these first: go on from where it got to.
                    log.info("tracking conflict at %s; reloading positions", last)
                    if pending is not None:
                        pending.cancel()
                    again = min(self.positions.values())
                    more = again < target and (left is None or left > 0)
                    pending = reader.submit(self._read, again, target, size) if more else None
                if progress is not None:
                    progress(max(min(self.positions.values()), last), target)
        return min(self.positions.values())

    def next_position(self, after: int) -> int | None:
        """The position of the first event after ``after``, if any."""
        found = self.app.recorder.select_notifications(
            start=after, limit=1, inclusive_of_start=False
        )
        return found[0].id if found else None

    def skip(self, position: int, actor: str) -> None:
        """Step every view over the event at ``position`` without applying it, recording
        the decision in the log first (``FollowerSkip``)."""
        self.app.record_skip(
            follower=FOLLOWER, position=position, reason="skipped by an operator", actor=actor
        )
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as curs,
        ):
            for view in self.views:
                if self.positions[view.name] < position:
                    view._insert_tracking(curs, Tracking(self.tracking_name, position))
                    self.positions[view.name] = position

    def run_forever(
        self,
        database_url: str,
        stop: threading.Event,
        *,
        poll: float = 0.5,
        board: FollowerBoard | None = None,
    ) -> None:
        """Follow the log until ``stop`` is set; wakes on NOTIFY, polls as a fallback. Failures
        are handled by ``FollowerRunner`` (retried, or parked at the failing event)."""

        def reload() -> None:
            self.positions = self._positions()

        follow_log(
            FollowerRunner(FOLLOWER, board or self.board, first_delay=self.retry_delay),
            database_url=database_url,
            schema=self.datastore.schema,
            role="projections",
            channel=self.app.recorder.channel_name,  # type: ignore[attr-defined]
            stop=stop,
            step=lambda limit: self.catch_up(batches=1 if limit else 10, batch_size=limit or None),
            position=lambda: min(self.positions.values()),
            skip=self.skip,
            locate=self.next_position,
            poll=poll,
            gather=GATHER,
            busy_gather=BUSY_GATHER,
            on_lock=reload,
        )


def rebuild(
    app: RightsLedger,
    datastore: PostgresDatastore,
    names: str | Sequence[str],
    *,
    progress: Progress | None = None,
    batch_size: int = 2000,
    context: dict[str, Any] | None = None,
) -> int:
    """Rebuild the views ``names`` (one, or several read from the log once) beside the live
    ones, then swap them in; returns their position.

    The live views keep serving reads (and the live worker keeps them current) until the
    new ones have caught up; the swap then happens in one transaction that locks the live
    views' tables, applies the last events, drops the old tables and renames the new ones.
    ``context`` is what the views need beyond their tables (``ViewSet.context``).
    """
    lives, shadows = fresh_shadows(datastore, names, context)
    worker = ProjectionWorker(app, shadows, batch_size=batch_size)
    worker.catch_up(progress=progress)
    return swap_in(worker, lives)


def fresh_shadows(
    datastore: PostgresDatastore,
    names: str | Sequence[str],
    context: dict[str, Any] | None = None,
) -> tuple[list[View], list[View]]:
    """The live views ``names`` (created if missing) and empty views beside them, under
    ``REBUILD_SUFFIX``, for a rebuild (any left by an earlier one are dropped)."""
    extra = context or {}
    lives, shadows = [], []
    for name in [names] if isinstance(names, str) else list(dict.fromkeys(names)):
        view_cls = VIEW_CLASSES[name]
        live = view_cls(datastore, **extra)
        live.create_table()
        shadow = view_cls(datastore, suffix=REBUILD_SUFFIX, **extra)
        _drop(datastore, shadow)
        shadow.create_table()
        lives.append(live)
        shadows.append(shadow)
    return lives, shadows


def shadows_of(
    datastore: PostgresDatastore, names: Sequence[str], context: dict[str, Any] | None = None
) -> list[View]:
    """The views ``names`` being rebuilt (under ``REBUILD_SUFFIX``), as they are."""
    return [
        VIEW_CLASSES[name](datastore, suffix=REBUILD_SUFFIX, **(context or {})) for name in names
    ]


def split_log(app: RightsLedger, datastore: PostgresDatastore, until: int, count: int) -> str:
    """A table of the log's positions up to ``until`` by share (``Share``) of ``count``, for
    a rebuild in shares; its name (``drop_split``).

    The streams a customer owns are found from their creation events (``customer_id``),
    decoded without opening their sealed values: the customer's id is public. The table
    is indexed by share and position, so each share reads only its own events."""
    name = f"rebuild_shares_{uuid4().hex[:12]}"
    schema = datastore.schema
    table = sql.Identifier(schema, name)
    owners = sql.Identifier(f"{name}_owners")
    recorder = app.recorder
    assert isinstance(recorder, PostgresApplicationRecorder)
    events = sql.Identifier(schema, recorder.events_table_name)
    mapper = app.mapper
    assert isinstance(mapper, SealingMapper)
    with datastore.transaction(commit=True) as curs:
        curs.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} (stream_id uuid PRIMARY KEY, owner_id uuid NOT NULL)"
                " ON COMMIT DROP"
            ).format(owners)
        )
        curs.execute(
            sql.SQL(
                "SELECT originator_id, originator_version, topic, state FROM {}"
                " WHERE originator_version = 1 AND topic = ANY(%s) AND notification_id <= %s"
            ).format(events),
            (list(mapper.owned_topics()), until),
            binary=True,
        )
        owned = []
        for row in curs.fetchall():
            stream = row["originator_id"]
            owner = mapper.owner_of(
                StoredEvent(
                    originator_id=stream,
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=row["state"],
                )
            )
            if owner is not None and owner != stream:
                owned.append((stream, owner))
        with curs.copy(sql.SQL("COPY {} (stream_id, owner_id) FROM STDIN").format(owners)) as copy:
            for pair in owned:
                copy.write_row(pair)
        curs.execute(sql.SQL("ANALYZE {}").format(owners))
        curs.execute(
            sql.SQL(
                "CREATE UNLOGGED TABLE {table} AS"
                " SELECT (uuid_hash(coalesce(o.owner_id, e.originator_id)) & 2147483647)"
                " %% {count} AS share, e.notification_id"
                " FROM {events} e LEFT JOIN {owners} o ON o.stream_id = e.originator_id"
                " WHERE e.notification_id <= %s"
            ).format(table=table, count=sql.Literal(count), events=events, owners=owners),
            (until,),
        )
        curs.execute(sql.SQL("CREATE INDEX ON {} (share, notification_id)").format(table))
        curs.execute(sql.SQL("ANALYZE {}").format(table))
    return name


def drop_split(datastore: PostgresDatastore, name: str) -> None:
    """The table ``split_log`` made, dropped."""
    with datastore.transaction(commit=True) as curs:
        curs.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(datastore.schema, name))
        )


def drop_leftover_splits(datastore: PostgresDatastore) -> list[str]:
    """The tables ``split_log`` made for rebuilds that ended without dropping them (a parent
    killed midway), dropped; their names. Only while no rebuild is running."""
    with datastore.transaction(commit=True) as curs:
        curs.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s"
            " AND tablename LIKE 'rebuild\\_shares\\_%%'",
            (datastore.schema,),
        )
        names = [row["tablename"] for row in curs.fetchall()]
        for name in names:
            curs.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(datastore.schema, name))
            )
    return names


def join_shares(shadows: Sequence[View], shares: Sequence[Share], position: int) -> None:
    """The tracking records of ``shares`` in views rebuilt in shares replaced by one at
    ``position`` (every share has applied its events up to there), in one transaction."""
    datastore = shadows[0].datastore
    names = [share.tracking_name for share in shares]
    with datastore.transaction(commit=True) as curs:
        for view in shadows:
            curs.execute(
                sql.SQL("DELETE FROM {} WHERE application_name = ANY(%s)").format(
                    sql.Identifier(datastore.schema, view.tracking_table_name)
                ),
                (names,),
            )
            view._insert_tracking(curs, Tracking(APPLICATION_NAME, position))


def swap_in(worker: ProjectionWorker, lives: Sequence[View]) -> int:
    """The rebuilt views (``worker``'s) brought to the head and swapped in for the live
    ones, in one transaction that locks the live views' tables; their position."""
    shadows = worker.views
    datastore = worker.datastore
    worker.catch_up()
    with (
        datastore.get_connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as curs,
    ):
        curs.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.SQL(", ").join(o for live in lives for o in _objects(live))
            )
        )
        while True:
            after = min(worker.positions.values())
            events = worker._decode(after, None)
            if not events:
                break
            for shadow in shadows:
                shadow.apply_batch(curs, events, worker.positions[shadow.name])
                worker.positions[shadow.name] = events[-1][1]
        renames: list[tuple[str, str]] = []
        for live, shadow in zip(lives, shadows, strict=True):
            renames.extend((base + REBUILD_SUFFIX, base) for base in type(live).tables)
            renames.append((shadow.tracking_table_name, live.tracking_table_name))
        for built, serving in renames:
            curs.execute(
                sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                    sql.Identifier(datastore.schema, serving)
                )
            )
            curs.execute(
                sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    sql.Identifier(datastore.schema, built), sql.Identifier(serving)
                )
            )
        curs.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = ANY(%s)"
            " AND indexname LIKE %s",
            (datastore.schema, [serving for _, serving in renames], f"%{REBUILD_SUFFIX}%"),
        )
        for row in curs.fetchall():
            index = row["indexname"]
            curs.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(datastore.schema, index),
                    sql.Identifier(index.replace(REBUILD_SUFFIX, "")),
                )
            )
    return min(worker.positions.values())


def chosen_views(names: Sequence[str]) -> list[str]:
    """The views named (each once, in order); ``ValueError`` naming the first that is none."""
    unknown = [name for name in names if name not in VIEW_CLASSES]
    if unknown:
        msg = f"unknown view {unknown[0]!r}; views: {', '.join(VIEW_CLASSES)}"
        raise ValueError(msg)
    return list(dict.fromkeys(names))


def _objects(view: View) -> list[sql.Composable]:
    schema = view.datastore.schema
    return [
        *(view.table(base) for base in type(view).tables),
        sql.Identifier(schema, view.tracking_table_name),
    ]


def _drop(datastore: PostgresDatastore, view: View) -> None:
    with datastore.transaction(commit=True) as curs:
        for identifier in _objects(view):
            curs.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(identifier))
