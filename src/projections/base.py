"""The shape every view shares: its own tables plus a tracking table, written together.

A view is an eventsourcing ``PostgresTrackingRecorder``: it owns a tracking
table (``<name>_tracking``) recording the last log position applied. The
projection worker applies a batch of events to a view and records the batch's
last position in the *same* transaction, so an event is applied exactly once
even when it is delivered again after a crash: a repeated delivery finds the
tracking record already past it and is skipped, and a tracking insert that
does not advance the position fails the whole transaction.

A view can be built under a suffix (``customer_profile__rebuild``) beside the
live one, then swapped in: see ``rightsledger.projections.worker.rebuild``.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor, sql
from psycopg.rows import DictRow, dict_row

APPLICATION_NAME = "rightsledger"
"""The application whose log the views follow (its name keys the tracking records)."""


def jsonable(value: Any) -> Any:
    """Plain JSON values from event attributes (times, ids, amounts)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def as_json(value: Any) -> str:
    return json.dumps(jsonable(value), separators=(",", ":"), sort_keys=True)


class View(PostgresTrackingRecorder):
    """Base of read models: tables named ``<base><suffix>`` and a tracking table."""

    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]

    def __init__(self, datastore: PostgresDatastore, *, suffix: str = "", **_: Any) -> None:
        super().__init__(datastore, tracking_table_name=f"{self.name}{suffix}_tracking")
        self.suffix = suffix
        self.sql_create_statements.extend(self.create_statements())

    def table(self, base: str) -> sql.Identifier:
        return sql.Identifier(self.datastore.schema, base + self.suffix)

    def index(self, base: str) -> sql.Identifier:
        return sql.Identifier(f"{base}{self.suffix}_idx")

    @abstractmethod
    def create_statements(self) -> list[sql.Composed]:
        """CREATE statements for the view's own tables."""

    # ---------------------------------------------------------------- writing

    @abstractmethod
    def apply(self, event: DomainEventProtocol[Any], curs: Cursor[DictRow], position: int) -> None:
        """Apply one event inside the caller's transaction; events a view ignores do nothing.

        Each view defines this as a ``singledispatchmethod`` in its own class body, with one
        registered handler per event type it projects.
        """

    def apply_batch(
        self,
        curs: Cursor[DictRow],
        events: Sequence[tuple[DomainEventProtocol[Any], int]],
        after: int,
    ) -> int | None:
        """Apply the events past ``after`` and advance the tracking record; the new position."""
        last = None
        for event, position in events:
            if position <= after:
                continue
            self.apply(event, curs, position)
            last = position
        if last is not None:
            self._insert_tracking(curs, Tracking(APPLICATION_NAME, last))
        return last

    # ---------------------------------------------------------------- reading

    def position(self) -> int:
        return self.max_tracking_id(APPLICATION_NAME) or 0

    def fetch(
        self, query: sql.Composed | sql.SQL, params: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], int]:
        """Rows of a query and the view's position, read in one snapshot."""
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as curs,
        ):
            curs.execute(sql.SQL("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            curs.execute(query, params)
            rows = [dict(row) for row in curs.fetchall()]
            position = self._max_tracking_id(APPLICATION_NAME, curs)
        return rows, position or 0
