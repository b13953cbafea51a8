"""Data keys, one per subject: destroying a key makes what it sealed unreadable forever.

Each customer has a *personal* key (identity, contact, account data, activity
details) and a *retained* key (billing records and the payment processor's token,
kept until their retention date). Each data-rights request has a personal key of
its own, linked to its customer, for the requester's statement, documents and the
reasons given. Keys live in their own table, behind ``KeyVault``, so a KMS can take
its place.

Apart from the data keys, the vault keeps the *index key*: the HMAC key of the blind
index (``rightsledger.projections.lookup``), which lets a customer be found by email,
phone or account reference without any searchable clear text in the store. It seals
nothing, is never destroyed, and lives in a table of its own (``index_keys``), so no
operation on data keys can reach it. It is created once, by whichever process asks
first, and shared by all of them.

Activity is sealed with *period keys*: one per customer, purpose and calendar month the
entries occurred in (``period_key_id``), personal keys (an erasure destroys them with the
rest) that also record their scope (category, purpose, end of the period), so the sweep
finds the keys whose period has passed its retention schedule and destroys only those.
Activity logged before period keys existed stays sealed with the customer's personal key.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import Cursor, sql
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from rightsledger.storage.invalidation import Invalidations, notify

PERSONAL = "personal"
RETAINED = "retained"
INDEX_KEY = "blind-index"
"""The name of the blind index's HMAC key in ``index_keys``."""
_RETAINED_NAMESPACE = uuid.UUID("0c4c0f3b-5a55-4a0f-9d3e-7c5b7a1f2e10")


_PERIOD_NAMESPACE = uuid.UUID("6a1d5e0c-93f4-4c1b-8d0e-2b7f4f3c9a51")


def retained_key_id(customer_id: UUID) -> UUID:
    """The id of a customer's retained-records key."""
    return uuid.uuid5(_RETAINED_NAMESPACE, str(customer_id))


@dataclass(frozen=True)
class KeyScope:
    """What a period key seals: one category's entries, logged for one purpose, in one
    period ending at ``period_end``."""

    category: str
    purpose: str
    period: str
    period_end: datetime


def period_key_id(customer_id: UUID, scope: KeyScope) -> UUID:
    """The id of a customer's key for one category, purpose and period."""
    name = f"{customer_id}/{scope.category}/{scope.purpose}/{scope.period}"
    return uuid.uuid5(_PERIOD_NAMESPACE, name)


@dataclass(frozen=True)
class NewKey:
    """A data key made for events about to be stored, written in their transaction
    (``insert_new_keys``): it exists exactly when they do."""

    key_id: UUID
    customer_id: UUID
    kind: str
    key: bytes = field(repr=False)


def insert_new_keys(curs: Cursor[Any], schema: str, keys: Sequence[NewKey]) -> None:
    """Inside the events' transaction: the keys their values are sealed under. A key id
    already there fails the transaction (``UniqueViolation``): never two keys for one id."""
    now = datetime.now(UTC)
    curs.execute(
        _insert_keys_statement(schema),
        (
            now,
            [k.key_id for k in keys],
            [k.customer_id for k in keys],
            [k.kind for k in keys],
            [k.key for k in keys],
        ),
    )


@functools.cache
def _insert_keys_statement(schema: str) -> sql.SQL:
    """Composed once per schema; the arrays go in binary (psycopg's text form of a list
    of ids or of bytes costs several times as much)."""
    return sql.SQL(
        sql.SQL(
            "INSERT INTO {} (key_id, customer_id, kind, key, created_at)"
            " SELECT *, %s FROM unnest(%b::uuid[], %b::uuid[], %b::text[], %b::bytea[])"
        )
        .format(sql.Identifier(schema, "subject_keys"))
        .as_string()
    )


class KeyVault(ABC):
    """Where data keys are created, read and destroyed, and the blind index's key kept."""

    def reserve(self, key_id: UUID, *, customer_id: UUID, kind: str) -> NewKey | None:
        """A key for values of events not stored yet, when it is most likely not there (a
        new customer's or request's own): made here and written with the events
        (``NewKey``), so creating it costs no round trip of its own; ``key`` answers it
        meanwhile in this process. None: the key was created (or found) at once instead,
        which is what this does by default."""
        self.key(key_id, customer_id=customer_id, kind=kind, new=True)
        return None

    def settle(self, keys: Sequence[NewKey], *, stored: bool) -> None:  # noqa: B027
        """The events ``keys`` were reserved for were stored (``stored``), or not: the keys
        are then kept like any key read from the store, or forgotten. Nothing by default."""

    @abstractmethod
    def key(
        self,
        key_id: UUID,
        *,
        customer_id: UUID | None,
        kind: str,
        scope: KeyScope | None = None,
        new: bool = False,
    ) -> bytes | None:
        """The key, created when missing (needs ``customer_id``, and ``scope`` for a period
        key); None once destroyed. ``new`` says the key is most likely not there yet (the
        first value of a new customer or request): it is then created first and read only
        when it was there after all."""

    def prefetch(self, key_ids: Iterable[UUID]) -> None:  # noqa: B027 (a no-op by default)
        """Read now, in one go, the keys among ``key_ids`` not at hand, so that ``key`` finds
        them without a round trip each (many events decoded at once). Keys that are not
        there are left to ``key``. Nothing by default."""

    @abstractmethod
    def destroy(self, customer_id: UUID, kind: str) -> int:
        """Destroy every key of that kind belonging to the customer; how many were."""

    @abstractmethod
    def index_key(self) -> bytes:
        """The blind index's HMAC key (32 bytes): created once, the same for every process,
        separate from the data keys and never destroyed."""

    @abstractmethod
    def customers_with_periods_ended(
        self, *, category: str, purpose: str, ended_by: datetime, limit: int
    ) -> list[UUID]:
        """Customers holding a live period key of ``category`` and ``purpose`` whose period
        ended on or before ``ended_by``."""

    @abstractmethod
    def destroy_periods(
        self, customer_id: UUID, *, category: str, purpose: str, ended_by: datetime
    ) -> Sequence[str]:
        """Destroy the customer's period keys of ``category`` and ``purpose`` whose period ended
        on or before ``ended_by``; the periods destroyed."""


@contextmanager
def _autocommit(conn: psycopg.Connection[TupleRow]) -> Iterator[None]:
    """The pooled connection in autocommit mode for the block, as it was after."""
    conn.autocommit = True
    try:
        yield
    finally:
        if not conn.closed:
            with suppress(psycopg.Error):  # a broken connection: the pool discards it
                conn.autocommit = False


class PostgresKeyVault(KeyVault):
    """Keys in table ``subject_keys``, cached in the process while ``invalidations`` listens.

    Destroying a customer's keys announces it in the destroying transaction; every
    process drops that customer's cached keys when it commits. Without a healthy
    listener no key is cached.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        schema: str,
        *,
        invalidations: Invalidations | None = None,
        cache_seconds: float = 300.0,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._table = sql.Identifier(schema, "subject_keys")
        self._index_table = sql.Identifier(schema, "index_keys")
        self._index_key: bytes | None = None
        # key id -> (key or None once destroyed, customer id, expiry)
        self._cache: dict[UUID, tuple[bytes | None, UUID, float]] = {}
        # key id -> key reserved for events being stored (``reserve``) and the cache's
        # generation then, until ``settle``
        self._reserved: dict[UUID, tuple[NewKey, int]] = {}
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._generation = 0
        self._invalidations = invalidations
        if invalidations is not None:
            invalidations.subscribe("customer-keys", self._forget_customer, self.clear_cache)

    def _trusted(self) -> bool:
        return self._invalidations is not None and self._invalidations.healthy

    def clear_cache(self) -> None:
        with self._lock:
            self._generation += 1
            self._cache.clear()

    def _forget_customer(self, customer_id: str) -> None:
        with self._lock:
            self._generation += 1
            self._cache = {k: v for k, v in self._cache.items() if str(v[1]) != customer_id}

    def create_table(self) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " key_id uuid PRIMARY KEY,"
                    " customer_id uuid NOT NULL,"
                    " kind text NOT NULL,"
                    " key bytea,"
                    " created_at timestamptz NOT NULL,"
                    " destroyed_at timestamptz)"
                ).format(self._table)
            )
            conn.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS subject_keys_customer ON {} (customer_id)"
                ).format(self._table)
            )

    def create_index_key_table(self) -> None:
        """The table of the index key (``index_keys``: name, key, created_at)."""
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " name text PRIMARY KEY,"
                    " key bytea NOT NULL,"
                    " created_at timestamptz NOT NULL)"
                ).format(self._index_table)
            )

    def index_key(self) -> bytes:
        """Read once per process (it never changes); the first process to ask creates it, and
        a process racing it reads the winner's key (``ON CONFLICT DO NOTHING``)."""
        if self._index_key is not None:
            return self._index_key
        select = sql.SQL("SELECT key FROM {} WHERE name = %s").format(self._index_table)
        with self._pool.connection() as conn:
            row = conn.execute(select, (INDEX_KEY,)).fetchone()
            if row is None:
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (name, key, created_at) VALUES (%s, %s, %s)"
                        " ON CONFLICT (name) DO NOTHING"
                    ).format(self._index_table),
                    (INDEX_KEY, os.urandom(32), datetime.now(UTC)),
                )
                row = conn.execute(select, (INDEX_KEY,)).fetchone()
        assert row is not None
        key = bytes(row[0])
        with self._lock:
            self._index_key = key
        return key

    def key(
        self,
        key_id: UUID,
        *,
        customer_id: UUID | None,
        kind: str,
        scope: KeyScope | None = None,
        new: bool = False,
    ) -> bytes | None:
        now = time.monotonic()
        trusted = self._trusted()
        with self._lock:
            reserved = self._reserved.get(key_id)
            generation = self._generation
            cached = self._cache.get(key_id) if trusted else None
        if reserved is not None:
            return reserved[0].key
        if cached is not None and cached[2] > now:
            return cached[0]
        select = sql.SQL("SELECT key, customer_id FROM {} WHERE key_id = %s").format(self._table)
        # each statement stands alone (a key is created at most once: ON CONFLICT), so no
        # transaction is opened and none has to be committed afterwards (a round trip)
        with self._pool.connection() as conn, _autocommit(conn):
            row = (
                None
                if new and customer_id is not None
                else conn.execute(select, (key_id,)).fetchone()
            )
            if row is None:
                if customer_id is None:
                    msg = f"no data key {key_id} and no customer to create it for"
                    raise LookupError(msg)
                if scope is None:
                    created = conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (key_id, customer_id, kind, key, created_at)"
                            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key_id) DO NOTHING"
                            " RETURNING key, customer_id"
                        ).format(self._table),
                        (key_id, customer_id, kind, os.urandom(32), datetime.now(UTC)),
                    )
                else:
                    created = conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (key_id, customer_id, kind, key, created_at,"
                            " category, purpose, period, period_end)"
                            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                            " ON CONFLICT (key_id) DO NOTHING RETURNING key, customer_id"
                        ).format(self._table),
                        (
                            key_id,
                            customer_id,
                            kind,
                            os.urandom(32),
                            datetime.now(UTC),
                            scope.category,
                            scope.purpose,
                            scope.period,
                            scope.period_end,
                        ),
                    )
                # created here, or (another process raced it) read back
                row = created.fetchone() or conn.execute(select, (key_id,)).fetchone()
        assert row is not None
        value = bytes(row[0]) if row[0] is not None else None
        with self._lock:
            if trusted and generation == self._generation:
                self._cache[key_id] = (value, row[1], now + self._cache_seconds)
        return value

    def reserve(self, key_id: UUID, *, customer_id: UUID, kind: str) -> NewKey | None:
        new = NewKey(key_id, customer_id, kind, os.urandom(32))
        with self._lock:
            self._reserved[key_id] = (new, self._generation)
        return new

    def settle(self, keys: Sequence[NewKey], *, stored: bool) -> None:
        if not keys:
            return
        trusted = self._trusted()
        expiry = time.monotonic() + self._cache_seconds
        with self._lock:
            for new in keys:
                reserved = self._reserved.get(new.key_id)
                if reserved is None or reserved[0] is not new:
                    continue
                del self._reserved[new.key_id]
                # cached only when no key was destroyed anywhere since it was reserved (the
                # store may have destroyed it once stored)
                if stored and trusted and reserved[1] == self._generation:
                    self._cache[new.key_id] = (new.key, new.customer_id, expiry)

    def prefetch(self, key_ids: Iterable[UUID]) -> None:
        if not self._trusted():
            return  # nothing is cached: each key is read when it is needed
        now = time.monotonic()
        with self._lock:
            generation = self._generation
            cache = self._cache
            missing = list({k for k in key_ids if (c := cache.get(k)) is None or c[2] <= now})
        if not missing:
            return
        with self._pool.connection() as conn, _autocommit(conn):
            rows = conn.execute(
                sql.SQL("SELECT key_id, key, customer_id FROM {} WHERE key_id = ANY(%s)").format(
                    self._table
                ),
                (missing,),
            ).fetchall()
        expiry = now + self._cache_seconds
        with self._lock:
            if generation == self._generation:  # nothing was destroyed meanwhile
                for key_id, value, customer_id in rows:
                    self._cache[key_id] = (
                        bytes(value) if value is not None else None,
                        customer_id,
                        expiry,
                    )

    def destroy(self, customer_id: UUID, kind: str) -> int:
        with self._pool.connection() as conn:
            rows = conn.execute(
                sql.SQL(
                    "UPDATE {} SET key = NULL, destroyed_at = %s"
                    " WHERE customer_id = %s AND kind = %s AND key IS NOT NULL RETURNING key_id"
                ).format(self._table),
                (datetime.now(UTC), customer_id, kind),
            ).fetchall()
            with conn.cursor() as cur:
                # Every process drops this customer's cached keys when this commits.
                notify(cur, self._schema, "customer-keys", str(customer_id))
        self._forget_customer(str(customer_id))
        return len(rows)

    def customers_with_periods_ended(
        self, *, category: str, purpose: str, ended_by: datetime, limit: int
    ) -> list[UUID]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                sql.SQL(
                    "SELECT customer_id FROM {} WHERE key IS NOT NULL AND period_end IS NOT NULL"
                    " AND category = %s AND purpose = %s AND period_end <= %s"
                    " GROUP BY customer_id ORDER BY min(period_end), customer_id LIMIT %s"
                ).format(self._table),
                (category, purpose, ended_by, limit),
            ).fetchall()
        return [row[0] for row in rows]

    def destroy_periods(
        self, customer_id: UUID, *, category: str, purpose: str, ended_by: datetime
    ) -> list[str]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                sql.SQL(
                    "UPDATE {} SET key = NULL, destroyed_at = %s"
                    " WHERE customer_id = %s AND category = %s AND purpose = %s"
                    " AND period_end <= %s AND key IS NOT NULL RETURNING period"
                ).format(self._table),
                (datetime.now(UTC), customer_id, category, purpose, ended_by),
            ).fetchall()
            if rows:
                with conn.cursor() as cur:
                    # every process drops this customer's cached keys (and decrypted copies)
                    notify(cur, self._schema, "customer-keys", str(customer_id))
        if rows:
            self._forget_customer(str(customer_id))
        return sorted(row[0] for row in rows)


def add_period_columns(conn: psycopg.Connection[TupleRow], schema: str) -> None:
    """Period keys' scope (category, purpose, period, its end) in ``subject_keys``, and the
    index the sweep finds ended periods by; other keys leave them NULL."""
    table = sql.Identifier(schema, "subject_keys")
    for column, kind in (
        ("category", "text"),
        ("purpose", "text"),
        ("period", "text"),
        ("period_end", "timestamptz"),
    ):
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                table, sql.Identifier(column), sql.SQL(kind)
            )
        )
    conn.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS subject_keys_live_periods ON {}"
            " (category, purpose, period_end) WHERE key IS NOT NULL AND period_end IS NOT NULL"
        ).format(table)
    )


def register_logged_periods(
    conn: psycopg.Connection[TupleRow], schema: str, env: Mapping[str, str]
) -> int:
    """Create the period key of every (customer, purpose, month) the log already holds
    activity for, unless the customer was erased; how many were created. Activity logged
    before period keys is sealed with the customer's key, which a purge cannot destroy
    alone; its period's key lets the sweep find it when its schedule passes, record it
    purged, and destroy the key that new entries of that month would use."""
    from rightsledger.domain.customer import Customer
    from rightsledger.domain.ledger import RightsLedger
    from rightsledger.domain.naming import register_names, stored_names
    from rightsledger.domain.retention import activity_period

    table = sql.Identifier(schema, "subject_keys")
    erased = {
        row[0]
        for row in conn.execute(
            sql.SQL("SELECT key_id FROM {} WHERE kind = %s AND key IS NULL").format(table),
            (PERSONAL,),
        ).fetchall()
    }
    periods: dict[UUID, tuple[UUID, KeyScope]] = {}  # key id -> customer, scope
    reader = RightsLedger(
        {**env, "CREATE_TABLE": "n", "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "0"}
    )
    try:
        position = 0
        register_names()
        topics = list(stored_names(Customer.ActivityLogged))
        while True:
            page = reader.recorder.select_notifications(
                start=position, limit=1000, topics=topics, inclusive_of_start=False
            )
            if not page:
                break
            for notification in page:
                event = reader.mapper.to_domain_event(notification)  # detail stays sealed
                if not isinstance(event, Customer.ActivityLogged) or event.originator_id in erased:
                    continue
                period = activity_period(event.occurred_at)
                scope = KeyScope("activity", event.reason, period.label, period.end)
                periods[period_key_id(event.originator_id, scope)] = (event.originator_id, scope)
            position = page[-1].id
    finally:
        reader.close()
    created = 0
    for key_id, (customer_id, scope) in periods.items():
        created += conn.execute(
            sql.SQL(
                "INSERT INTO {} (key_id, customer_id, kind, key, created_at,"
                " category, purpose, period, period_end)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key_id) DO NOTHING"
            ).format(table),
            (
                key_id,
                customer_id,
                PERSONAL,
                os.urandom(32),
                datetime.now(UTC),
                scope.category,
                scope.purpose,
                scope.period,
                scope.period_end,
            ),
        ).rowcount
    return created
