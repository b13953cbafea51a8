"""Versioned schema migrations: the schema is created once, by one process, before use.

Every table lives in the configured schema; ``<schema>.schema_migrations`` (version, name,
applied_at) lists the migrations applied there. :func:`migrate` takes a session-level
PostgreSQL advisory lock, ``pg_advisory_lock(hashtext('rightsledger.migrate.<schema>'))``, on
a connection of its own, creates the schema and ``schema_migrations`` if need be, and applies
the steps of :data:`MIGRATIONS` not listed there, in order, recording each. A second process
that starts meanwhile blocks on the same lock and then finds every step applied. Without the
lock, two processes creating the same tables at once fail (``tuple concurrently updated``).

``bootstrap.build`` calls :func:`migrate` before it builds anything that touches a table, and
then builds eventsourcing's recorders with ``CREATE_TABLE=n``; ``rightsledger migrate`` applies
the migrations alone (a deployment step).

A new table, index or column is a new step at the end of :data:`MIGRATIONS` (never an edit of
an applied one). A step runs inside a transaction on the locked connection (``Step.conn``), so
a step written in SQL on that connection commits with its ``schema_migrations`` row or not at
all; step 1 creates the tables with the code each part has for it, on connections of its own,
with ``IF NOT EXISTS`` throughout, so it is also safe on a schema made before migrations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

log = logging.getLogger(__name__)

TABLE = "schema_migrations"


def lock_key(schema: str) -> str:
    """The advisory lock's key text, hashed with ``hashtext``."""
    return f"rightsledger.migrate.{schema}"


@dataclass(frozen=True)
class Step:
    """What a migration step gets: the server, the schema, the eventsourcing environment for
    it (``CREATE_TABLE=y``), and the connection holding the lock, inside a transaction."""

    url: str
    schema: str
    env: Mapping[str, str]
    conn: psycopg.Connection[TupleRow]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Step], None]


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    applied_at: datetime


def _initial_tables(step: Step) -> None:
    """Every table as the service had it before migrations, created by each part's own code
    in the order ``bootstrap.build`` used to: key vault, event store (events, hash chain,
    checkpoints), views and their tracking tables, API keys, idempotency keys, failed
    authentications, exports, and the request workers' and the relay's tracking tables."""
    from psycopg_pool import ConnectionPool

    from rightsledger.domain.ledger import RightsLedger
    from rightsledger.projections.worker import ViewSet
    from rightsledger.security.keys import ApiKeyStore, AuthGuard
    from rightsledger.storage.exports import ExportStore
    from rightsledger.storage.idempotency import IdempotencyStore
    from rightsledger.storage.keyvault import PostgresKeyVault
    from rightsledger.workers.relay import Relay
    from rightsledger.workers.requests import RequestWorker, open_tracking

    env = {**step.env, "CREATE_TABLE": "y", "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "1"}
    with ConnectionPool(step.url, min_size=1, max_size=1, open=True) as pool:
        PostgresKeyVault(pool, step.schema).create_table()
        RightsLedger(env).close()  # events, stored-event type, chain, checkpoints
        ViewSet.open(env, pool_size=1).close()
        ApiKeyStore(pool, step.schema).create_table()
        IdempotencyStore(pool, step.schema).create_table()
        AuthGuard(pool, step.schema).create_table()
        ExportStore(pool, step.schema).create_table()
    for name in (RequestWorker.name, Relay.name):
        open_tracking(env, name).datastore.close()


def _follower_status(step: Step) -> None:
    """Each follower's state, position and heartbeat (``storage/followers.py``)."""
    from psycopg_pool import ConnectionPool

    from rightsledger.storage.followers import FollowerBoard

    with ConnectionPool(step.url, min_size=1, max_size=1, open=True) as pool:
        FollowerBoard(pool, step.schema).create_table()


def _lookup_and_partners(step: Step) -> None:
    """The blind index's key table (``index_keys``), the lookup view (``customer_lookup``) and
    the partners view (``partners``, ``partner_requests``, ``partner_notifications``)."""
    from psycopg_pool import ConnectionPool

    from rightsledger.projections.lookup import CustomerLookupView
    from rightsledger.projections.partners import PartnersView
    from rightsledger.projections.worker import open_datastore
    from rightsledger.storage.keyvault import PostgresKeyVault

    with ConnectionPool(step.url, min_size=1, max_size=1, open=True) as pool:
        PostgresKeyVault(pool, step.schema).create_index_key_table()
    datastore = open_datastore(dict(step.env), pool_size=1)
    try:
        for view_cls in (CustomerLookupView, PartnersView):
            view_cls(datastore).create_table()
    finally:
        datastore.close()


def _period_keys(step: Step) -> None:
    """Data keys per retention period: their scope in ``subject_keys``, and the period keys of
    the months that already hold activity (``storage/keyvault.py``), so the retention sweep
    finds activity logged before period keys existed."""
    from rightsledger.storage.keyvault import add_period_columns, register_logged_periods

    add_period_columns(step.conn, step.schema)
    register_logged_periods(step.conn, step.schema, step.env)


def _console_sessions(step: Step) -> None:
    """Console sessions (``api/console/sessions.py``): the digest of the cookie's token, the
    API key it was opened with, its CSRF token and expiry."""
    table = sql.Identifier(step.schema, "console_sessions")
    step.conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (digest bytea PRIMARY KEY, key_id uuid NOT NULL,"
            " csrf_token text NOT NULL, created_at timestamptz NOT NULL,"
            " expires_at timestamptz NOT NULL)"
        ).format(table)
    )
    step.conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS console_sessions_key_idx ON {} (key_id)").format(table)
    )


def _key_last_use(step: Step) -> None:
    """When each API key was last used (``api_keys.last_used_at``, for ``keys list``)."""
    from rightsledger.security.keys import ApiKeyStore

    ApiKeyStore.add_last_used(step.conn, step.schema)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial tables", _initial_tables),
    Migration(2, "follower status", _follower_status),
    Migration(3, "blind index key, lookup and partners views", _lookup_and_partners),
    Migration(4, "retention period keys", _period_keys),
    Migration(5, "console sessions", _console_sessions),
    Migration(6, "api key last use", _key_last_use),
)
"""Every migration, in version order; append, never edit."""


def migrate(
    url: str,
    schema: str,
    env: Mapping[str, str],
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> list[Migration]:
    """Apply the migrations not yet applied to ``schema``, under the schema's advisory lock;
    return those this call applied (empty when another process had applied them all).

    ``env`` is the eventsourcing environment of the schema (``bootstrap.ledger_env``).
    """
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError(f"migration versions must be unique and ascending: {versions}")
    key = lock_key(schema)
    done: list[Migration] = []
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
        if not (row and row[0]):
            log.info("waiting for another process's migrations of schema %s", schema)
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        try:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            table = sql.Identifier(schema, TABLE)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY,"
                    " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(table)
            )
            applied = {r[0] for r in conn.execute(sql.SQL("SELECT version FROM {}").format(table))}
            for migration in migrations:
                if migration.version in applied:
                    continue
                log.info(
                    "schema %s: applying migration %d (%s)",
                    schema,
                    migration.version,
                    migration.name,
                )
                with conn.transaction():
                    migration.apply(Step(url, schema, env, conn))
                    conn.execute(
                        sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(table),
                        (migration.version, migration.name),
                    )
                done.append(migration)
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
    return done


def applied(url: str, schema: str) -> list[Applied]:
    """The migrations recorded in ``schema``, in version order (empty before the first)."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".{TABLE}',)).fetchone()
        if not exists or exists[0] is None:
            return []
        rows = conn.execute(
            sql.SQL("SELECT version, name, applied_at FROM {} ORDER BY version").format(
                sql.Identifier(schema, TABLE)
            )
        ).fetchall()
    return [Applied(version, name, at) for version, name, at in rows]
