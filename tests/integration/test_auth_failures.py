"""The failed-authentication record and counts stay bounded."""

from __future__ import annotations

import pytest
from psycopg import sql

from rightsledger.bootstrap import Container
from rightsledger.security.keys import AuthGuard, key_hash

pytestmark = pytest.mark.integration


def _rows(container: Container) -> list[tuple[str, str]]:
    with container.pool.connection() as conn:
        return [
            (row[0], row[1])
            for row in conn.execute(
                sql.SQL("SELECT client, reason FROM {} ORDER BY id").format(
                    sql.Identifier(container.settings.database_schema, "auth_failures")
                )
            )
        ]


def test_the_table_is_pruned_by_age_and_capped(container: Container) -> None:
    """Pruning drops rows older than the kept days and keeps the newest ``keep_rows`` rows at
    most; a recorded failure names the presented key by its digest's prefix, never the key."""
    schema = container.settings.database_schema
    guard = AuthGuard(container.pool, schema, keep_days=30, keep_rows=100)
    table = sql.Identifier(schema, "auth_failures")
    with container.pool.connection() as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (client, reason, at)"
                " SELECT 'old', 'x', now() - interval '31 days' FROM generate_series(1, 5)"
            ).format(table)
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (client, reason, at)"
                " SELECT 'bulk', 'x', now() FROM generate_series(1, 300)"
            ).format(table)
        )
    guard.failed("10.0.0.1", "unknown or revoked key", key_hash("rlk_secret_value"))
    guard.prune()
    rows = _rows(container)
    assert len(rows) <= 100
    assert ("old", "x") not in rows
    assert rows[-1] == ("10.0.0.1", f"unknown or revoked key ({key_hash('rlk_secret_value')})")
    assert all("rlk_secret_value" not in reason for _, reason in rows)


def test_counts_in_memory_are_bounded(container: Container) -> None:
    """However many addresses and keys fail, the guard tracks at most ``tracked`` of each,
    and the newest offender stays limited."""
    guard = AuthGuard(
        container.pool, container.settings.database_schema, allowed=2, tracked=50
    )
    for i in range(200):
        guard.failed(f"10.0.{i // 250}.{i % 250}", "no bearer key", key_hash(f"k{i}"))
        guard.succeeded(f"10.1.0.{i % 250}", key_hash(f"ok{i}"))
    clients, keys, pairs = guard.tracking()
    assert clients <= 50
    assert keys <= 50
    assert pairs <= 50
    guard.failed("10.9.9.9", "no bearer key")
    guard.failed("10.9.9.9", "no bearer key")
    assert guard.retry_after("10.9.9.9") is not None
