"""Idempotency keys: a client's retry of a command is answered, never applied again.

A POST or PATCH with ``Idempotency-Key`` first *claims* the key for its caller (the
API key that sent it) with a fingerprint of the request. The claim is a row in
``idempotency_keys`` in state ``running``, held by one attempt (``owner``) for a
short lease. The command's events are then written, and in the same transaction the
row becomes ``committed`` with the position and the result (``record_commands``): so
either the events and the record of the key exist together, or neither does. The
answer sent to the client is stored afterwards (``answered``) and replayed to any
repeat with the same key and body until the key expires.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

import psycopg
from eventsourcing.persistence import IntegrityError
from psycopg import Cursor, sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from rightsledger.domain.ledger import CommandAlreadyRecordedError, CommandMark, CommandTag

TABLE = "idempotency_keys"
ATTEMPTS = 3


T = TypeVar("T")


def _retried(operation: Callable[[], T]) -> T:
    """Run ``operation``, again on a lost connection (the pool replaces broken ones)."""
    for attempt in range(ATTEMPTS):
        try:
            return operation()
        except psycopg.OperationalError:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def fingerprint(method: str, path: str, query: str, body: bytes) -> bytes:
    """What makes two requests "the same request" for one key."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode()):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    digest.update(body)
    return digest.digest()


def caller_of(authorization: str | None) -> str:
    """Keys are scoped to the credential that sent them (its digest, never the secret)."""
    if not authorization:
        return "anonymous"
    return hashlib.sha256(authorization.encode()).hexdigest()


@dataclass(frozen=True)
class Stored:
    """A stored answer to replay."""

    status: int
    content_type: str
    body: bytes
    position: int | None


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key: go ahead (``tag``), replay, or refuse."""

    tag: CommandTag | None = None
    replay: Stored | None = None
    mismatch: bool = False
    in_progress: bool = False
    retry_after: int = 1


def record_commands(
    curs: Cursor[Any], schema: str, marks: Sequence[CommandMark], ids: Sequence[int]
) -> None:
    """Inside the events' transaction: each tagged command's key becomes ``committed``.

    A key already committed means this is a retry of a recorded command: the transaction
    is abandoned with ``CommandAlreadyRecordedError`` (its first position and result); a
    key held by another attempt abandons it with ``IntegrityError``."""
    table = sql.Identifier(schema, TABLE)
    for mark in marks:
        position = max(ids[mark.start : mark.start + mark.count])
        tag = mark.tag
        curs.execute(
            sql.SQL(
                "UPDATE {} SET state = 'committed', position = %s, result = %s"
                " WHERE caller = %s AND key = %s AND owner = %s AND state = 'running'"
                " RETURNING 1"
            ).format(table),
            (position, mark.result, tag.caller, tag.key, tag.owner),
        )
        if curs.fetchone() is not None:
            continue
        curs.execute(
            sql.SQL("SELECT state, position, result FROM {} WHERE caller = %s AND key = %s").format(
                table
            ),
            (tag.caller, tag.key),
        )
        row = curs.fetchone()
        if row is not None:
            state, first_position, result = _values(row)
            if state in ("committed", "answered") and first_position is not None:
                raise CommandAlreadyRecordedError(int(first_position), result)
        msg = f"idempotency key {tag.key!r} is held by another attempt"
        raise IntegrityError(msg)


def _values(row: Any) -> tuple[str, int | None, str | None]:
    if isinstance(row, dict):
        return row["state"], row["position"], row["result"]
    return row[0], row[1], row[2]


class IdempotencyStore:
    """Claims, answers and expiry of idempotency keys (table ``idempotency_keys``)."""

    def __init__(
        self,
        pool: ConnectionPool,
        schema: str,
        *,
        ttl: timedelta = timedelta(hours=24),
        lease: timedelta = timedelta(seconds=30),
    ) -> None:
        self._pool = pool
        self._table = sql.Identifier(schema, TABLE)
        self.ttl = ttl
        self.lease = lease
        self._claims = 0

    def create_table(self) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " caller text NOT NULL,"
                    " key text NOT NULL,"
                    " fingerprint bytea NOT NULL,"
                    " owner uuid NOT NULL,"
                    " state text NOT NULL,"
                    " position bigint,"
                    " result text,"
                    " status integer,"
                    " content_type text,"
                    " body bytea,"
                    " created_at timestamptz NOT NULL,"
                    " locked_until timestamptz NOT NULL,"
                    " expires_at timestamptz NOT NULL,"
                    " PRIMARY KEY (caller, key))"
                ).format(self._table)
            )
            conn.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON {} (expires_at)"
                ).format(self._table)
            )

    def claim(self, caller: str, key: str, print_: bytes) -> Claim:
        """Claim ``key`` for one attempt, or say why not (see ``Claim``)."""
        owner = uuid4()  # kept across retries: a claim whose answer was lost is still ours
        return _retried(lambda: self._claim(caller, key, print_, owner))

    def _claim(self, caller: str, key: str, print_: bytes, owner: UUID) -> Claim:
        now = datetime.now(UTC)
        self._claims += 1
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            if self._claims % 500 == 1:
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE expires_at < %s").format(self._table), (now,)
                )
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (caller, key, fingerprint, owner, state, created_at,"
                    " locked_until, expires_at) VALUES (%s, %s, %s, %s, 'running', %s, %s, %s)"
                    " ON CONFLICT (caller, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
                    " owner = EXCLUDED.owner, state = 'running', position = NULL, result = NULL,"
                    " status = NULL, content_type = NULL, body = NULL,"
                    " created_at = EXCLUDED.created_at, locked_until = EXCLUDED.locked_until,"
                    " expires_at = EXCLUDED.expires_at"
                    # an expired key is claimed afresh; a running one whose lease ran out
                    # is taken over (its attempt never committed: committing marks the row)
                    " WHERE {}.expires_at < %s OR ({}.state = 'running' AND {}.locked_until < %s"
                    " AND {}.fingerprint = EXCLUDED.fingerprint)"
                    " RETURNING owner"
                ).format(self._table, self._table, self._table, self._table, self._table),
                (
                    caller,
                    key,
                    print_,
                    owner,
                    now,
                    now + self.lease,
                    now + self.ttl,
                    now,
                    now,
                ),
            )
            row = cur.fetchone()
            if row is not None and row["owner"] == owner:
                return Claim(tag=CommandTag(caller=caller, key=key, owner=owner))
            cur.execute(
                sql.SQL(
                    "SELECT fingerprint, owner, state, position, status, content_type, body,"
                    " locked_until FROM {} WHERE caller = %s AND key = %s"
                ).format(self._table),
                (caller, key),
            )
            existing = cur.fetchone()
        if existing is None:  # removed between the two statements: try once more
            return self._claim(caller, key, print_, owner)
        if existing["owner"] == owner and existing["state"] == "running":
            return Claim(tag=CommandTag(caller=caller, key=key, owner=owner))
        if bytes(existing["fingerprint"]) != print_:
            return Claim(mismatch=True)
        if existing["state"] == "answered":
            return Claim(
                replay=Stored(
                    status=int(existing["status"]),
                    content_type=str(existing["content_type"]),
                    body=bytes(existing["body"]),
                    position=existing["position"],
                )
            )
        wait = max(1, int((existing["locked_until"] - now).total_seconds()) + 1)
        if existing["state"] == "committed" and existing["locked_until"] < now:
            # Recorded, but its answer was never stored (the attempt died after committing):
            # run it again; the ledger recognises the recorded command and answers as before.
            return self._take_over(caller, key, print_)
        return Claim(in_progress=True, retry_after=min(wait, 60))

    def _take_over(self, caller: str, key: str, print_: bytes) -> Claim:
        """A new attempt for a committed key with no stored answer; committing stays refused."""
        owner = uuid4()
        now = datetime.now(UTC)
        with self._pool.connection() as conn:
            row = conn.execute(
                sql.SQL(
                    "UPDATE {} SET owner = %s, locked_until = %s WHERE caller = %s AND key = %s"
                    " AND state = 'committed' AND locked_until < %s AND fingerprint = %s"
                    " RETURNING owner"
                ).format(self._table),
                (owner, now + self.lease, caller, key, now, print_),
            ).fetchone()
        if row is None:
            return Claim(in_progress=True)
        return Claim(tag=CommandTag(caller=caller, key=key, owner=owner))

    def answer(self, tag: CommandTag, status: int, content_type: str, body: bytes) -> None:
        """Store the answer to replay; a command that wrote nothing is answered too."""
        _retried(lambda: self._answer(tag, status, content_type, body))

    def _answer(self, tag: CommandTag, status: int, content_type: str, body: bytes) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "UPDATE {} SET state = 'answered', status = %s, content_type = %s, body = %s"
                    " WHERE caller = %s AND key = %s AND owner = %s"
                ).format(self._table),
                (status, content_type, body, tag.caller, tag.key, tag.owner),
            )

    def release(self, tag: CommandTag) -> None:
        """Give the key back after an attempt that recorded nothing and stored no answer."""
        _retried(lambda: self._release(tag))

    def _release(self, tag: CommandTag) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                sql.SQL(
                    "DELETE FROM {} WHERE caller = %s AND key = %s AND owner = %s"
                    " AND state = 'running'"
                ).format(self._table),
                (tag.caller, tag.key, tag.owner),
            )

    def position_of(self, tag: CommandTag) -> int | None:
        """Where a tagged command was recorded, if it was."""
        with self._pool.connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT position FROM {} WHERE caller = %s AND key = %s").format(
                    self._table
                ),
                (tag.caller, tag.key),
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])
