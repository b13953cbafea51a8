"""Access exports: the documents delivered to customers, kept until the customer is erased."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool


class ExportStore:
    """Table ``request_exports``: one JSON document per access request."""

    def __init__(self, pool: ConnectionPool, schema: str) -> None:
        self._pool = pool
        self._table = sql.Identifier(schema, "request_exports")

    def create_table(self) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " request_id uuid PRIMARY KEY,"
                    " customer_id uuid NOT NULL,"
                    " digest text NOT NULL,"
                    " document jsonb NOT NULL,"
                    " created_at timestamptz NOT NULL)"
                ).format(self._table)
            )

    def save(self, request_id: UUID, customer_id: UUID, digest: str, document: Any) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (request_id, customer_id, digest, document, created_at)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (request_id) DO UPDATE SET"
                    " digest = EXCLUDED.digest, document = EXCLUDED.document"
                ).format(self._table),
                (request_id, customer_id, digest, Jsonb(document), datetime.now(UTC)),
            )

    def get(self, request_id: UUID) -> dict[str, Any] | None:
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as curs:
            curs.execute(
                sql.SQL("SELECT * FROM {} WHERE request_id = %s").format(self._table),
                (request_id,),
            )
            row = curs.fetchone()
        return dict(row) if row else None

    def delete_for_customer(self, customer_id: UUID) -> int:
        with self._pool.connection() as conn:
            cur = conn.execute(
                sql.SQL("DELETE FROM {} WHERE customer_id = %s").format(self._table),
                (customer_id,),
            )
            return cur.rowcount

    def redact_activity(self, customer_id: UUID, *, kept: set[str], placeholder: str) -> int:
        """Replace the ``detail`` of every activity entry in the customer's exports that is
        not in ``kept`` (the entries the customer's record still holds) with
        ``placeholder``: an entry purged under its retention schedule is no more readable
        in an export delivered before the purge than in the log. Idempotent; the digest
        stays that of the export as delivered. How many entries were redacted."""
        redacted = 0
        with self._pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                sql.SQL(
                    "SELECT request_id, document FROM {} WHERE customer_id = %s FOR UPDATE"
                ).format(self._table),
                (customer_id,),
            ).fetchall()
            for request_id, document in rows:
                entries = document.get("categories", {}).get("activity", {}).get("entries", [])
                changed = 0
                for entry in entries:
                    purged = str(entry.get("entry_id")) not in kept
                    if purged and entry.get("detail") != placeholder:
                        entry["detail"] = placeholder
                        changed += 1
                if changed:
                    conn.execute(
                        sql.SQL("UPDATE {} SET document = %s WHERE request_id = %s").format(
                            self._table
                        ),
                        (Jsonb(document), request_id),
                    )
                    redacted += changed
        return redacted

