"""Reading and writing golden logs: the stored rows of a log, and the state it replays to.

A golden log (``tests/golden/<name>.json``) holds, as one version of rightsledger stored
them: the rows of the events table (position, aggregate id, version, topic and the stored
bytes, which are UTF-8 JSON), the chain's links and checkpoints, and the data-key rows
(``subject_keys``) that open its sealed values. Beside it, ``<name>.state.json`` is the
state every aggregate of that log replayed to when it was written (``summary``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
EVENTS_TABLE = "rightsledger_events"
KEYS_TABLE = "subject_keys"


def golden_names() -> list[str]:
    """The golden logs committed beside this module, oldest first (by name)."""
    logs = HERE.glob("log-*.json")
    return sorted(p.name.removesuffix(".json") for p in logs if ".state." not in p.name)


def read(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A golden log and its replayed state."""
    log = json.loads((HERE / f"{name}.json").read_text())
    state = json.loads((HERE / f"{name}.state.json").read_text())
    return log, state


def plain(value: Any) -> Any:
    """A JSON-able, order-independent form of aggregate state (sets sorted, ids as text)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(plain(k)): plain(v) for k, v in sorted(value.items(), key=lambda i: str(i[0]))}
    if isinstance(value, set | frozenset):
        return sorted((plain(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    return value


def summary(aggregate: Any) -> dict[str, Any]:
    """What an aggregate replayed to: its class and every attribute of its state."""
    state = {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}
    return {"type": type(aggregate).__qualname__, "state": plain(state)}


def dump(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    """The stored rows of a schema's log, as a golden log holds them."""

    def rows_as_json(table: str, order: str) -> list[Any]:
        query = sql.SQL("SELECT coalesce(json_agg(t ORDER BY {}), '[]') FROM {} t").format(
            sql.Identifier(order), sql.Identifier(schema, table)
        )
        row = conn.execute(query).fetchone()
        assert row is not None
        return list(row[0])

    events = []
    for position, originator_id, version, topic, state in conn.execute(
        sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {} ORDER BY notification_id"
        ).format(sql.Identifier(schema, EVENTS_TABLE))
    ):
        stored = bytes(state)
        text = stored.decode("utf-8")
        assert text.encode("utf-8") == stored
        events.append(
            {
                "position": position,
                "originator_id": str(originator_id),
                "originator_version": version,
                "topic": topic,
                "state": text,
            }
        )
    chain = [
        {"position": position, "hash": bytes(digest).hex()}
        for position, digest in conn.execute(
            sql.SQL("SELECT position, hash FROM {} ORDER BY position").format(
                sql.Identifier(schema, f"{EVENTS_TABLE}_chain")
            )
        )
    ]
    return {
        "events": events,
        "chain": chain,
        "checkpoints": rows_as_json(f"{EVENTS_TABLE}_checkpoints", "id"),
        "subject_keys": rows_as_json(KEYS_TABLE, "key_id"),
    }


def load(conn: psycopg.Connection[Any], schema: str, log: Mapping[str, Any]) -> None:
    """Write a golden log's rows into a schema whose tables exist and are empty, as they
    were stored (same positions, same bytes)."""
    events = sql.Identifier(schema, EVENTS_TABLE)
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL(
                "INSERT INTO {} (notification_id, originator_id, originator_version, topic, state)"
                " VALUES (%s, %s, %s, %s, %s)"
            ).format(events),
            [
                (
                    e["position"],
                    UUID(e["originator_id"]),
                    e["originator_version"],
                    e["topic"],
                    e["state"].encode("utf-8"),
                )
                for e in log["events"]
            ],
        )
        cur.executemany(
            sql.SQL("INSERT INTO {} (position, hash) VALUES (%s, %s)").format(
                sql.Identifier(schema, f"{EVENTS_TABLE}_chain")
            ),
            [(c["position"], bytes.fromhex(c["hash"])) for c in log["chain"]],
        )
        for table, rows in (
            (f"{EVENTS_TABLE}_checkpoints", log["checkpoints"]),
            (KEYS_TABLE, log["subject_keys"]),
        ):
            if not rows:
                continue
            columns = sql.SQL(", ").join(sql.Identifier(c) for c in rows[0])
            cur.execute(
                sql.SQL(
                    "INSERT INTO {table} ({columns})"
                    " SELECT {columns} FROM json_populate_recordset(NULL::{table}, %s)"
                ).format(table=sql.Identifier(schema, table), columns=columns),
                (json.dumps(rows),),
            )
        cur.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({name}, 'notification_id'),"
                " (SELECT max(notification_id) FROM {events}))"
            ).format(name=sql.Literal(f'"{schema}"."{EVENTS_TABLE}"'), events=events)
        )
