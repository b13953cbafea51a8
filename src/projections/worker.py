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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

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

Prepared = tuple[list[Positioned], dict[str, Any]]
"""A decoded batch and what each view (by name) prepared of it."""

Progress = Callable[[int, int], None]
"""Called with (position reached, head position) after each batch."""


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


class ProjectionWorker:
    """Applies the log to a set of views, batch by batch, exactly once."""

    def __init__(
        self,
        app: RightsLedger,
        views: Sequence[View],
        *,
        batch_size: int = 1000,
        board: FollowerBoard | None = None,
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
        self.retry_delay = 0.5
        """First back-off after a failure (doubling to 30 s)."""
        self.positions = {view.name: view.position() for view in self.views}
        self._select_statement: str | None = None
        self._recorded_statement: str | None = None
        self._track_statements: dict[tuple[str, ...], str] = {}

    def head(self) -> int:
        return self.app.recorder.max_notification_id() or 0

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
            statement = self._select_statement = (
                sql.SQL(
                    "SELECT notification_id, originator_id, originator_version, topic, state"
                    " FROM {} WHERE notification_id > %s AND notification_id <= %s"
                    " ORDER BY notification_id LIMIT %s"
                )
                .format(sql.Identifier(recorder.datastore.schema, recorder.events_table_name))
                .as_string()
            )
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
                view._insert_tracking(curs, Tracking(APPLICATION_NAME, advanced[view.name]))
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
            params += [APPLICATION_NAME, advanced[view.name]]
        curs.execute(statement, params, prepare=True)
        row = curs.fetchone()
        if row is None or row["moved"] != len(views):
            raise IntegrityError(
                f"Failed to record tracking for {APPLICATION_NAME} in {', '.join(names)}"
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
        curs.execute(self._recorded_statement, [APPLICATION_NAME] * len(self.views), prepare=True)
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
        thread while the current one is written, so that work overlaps with PostgreSQL's.
        """
        target = self.head() if until is None else until
        start = min(self.positions.values())
        if start >= target:
            return start
        size = batch_size or self.batch_size
        left = batches
        with (
            fewer_collections(),
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="projection-reader") as reader,
        ):
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
                    self.positions = {view.name: view.position() for view in self.views}
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
                    view._insert_tracking(curs, Tracking(APPLICATION_NAME, position))
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
            self.positions = {view.name: view.position() for view in self.views}

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
    chosen = [names] if isinstance(names, str) else list(names)
    extra = context or {}
    lives, shadows = [], []
    for name in chosen:
        view_cls = VIEW_CLASSES[name]
        live = view_cls(datastore, **extra)
        live.create_table()
        shadow = view_cls(datastore, suffix=REBUILD_SUFFIX, **extra)
        _drop(datastore, shadow)
        shadow.create_table()
        lives.append(live)
        shadows.append(shadow)
    worker = ProjectionWorker(app, shadows, batch_size=batch_size)
    worker.catch_up(progress=progress)
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


def rebuild_groups(names: Sequence[str], processes: int) -> list[list[str]]:
    """The views split into at most ``processes`` groups of about equal work (each view's
    ``View.rebuild_weight``; the heaviest first, each to the lightest group so far), for a
    rebuild in several processes: each reads and decodes the log once for its group."""
    unknown = [name for name in names if name not in VIEW_CLASSES]
    if unknown:
        msg = f"unknown view {unknown[0]!r}; views: {', '.join(VIEW_CLASSES)}"
        raise ValueError(msg)
    chosen = sorted(dict.fromkeys(names), key=lambda n: -VIEW_CLASSES[n].rebuild_weight)
    groups: list[list[str]] = [[] for _ in range(max(1, min(processes, len(chosen))))]
    loads = [0] * len(groups)
    for name in chosen:
        lightest = loads.index(min(loads))
        groups[lightest].append(name)
        loads[lightest] += VIEW_CLASSES[name].rebuild_weight
    return [group for group in groups if group]


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
