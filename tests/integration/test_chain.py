"""Tamper evidence: altering, deleting or swapping stored events is found at the right place."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from rightsledger.bootstrap import Container
from rightsledger.storage import chain
from tests import scenarios


def history(container: Container, events: int = 12) -> None:
    ledger = container.ledger
    customer = scenarios.customer(ledger, actor="i")
    for i in range(events - 1):
        scenarios.consent(ledger, customer, "email", granted=i % 2 == 0)


def execute(container: Container, statement: str, *params: Any) -> None:
    table = sql.Identifier(container.settings.database_schema, "rightsledger_events")
    with psycopg.connect(container.database.url) as conn:
        conn.execute(sql.SQL(statement).format(table=table), params)


def check(container: Container) -> chain.Verification:
    return chain.verify(container.database.url, container.settings.database_schema)


def test_an_untouched_history_verifies(container: Container) -> None:
    """Every event links to the previous one; the head is reported."""
    history(container)
    result = check(container)
    assert result.ok
    assert result.checked == 12
    assert result.head_position == 12
    assert result.head_hash is not None


def test_one_altered_byte_is_found_at_its_position(container: Container) -> None:
    """Flipping one byte of one stored event breaks the chain exactly there."""
    history(container)
    execute(
        container,
        "UPDATE {table} SET state = set_byte(state, 5, get_byte(state, 5) # 1)"
        " WHERE notification_id = %s",
        7,
    )
    result = check(container)
    assert not result.ok
    assert result.first_break == 7
    assert result.checked == 6


def test_a_deleted_event_is_found_at_its_position(container: Container) -> None:
    """Removing an event from the log is found where it was."""
    history(container)
    execute(container, "DELETE FROM {table} WHERE notification_id = %s", 4)
    result = check(container)
    assert not result.ok
    assert result.first_break == 4
    assert "missing" in (result.reason or "")


def test_two_swapped_events_are_found_at_the_first(container: Container) -> None:
    """Exchanging the contents of two stored events breaks the chain at the earlier one."""
    history(container)
    execute(
        container,
        "UPDATE {table} AS t SET state = s.state FROM (SELECT notification_id,"
        " CASE notification_id WHEN 5 THEN (SELECT state FROM {table} WHERE notification_id = 9)"
        " ELSE (SELECT state FROM {table} WHERE notification_id = 5) END AS state"
        " FROM {table} WHERE notification_id IN (5, 9)) AS s"
        " WHERE t.notification_id = s.notification_id",
    )
    result = check(container)
    assert not result.ok
    assert result.first_break == 5


def test_a_truncated_tail_is_found_by_the_checkpoint(container: Container) -> None:
    """Deleting the last events and their links is noticed against a checkpoint."""
    history(container)
    head = chain.checkpoint(container.database.url, container.settings.database_schema)
    assert head is not None
    assert head[0] == 12
    schema = container.settings.database_schema
    with psycopg.connect(container.database.url) as conn:
        for table, column in (
            ("rightsledger_events", "notification_id"),
            ("rightsledger_events_chain", "position"),
        ):
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE {} > 10").format(
                    sql.Identifier(schema, table), sql.Identifier(column)
                )
            )
    result = check(container)
    assert not result.ok
    assert result.first_break == 12
    assert "truncated" in (result.reason or "")


@pytest.mark.parametrize("events", [1, 3])
def test_the_chain_continues_across_commands(container: Container, events: int) -> None:
    """Links written by separate transactions chain on from the previous head."""
    history(container, events)
    history(container, events)
    assert check(container).checked == 2 * events
