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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Generic, TypeGuard, TypeVar
from uuid import UUID

import msgspec
import orjson
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor, errors, sql
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb, set_json_loads

from rightsledger.domain.ledger import RightsLedger

APPLICATION_NAME = RightsLedger.name
"""The application whose log the views follow (its name keys the tracking records)."""

Positioned = tuple[Any, int]
"""A domain event and its position in the log."""

K = TypeVar("K")


def _text(value: str) -> str:
    # jsonb cannot hold NUL: never let one stall a view
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _plain(value: Any) -> Any:
    return value


def _mapping(value: dict[Any, Any]) -> dict[str, Any]:
    return {k if type(k) is str else str(k): _jsonable(v) for k, v in value.items()}


def _sequence(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [_jsonable(v) for v in value]


def _datetime_text(value: datetime) -> str:
    """``value.isoformat()``; for a time in UTC written by orjson, which writes it the same
    (date, time, microseconds when there are some, ``+00:00``) several times faster."""
    if value.tzinfo is UTC:
        return orjson.dumps(value)[1:-1].decode()
    return value.isoformat()


_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    str: _text,
    dict: _mapping,
    list: _sequence,
    tuple: _sequence,
    bool: _plain,
    int: _plain,
    float: _plain,
    type(None): _plain,
    datetime: _datetime_text,
    date: date.isoformat,
    UUID: str,
    Decimal: str,
}


def jsonable(value: Any) -> Any:
    """Plain JSON values from event attributes (times, ids, amounts), storable in jsonb."""
    kind = type(value)
    if kind is dict:
        flat = _flat(value)
        if flat is not None:
            return flat
    if kind is dict or kind is list:
        # orjson writes what the rules below would give (ids as str(id), times and dates
        # through isoformat, amounts through str) and reads it back, in C; anything else,
        # or text holding a NUL, takes the rules themselves
        try:
            text = orjson.dumps(value, default=_jsonable_default, option=_PASSTHROUGH)
        except TypeError:
            return _jsonable(value)
        if _NUL in text:
            return _jsonable(value)
        return orjson.loads(text)
    return _jsonable(value)


_SCALARS = frozenset({int, bool, type(None)})
_TEXTS: dict[type, Callable[[Any], str]] = {
    datetime: _datetime_text,
    date: date.isoformat,
    UUID: str,
    Decimal: str,
}


def _flat(value: dict[Any, Any]) -> dict[str, Any] | None:
    """``jsonable`` of a mapping of text keys to text, integers, times, dates, ids and amounts
    (consent evidence, an invoice), by the rules at once; None for any other mapping."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        kind = type(item)
        if type(key) is not str:
            return None
        if kind is str:
            if "\x00" in item:
                return None
        elif kind not in _SCALARS:
            text = _TEXTS.get(kind)
            if text is None:
                return None
            item = text(item)
        out[key] = item
    return out


_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
_NUL = b"\\u0000"


def _jsonable_default(value: Any) -> Any:
    convert = _TEXTS.get(type(value))
    if convert is not None and type(value) is not UUID:
        return convert(value)
    msg = f"{type(value).__name__} is left to jsonable's rules"
    raise TypeError(msg)


def _jsonable(value: Any) -> Any:
    convert = _BY_TYPE.get(type(value))
    if convert is not None:
        return convert(value)
    if isinstance(value, dict):
        return _mapping(value)
    if isinstance(value, list | tuple):
        return _sequence(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    return value


def json_dumps(value: Any) -> bytes:
    """JSON text of a plain JSON value (see ``jsonable``) for a jsonb column: orjson, or the
    standard library for what orjson refuses (integers beyond 64 bits, say)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


_parse = msgspec.json.Decoder().decode


def json_loads(data: str | bytes) -> Any:
    """A jsonb value read back (msgspec, which reads integers of any size as the standard
    library does; the standard library for what msgspec refuses)."""
    try:
        return _parse(data)
    except msgspec.MsgspecError:
        return json.loads(data)


def as_json(value: Any) -> str:
    return json.dumps(jsonable(value), separators=(",", ":"), sort_keys=True)


class Kinds(Generic[K]):
    """An ``isinstance`` test against fixed classes, answered once per event class: what
    views ask of every event of a long log (``isinstance`` against a union costs several
    times a dictionary lookup)."""

    __slots__ = ("_answers", "classes")

    def __init__(self, *classes: type[K]) -> None:
        self.classes = classes
        self._answers: dict[type, bool] = {}

    def __call__(self, event: object) -> TypeGuard[K]:
        kind = type(event)
        answer = self._answers.get(kind)
        if answer is None:
            answer = self._answers[kind] = issubclass(kind, self.classes)
        return answer


class View(PostgresTrackingRecorder):
    """Base of read models: tables named ``<base><suffix>`` and a tracking table."""

    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]

    def __init__(self, datastore: PostgresDatastore, *, suffix: str = "", **_: Any) -> None:
        super().__init__(datastore, tracking_table_name=f"{self.name}{suffix}_tracking")
        self.suffix = suffix
        self._tables: dict[str, sql.Identifier] = {}
        self.sql_create_statements.extend(self.create_statements())

    def table(self, base: str) -> sql.Identifier:
        """The view's table ``base`` in its schema (with the rebuild's suffix), made once."""
        found = self._tables.get(base)
        if found is None:
            found = self._tables[base] = sql.Identifier(self.datastore.schema, base + self.suffix)
        return found

    def index(self, base: str) -> sql.Identifier:
        return sql.Identifier(f"{base}{self.suffix}_idx")

    @abstractmethod
    def create_statements(self) -> list[sql.Composed]:
        """CREATE statements for the view's own tables."""

    # ---------------------------------------------------------------- writing

    @abstractmethod
    def write(self, curs: Cursor[DictRow], events: Sequence[Positioned]) -> None:
        """Write the effect of ``events`` (all past the view's position) in the caller's
        transaction. Views batch: one statement per table per batch where they can."""

    def prepare(self, events: Sequence[Positioned]) -> Any:
        """What of writing ``events`` needs no database (rows built from the events alone),
        done ahead by the worker's reader thread, for ``write_prepared``; None by default."""
        return None

    def write_prepared(
        self, curs: Cursor[DictRow], events: Sequence[Positioned], prepared: Any
    ) -> None:
        """``write`` with what ``prepare`` made of the same ``events``."""
        self.write(curs, events)

    def apply_batch(
        self,
        curs: Cursor[DictRow],
        events: Sequence[Positioned],
        after: int,
    ) -> int | None:
        """Apply the events past ``after`` and advance the tracking record; the new position.

        The tracking insert fails (and with it the whole transaction) when the recorded
        position is not behind the batch: a repeated delivery cannot apply twice.
        """
        recorded = self._max_tracking_id(APPLICATION_NAME, curs) or 0
        after = max(after, recorded)  # the caller's idea of the position may be stale
        fresh = [(event, position) for event, position in events if position > after]
        if not fresh:
            return None
        self.write(curs, fresh)
        last = fresh[-1][1]
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


_STATEMENTS: dict[tuple[Any, ...], bytes] = {}


def _statement(
    curs: Cursor[DictRow], key: tuple[Any, ...], build: Callable[[], sql.Composable]
) -> bytes:
    """A statement composed once per process and reused (composing costs more than running
    it for small batches)."""
    found = _STATEMENTS.get(key)
    if found is None:
        found = _STATEMENTS[key] = build().as_bytes(curs)
    return found


def _arrays(
    columns: dict[str, str], json_columns: frozenset[str], rows: Sequence[dict[str, Any]]
) -> list[list[Any]]:
    """The rows as one array per column, for ``_unnest``."""
    return [
        [Jsonb(row[c], json_dumps) for row in rows]
        if c in json_columns
        else [row[c] for row in rows]
        for c in columns
    ]


def _unnest(columns: dict[str, str]) -> sql.Composed:
    """``SELECT * FROM unnest(...)``: many rows as one statement with one array per column."""
    return sql.SQL("SELECT * FROM unnest({arrays}) AS r({names})").format(
        arrays=sql.SQL(", ").join(
            sql.SQL("%b::{}[]").format(sql.SQL(pg_type)) for pg_type in columns.values()
        ),
        names=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
    )


class _Dispatching:
    """Fast dispatch for a ``singledispatchmethod``: one lookup per event type, cached."""

    _handlers: dict[type, Callable[..., Any]]

    def _handler(self, method: str, event_type: type) -> Callable[..., Any]:
        handlers = self.__dict__.setdefault("_handlers", {})
        handler = handlers.get((method, event_type))
        if handler is None:
            owner = next(k for k in type(self).__mro__ if method in k.__dict__)
            descriptor = owner.__dict__[method]
            handler = handlers[(method, event_type)] = descriptor.dispatcher.dispatch(event_type)
        return handler  # type: ignore[no-any-return]


class RowView(View, _Dispatching):
    """A view of one table with one row per key, folded in Python from the events.

    A batch reads the rows its events touch (one query), folds every event into them in
    log order, and writes each changed row once (one upsert statement for the batch).
    Subclasses say which row an event touches (``key_of``) and how it changes it (``fold``,
    a ``singledispatchmethod`` on the event returning the new row, or None to leave it).
    JSON columns hold plain JSON values (see ``jsonable``).
    """

    table_base: ClassVar[str]
    key: ClassVar[str]
    columns: ClassVar[dict[str, str]]
    """Column name to PostgreSQL type, in table order."""
    json_columns: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def key_of(self, event: Any) -> Any | None:
        """The key of the row an event touches, or None when the view ignores it."""

    @abstractmethod
    def fold(self, event: Any, row: dict[str, Any] | None, position: int) -> dict[str, Any] | None:
        """The row after the event, or None when the event changes nothing."""

    def write(self, curs: Cursor[DictRow], events: Sequence[Positioned]) -> None:
        touched = [(key, e, p) for e, p in events if (key := self.key_of(e)) is not None]
        if not touched:
            return
        table = self.table(self.table_base)
        keys = list({key for key, _, _ in touched})
        set_json_loads(json_loads, curs)
        curs.execute(
            _statement(
                curs,
                ("select", table.as_string(), self.key),
                lambda: sql.SQL("SELECT * FROM {} WHERE {} = ANY(%s)").format(
                    table, sql.Identifier(self.key)
                ),
            ),
            (keys,),
        )
        rows: dict[Any, dict[str, Any]] = {row[self.key]: dict(row) for row in curs.fetchall()}
        changed: dict[Any, dict[str, Any]] = {}
        for key, event, position in touched:
            new = self._handler("fold", type(event))(self, event, rows.get(key), position)
            if new is not None:
                rows[key] = changed[key] = new
        if not changed:
            return
        arrays = _arrays(self.columns, self.json_columns, list(changed.values()))

        def upsert() -> sql.Composable:
            updates = sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
                for c in self.columns
                if c != self.key
            )
            return sql.SQL("INSERT INTO {} ({}) {} ON CONFLICT ({}) DO UPDATE SET {}").format(
                table,
                sql.SQL(", ").join(sql.Identifier(c) for c in self.columns),
                _unnest(self.columns),
                sql.Identifier(self.key),
                updates,
            )

        curs.execute(
            _statement(curs, ("upsert", table.as_string(), tuple(self.columns)), upsert),
            arrays,
            binary=True,
        )


class AppendView(View, _Dispatching):
    """A view of one append-only table: each event adds zero or more rows."""

    table_base: ClassVar[str]
    columns: ClassVar[dict[str, str]]
    """Column name to PostgreSQL type, in table order."""
    json_columns: ClassVar[frozenset[str]] = frozenset()
    conflict: ClassVar[tuple[str, ...]]

    @abstractmethod
    def rows(self, event: Any, position: int) -> list[dict[str, Any]]:
        """The rows an event adds (a ``singledispatchmethod``; none by default)."""

    def write(self, curs: Cursor[DictRow], events: Sequence[Positioned]) -> None:
        self.write_prepared(curs, events, self.prepare(events))

    def prepare(self, events: Sequence[Positioned]) -> list[dict[str, Any]]:
        return [
            row
            for event, position in events
            for row in self._handler("rows", type(event))(self, event, position)
        ]

    def write_prepared(
        self, curs: Cursor[DictRow], events: Sequence[Positioned], prepared: Any
    ) -> None:
        if prepared:
            insert_rows(
                curs,
                self.table(self.table_base),
                self.columns,
                self.json_columns,
                prepared,
                self.conflict,
            )


class RowsAlreadyThereError(Exception):
    """A bulk copy met a row already in the table: the batch is to be written again with
    ``ON CONFLICT DO NOTHING`` (see ``bulk_copies``)."""


_bulk: ContextVar[bool] = ContextVar("bulk_copies", default=False)


@contextmanager
def bulk_copies() -> Iterator[None]:
    """Within: append-only rows go in by binary COPY instead of ``INSERT ... ON CONFLICT DO
    NOTHING``: a fraction of the client's and the server's work. Rows can only be there
    already when the batch was written before (another worker got there first, or rows
    outlived their tracking record); then COPY fails, ``RowsAlreadyThereError`` is raised (the
    transaction is rolled back) and the caller writes the batch again outside, so the
    outcome is the same as the INSERT's."""
    token = _bulk.set(True)
    try:
        yield
    finally:
        _bulk.reset(token)


def copying() -> bool:
    """Whether append-only rows are written by COPY (inside ``bulk_copies``)."""
    return _bulk.get()


def insert_rows(
    curs: Cursor[DictRow],
    table: sql.Identifier,
    columns: dict[str, str],
    json_columns: frozenset[str],
    rows: Sequence[dict[str, Any]],
    conflict: tuple[str, ...],
) -> None:
    """Insert many rows; rows already there (by ``conflict``) are kept (by COPY inside
    ``bulk_copies``, which raises ``RowsAlreadyThereError`` instead when there are some)."""
    if copying():
        copy_rows(curs, table, columns, json_columns, rows)
    else:
        _insert_rows(curs, table, columns, json_columns, rows, conflict)


def copy_rows(
    curs: Cursor[DictRow],
    table: sql.Identifier,
    columns: dict[str, str],
    json_columns: frozenset[str],
    rows: Sequence[dict[str, Any]],
) -> None:
    """Write many rows with one binary COPY; ``RowsAlreadyThereError`` when one is there already."""
    statement = _statement(
        curs,
        ("copy", table.as_string(), tuple(columns)),
        lambda: sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            table, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        ),
    )
    names = tuple(columns)
    try:
        with curs.copy(statement) as copy:
            copy.set_types(list(columns.values()))
            if json_columns:
                for row in rows:
                    copy.write_row(
                        [Jsonb(row[c], json_dumps) if c in json_columns else row[c] for c in names]
                    )
            else:
                for row in rows:
                    copy.write_row([row[c] for c in names])
    except errors.UniqueViolation as error:
        raise RowsAlreadyThereError(str(error)) from error


def _insert_rows(
    curs: Cursor[DictRow],
    table: sql.Identifier,
    columns: dict[str, str],
    json_columns: frozenset[str],
    rows: Sequence[dict[str, Any]],
    conflict: tuple[str, ...],
) -> None:
    """Insert many rows in one statement; rows already there (by ``conflict``) are kept."""
    arrays = _arrays(columns, json_columns, rows)
    curs.execute(
        _statement(
            curs,
            ("insert", table.as_string(), tuple(columns.items()), conflict),
            lambda: sql.SQL("INSERT INTO {} ({}) {} ON CONFLICT ({}) DO NOTHING").format(
                table,
                sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                _unnest(columns),
                sql.SQL(", ").join(sql.Identifier(c) for c in conflict),
            ),
        ),
        arrays,
        binary=True,
    )
