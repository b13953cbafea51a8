"""Console sessions: an API key exchanged for a session cookie, kept in PostgreSQL.

The cookie holds a random token; the ``console_sessions`` table holds only its SHA-256
digest, the key it was opened with, the session's CSRF token and its expiry. Every page
looks the session up joined with ``api_keys`` (revoked keys excluded), so a session holds
across API processes, and revoking the key ends its sessions everywhere at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from rightsledger.security.keys import Principal, Role

TABLE = "console_sessions"
"""Created by migration 3 (``storage/migrations.py``)."""
LIFETIME = timedelta(hours=8)
"""A session ends after this long, signed out or not."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class Session:
    """A signed-in operator: the key's principal and the session's CSRF token."""

    principal: Principal
    csrf_token: str

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent, self.csrf_token)


class ConsoleSessions:
    """Open, find and end console sessions (stateless: safe to build per request)."""

    def __init__(self, pool: ConnectionPool, schema: str, *, lifetime: timedelta = LIFETIME):
        self._pool = pool
        self._table = sql.Identifier(schema, TABLE)
        self._keys = sql.Identifier(schema, "api_keys")
        self.lifetime = lifetime

    def open(self, principal: Principal) -> tuple[str, Session]:
        """A new session for the key; returns the cookie's token (never stored) and it."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (digest, key_id, csrf_token, created_at, expires_at)"
                    " VALUES (%s, %s, %s, %s, %s)"
                ).format(self._table),
                (_digest(token), principal.key_id, csrf, now, now + self.lifetime),
            )
            # expired sessions are not kept
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE expires_at < %s").format(self._table), (now,)
            )
        return token, Session(principal, csrf)

    def find(self, token: str | None) -> Session | None:
        """The live session for a cookie's token: not ended, not expired, key not revoked."""
        if not token:
            return None
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                sql.SQL(
                    "SELECT k.key_id, k.name, k.role, k.partner_id, s.csrf_token"
                    " FROM {} AS s JOIN {} AS k ON k.key_id = s.key_id"
                    " WHERE s.digest = %s AND s.expires_at > now() AND k.revoked_at IS NULL"
                ).format(self._table, self._keys),
                (_digest(token),),
            )
            row = cur.fetchone()
        if row is None:
            return None
        principal = Principal(
            key_id=row["key_id"], name=row["name"], role=Role(row["role"]),
            partner_id=row["partner_id"],
        )
        return Session(principal, row["csrf_token"])

    def end(self, token: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE digest = %s").format(self._table), (_digest(token),)
            )
