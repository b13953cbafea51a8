"""API keys: random bearer tokens stored only as SHA-256 digests, each with a role."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from psycopg import Connection, sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from rightsledger.storage.invalidation import Invalidations, notify

log = logging.getLogger(__name__)

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


SEEDED_NAME = "seeded admin"
SEEDED_KEY_ID = UUID("5eed0000-0000-4000-8000-000000000001")
"""The one key RIGHTSLEDGER_ADMIN_KEY makes valid: the same id on every start."""


@dataclass(frozen=True)
class KeyInfo:
    """What ``keys list`` shows of a key."""

    key_id: UUID
    name: str
    role: str
    partner_id: UUID | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


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

    @staticmethod
    def add_last_used(conn: Connection[Any], schema: str) -> None:
        """``api_keys.last_used_at`` (a migration, on its connection)."""
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS last_used_at timestamptz").format(
                sql.Identifier(schema, "api_keys")
            )
        )

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

    def seed(self, token: str, *, role: Role = Role.ADMIN, name: str = SEEDED_NAME) -> UUID:
        """Make a known token (RIGHTSLEDGER_ADMIN_KEY) the one seeded key; return its id.

        The seeded key is one row with a fixed id: a start with the same token changes
        nothing, a start with another token replaces the digest (the old token stops working
        in every process at once). Seeded keys of earlier versions (random ids, the seeded
        name) are revoked. A seeded key that was revoked stays revoked for the same token.
        """
        if len(token) < 16:
            raise KeyStoreError("a seeded key must be at least 16 characters")
        key_digest = digest(token)
        now = datetime.now(UTC)
        dropped: list[UUID] = []
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"rightsledger.seed.{self._schema}",)
            )
            cur.execute(
                sql.SQL(
                    "SELECT key_id, digest, revoked_at IS NULL FROM {}"
                    " WHERE key_id = %s OR digest = %s"
                    " OR (name = %s AND role = %s AND partner_id IS NULL AND revoked_at IS NULL)"
                ).format(self._table),
                (SEEDED_KEY_ID, key_digest, name, role.value),
            )
            rows = {row[0]: (bytes(row[1]), bool(row[2])) for row in cur.fetchall()}
            # the row that has this token already (revoked or not) is the one seeded key
            keep = next((k for k, (d, _) in rows.items() if d == key_digest), None)
            if keep is None:
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (key_id, name, role, digest, created_at)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key_id) DO UPDATE SET"
                        " name = excluded.name, role = excluded.role, partner_id = NULL,"
                        " digest = excluded.digest, created_at = excluded.created_at,"
                        " revoked_at = NULL, last_used_at = NULL"
                    ).format(self._table),
                    (SEEDED_KEY_ID, name, role.value, key_digest, now),
                )
                keep = SEEDED_KEY_ID
                if SEEDED_KEY_ID in rows:
                    dropped.append(SEEDED_KEY_ID)  # its old token is cached somewhere
            others = [k for k, (_, active) in rows.items() if k != keep and active]
            if keep in rows and not rows[keep][1]:
                log.warning("RIGHTSLEDGER_ADMIN_KEY is a revoked key (%s): it stays revoked", keep)
            if others:
                cur.execute(
                    sql.SQL(
                        "UPDATE {} SET revoked_at = %s WHERE key_id = ANY(%s)"
                        " AND revoked_at IS NULL"
                    ).format(self._table),
                    (now, others),
                )
                dropped += others
            for key_id in dropped:
                notify(cur, self._schema, "api-key", str(key_id))
            notify(cur, self._schema, "api-key-created", "")
        for key_id in dropped:
            self._forget_key(str(key_id))
        return keep

    def list(self) -> list[KeyInfo]:
        """Every key, revoked ones included, oldest first (never a digest or a token)."""
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                sql.SQL(
                    "SELECT key_id, name, role, partner_id, created_at, last_used_at, revoked_at"
                    " FROM {} ORDER BY created_at, key_id"
                ).format(self._table)
            )
            return [KeyInfo(**row) for row in cur.fetchall()]

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
            if row is not None:
                # when a key was last used, to the key cache's lifetime (a cached key is not
                # looked up again): one write a minute per key at most
                cur.execute(
                    sql.SQL(
                        "UPDATE {} SET last_used_at = now() WHERE key_id = %s AND"
                        " (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"
                    ).format(self._table),
                    (row["key_id"],),
                )
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


def key_hash(token: str) -> str:
    """How a presented key is named where failures are counted and recorded: a prefix of
    its SHA-256 digest (never the key)."""
    return digest(token).hex()[:16]


class _Window:
    """Failure times per name within a sliding window, for at most ``capacity`` names."""

    def __init__(self, window: float, capacity: int) -> None:
        self.window = window
        self.capacity = capacity
        self._times: dict[str, deque[float]] = {}

    def add(self, name: str, now: float) -> None:
        times = self._times.pop(name, None) or deque()
        times.append(now)
        self._times[name] = times  # most recently failed last
        if len(self._times) > self.capacity:
            self._prune(now)

    def recent(self, name: str, now: float) -> deque[float]:
        times = self._times.get(name)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._times[name]
        return times

    def _prune(self, now: float) -> None:
        """Forget names with no failure in the window; then the longest quiet ones."""
        for name in [n for n, t in self._times.items() if not t or now - t[-1] >= self.window]:
            del self._times[name]
        while len(self._times) > self.capacity:
            del self._times[next(iter(self._times))]

    def __len__(self) -> int:
        return len(self._times)


class AuthGuard:
    """Failed authentications: limited per client address and per presented key, and recorded
    in ``auth_failures`` (pruned by age and capped in rows).

    The client address is the connection's peer, or what a trusted proxy reported for it
    (``RIGHTSLEDGER_TRUSTED_PROXIES``; nothing else can name an address). More than
    ``allowed`` failures within ``window`` seconds and:

    - from one address: that address is refused (429) until the window has moved on, for
      any key it has not used successfully before: guessing from it stops, while a key that
      already worked from there (a colleague behind the same NAT or proxy) goes on working;
    - with one presented key (by its digest): that key is refused from every address.

    A valid key never fails, so no one's failures can limit a valid key itself; and failures
    count only against the address they came from. Counts are kept in each process.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        schema: str,
        *,
        allowed: int = 10,
        window: float = 60.0,
        keep_days: int = 90,
        keep_rows: int = 100_000,
        tracked: int = 10_000,
        remember_seconds: float = 86_400.0,
    ) -> None:
        self._pool = pool
        self._table = sql.Identifier(schema, "auth_failures")
        self.allowed = allowed
        self.window = window
        self.keep_days = keep_days
        self.keep_rows = keep_rows
        self.remember_seconds = remember_seconds
        self.tracked = tracked
        self._by_client = _Window(window, tracked)
        self._by_key = _Window(window, tracked)
        # (client, key hash) pairs that authenticated, and until when they are remembered
        self._worked: OrderedDict[tuple[str, str], float] = OrderedDict()
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

    def _wait(self, times: deque[float], now: float) -> int | None:
        if len(times) < self.allowed:
            return None
        return max(1, int(self.window - (now - times[0])) + 1)

    def retry_after(self, client: str, key: str | None = None) -> int | None:
        """Seconds until this client may try this key (a :func:`key_hash`, None when no key
        was presented), or None when it is not limited."""
        now = time.monotonic()
        with self._lock:
            if key is not None:
                wait = self._wait(self._by_key.recent(key, now), now)
                if wait is not None:
                    return wait
            wait = self._wait(self._by_client.recent(client, now), now)
            if wait is None or key is None:
                return wait
            worked = self._worked.get((client, key))
            if worked is not None and worked > now:
                return None
            return wait

    def succeeded(self, client: str, key: str) -> None:
        """A key authenticated from this client: it stays usable from there when the
        address is limited by others' failures."""
        now = time.monotonic()
        with self._lock:
            self._worked.pop((client, key), None)
            self._worked[(client, key)] = now + self.remember_seconds
            while len(self._worked) > self.tracked:
                self._worked.popitem(last=False)

    def tracking(self) -> tuple[int, int, int]:
        """How many addresses, keys and (address, key) pairs are tracked (each bounded)."""
        with self._lock:
            return len(self._by_client), len(self._by_key), len(self._worked)

    def failed(self, client: str, reason: str, key: str | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            self._by_client.add(client, now)
            if key is not None:
                self._by_key.add(key, now)
            self._recorded += 1
            prune = self._recorded % 1000 == 1
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL("INSERT INTO {} (client, reason, at) VALUES (%s, %s, %s)").format(
                    self._table
                ),
                (client, reason if key is None else f"{reason} ({key})", datetime.now(UTC)),
            )
            if prune:
                self.prune(conn)

    def prune(self, conn: Connection[Any] | None = None) -> None:
        """Keep ``keep_days`` days of failed authentications, and ``keep_rows`` rows at most."""
        if conn is None:
            with self._pool.connection() as own:
                self.prune(own)
            return
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE at < now() - make_interval(days => %s)").format(
                self._table
            ),
            (self.keep_days,),
        )
        conn.execute(
            sql.SQL("DELETE FROM {t} WHERE id <= (SELECT max(id) FROM {t}) - %s").format(
                t=self._table
            ),
            (self.keep_rows,),
        )
