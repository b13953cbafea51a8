"""API keys: random bearer tokens stored only as SHA-256 digests, each with a role."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID, uuid4

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from rightsledger.storage.invalidation import Invalidations, notify

TOKEN_PREFIX = "rlk_"  # noqa: S105 - a prefix, not a secret


class Role(StrEnum):
    ADMIN = "admin"
    INTAKE = "intake"
    SUPPORT = "support"
    BILLING = "billing"
    MARKETING = "marketing"
    PRIVACY_OFFICER = "privacy_officer"
    AUDITOR = "auditor"
    PARTNER = "partner"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, its holder's name, its role, and (for partners) which."""

    key_id: UUID
    name: str
    role: Role
    partner_id: UUID | None = None

    @property
    def actor(self) -> str:
        """How this caller is named in the events it causes."""
        return f"{self.role.value}:{self.name}"


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class KeyStoreError(Exception):
    pass


class ApiKeyStore:
    """Keys in their own table; lookups by digest, then a constant-time comparison.

    Keys found valid are cached in the process, but only while ``invalidations`` is
    listening: revoking a key announces it (NOTIFY, in the revoking transaction) and
    every process drops it at once. Without a healthy listener every lookup goes to
    the database.
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
        self._table = sql.Identifier(schema, "api_keys")
        self._cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[Principal, float]] = {}
        self._unknown: dict[bytes, float] = {}
        self._lock = threading.Lock()
        # Bumped by every invalidation: a lookup that raced one is not cached.
        self._generation = 0
        self._unknown_generation = 0
        self._invalidations = invalidations
        if invalidations is not None:
            invalidations.subscribe("api-key", self._forget_key, self.clear_cache)
            invalidations.subscribe(
                "api-key-created", lambda _: self._forget_unknown(), self.clear_cache
            )

    def _trusted(self) -> bool:
        return self._invalidations is not None and self._invalidations.healthy

    def clear_cache(self) -> None:
        with self._lock:
            self._generation += 1
            self._unknown_generation += 1
            self._cache.clear()
            self._unknown.clear()

    def _forget_key(self, key_id: str) -> None:
        with self._lock:
            self._generation += 1
            self._cache = {k: v for k, v in self._cache.items() if str(v[0].key_id) != key_id}

    def _forget_unknown(self) -> None:
        with self._lock:
            self._unknown_generation += 1
            self._unknown.clear()

    def create_table(self) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " key_id uuid PRIMARY KEY,"
                    " name text NOT NULL,"
                    " role text NOT NULL,"
                    " partner_id uuid,"
                    " digest bytea NOT NULL UNIQUE,"
                    " created_at timestamptz NOT NULL,"
                    " revoked_at timestamptz)"
                ).format(self._table)
            )

    def create(
        self, role: Role | str, name: str, partner_id: UUID | None = None
    ) -> tuple[UUID, str]:
        """Create a key and return its id and the token (shown once, never stored)."""
        role = Role(role)
        if not name.strip():
            raise KeyStoreError("a key needs a name")
        if role is Role.PARTNER and partner_id is None:
            raise KeyStoreError("a partner key names the partner it belongs to")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        key_id = uuid4()
        self._insert(key_id, name.strip(), role, partner_id, digest(token))
        return key_id, token

    def seed(self, token: str, *, role: Role = Role.ADMIN, name: str = "seeded admin") -> None:
        """Make a known token valid (RIGHTSLEDGER_ADMIN_KEY); idempotent."""
        if len(token) < 16:
            raise KeyStoreError("a seeded key must be at least 16 characters")
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (key_id, name, role, digest, created_at)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (digest) DO NOTHING"
                ).format(self._table),
                (uuid4(), name, role.value, digest(token), datetime.now(UTC)),
            )
            with conn.cursor() as cur:
                notify(cur, self._schema, "api-key-created", "")

    def _insert(
        self, key_id: UUID, name: str, role: Role, partner_id: UUID | None, key_digest: bytes
    ) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (key_id, name, role, partner_id, digest, created_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s)"
                ).format(self._table),
                (key_id, name, role.value, partner_id, key_digest, datetime.now(UTC)),
            )
            with conn.cursor() as cur:
                notify(cur, self._schema, "api-key-created", "")

    def revoke(self, key_id: UUID) -> bool:
        with self._pool.connection() as conn:
            cur = conn.execute(
                sql.SQL(
                    "UPDATE {} SET revoked_at = %s WHERE key_id = %s AND revoked_at IS NULL"
                ).format(self._table),
                (datetime.now(UTC), key_id),
            )
            changed = cur.rowcount > 0
            # Every process drops the key when this transaction commits.
            notify(cur, self._schema, "api-key", str(key_id))
        self._forget_key(str(key_id))
        return changed

    def cached(self, token: str) -> Principal | None:
        """The principal for a token seen recently, without touching the database."""
        if not self._trusted():
            return None
        key_digest = digest(token)
        with self._lock:
            cached = self._cache.get(key_digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return None

    def authenticate(self, token: str) -> Principal | None:
        """The principal for a bearer token, or None when it is unknown or revoked."""
        key_digest = digest(token)
        now = time.monotonic()
        trusted = self._trusted()
        with self._lock:
            generation = self._generation
            unknown_generation = self._unknown_generation
            cached = self._cache.get(key_digest) if trusted else None
            unknown_until = self._unknown.get(key_digest) if trusted else None
        if cached is not None and cached[1] > now:
            return cached[0]
        if unknown_until is not None and unknown_until > now:
            return None  # a key just found unknown is not looked up again for a while
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                sql.SQL(
                    "SELECT key_id, name, role, partner_id, digest FROM {}"
                    " WHERE digest = %s AND revoked_at IS NULL"
                ).format(self._table),
                (key_digest,),
            )
            row = cur.fetchone()
        if row is None or not hmac.compare_digest(bytes(row["digest"]), key_digest):
            with self._lock:
                if not trusted or unknown_generation != self._unknown_generation:
                    return None
                if len(self._unknown) > 10_000:
                    self._unknown.clear()
                self._unknown[key_digest] = now + 5.0
            return None
        principal = Principal(
            key_id=row["key_id"],
            name=row["name"],
            role=Role(row["role"]),
            partner_id=row["partner_id"],
        )
        with self._lock:
            if trusted and generation == self._generation:
                self._cache[key_digest] = (principal, now + self._cache_seconds)
        return principal


class AuthGuard:
    """Failed authentications: recorded in ``auth_failures`` and limited per client.

    More than ``allowed`` failures from one client within ``window`` seconds and that
    client is refused (429) until the window has moved on, valid key or not.
    """

    def __init__(
        self, pool: ConnectionPool, schema: str, *, allowed: int = 10, window: float = 60.0
    ) -> None:
        self._pool = pool
        self._table = sql.Identifier(schema, "auth_failures")
        self.allowed = allowed
        self.window = window
        self._failures: dict[str, list[float]] = {}
        self._recorded = 0
        self._lock = threading.Lock()

    def create_table(self) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY,"
                    " client text NOT NULL, reason text NOT NULL, at timestamptz NOT NULL)"
                ).format(self._table)
            )

    def retry_after(self, client: str) -> int | None:
        """Seconds until the client may try again, or None when it is not limited."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < self.window]
            self._failures[client] = recent
            if len(recent) < self.allowed:
                return None
            return max(1, int(self.window - (now - recent[0])) + 1)

    def failed(self, client: str, reason: str) -> None:
        with self._lock:
            self._failures.setdefault(client, []).append(time.monotonic())
            self._recorded += 1
            prune = self._recorded % 1000 == 0
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL("INSERT INTO {} (client, reason, at) VALUES (%s, %s, %s)").format(
                    self._table
                ),
                (client, reason, datetime.now(UTC)),
            )
            if prune:  # keep 90 days of failed authentications
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE at < now() - interval '90 days'").format(
                        self._table
                    )
                )
