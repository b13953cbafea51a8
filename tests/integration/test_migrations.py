"""The schema is created once, by one process, under an advisory lock (storage/migrations.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import psycopg
import pytest
from psycopg import sql

from rightsledger.bootstrap import ledger_env
from rightsledger.storage.database import Database
from rightsledger.storage.migrations import MIGRATIONS, Migration, applied, lock_key, migrate
from tests.conftest import make_settings
from tests.e2e.service import wait_until

pytestmark = pytest.mark.integration

TABLES = (
    "rightsledger_events",
    "rightsledger_events_chain",
    "rightsledger_events_checkpoints",
    "subject_keys",
    "api_keys",
    "auth_failures",
    "idempotency_keys",
    "request_exports",
    "customer_profile",
    "customer_profile_tracking",
    "request_workers_tracking",
    "kafka_relay_tracking",
)


def env_for(database: Database, schema: str) -> dict[str, str]:
    """The environment of a CLI process on ``schema``, nothing else from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSLEDGER_")}
    env["RIGHTSLEDGER_DATABASE_URL"] = database.url
    env["RIGHTSLEDGER_DATABASE_SCHEMA"] = schema
    return env


def versions(database: Database, schema: str) -> list[int]:
    with psycopg.connect(database.url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT version FROM {} ORDER BY version").format(
                sql.Identifier(schema, "schema_migrations")
            )
        ).fetchall()
    return [row[0] for row in rows]


def tables(database: Database, schema: str) -> set[str]:
    with psycopg.connect(database.url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return {row[0] for row in rows}


def drop(database: Database, schema: str) -> None:
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_five_processes_started_at_once_on_a_missing_schema_all_succeed(
    database: Database, schema: str
) -> None:
    """Five `rightsledger migrate` processes (the command that creates a store; the others
    refuse a missing one) started together where not even the schema exists all exit 0:
    one applies the migrations while the others wait on the lock (no "tuple concurrently
    updated"), and schema_migrations lists each version exactly once."""
    drop(database, schema)  # the fixture's teardown drops what the processes create
    commands = [["migrate"]] * 5
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "rightsledger", *command],
            env=env_for(database, schema),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    results = [
        (command, *process.communicate(timeout=120))
        for command, process in zip(commands, processes, strict=True)
    ]
    for (command, _, stderr), process in zip(results, processes, strict=True):
        assert process.returncode == 0, f"{command} failed:\n{stderr}"
    assert versions(database, schema) == [m.version for m in MIGRATIONS]
    assert set(TABLES) <= tables(database, schema)
    printed = "".join(stdout for command, stdout, _ in results if command == ["migrate"])
    for migration in MIGRATIONS:
        assert printed.count(f"applied migration {migration.version}:") <= 1


def test_migrate_applies_pending_migrations_once_and_says_what_it_did(
    database: Database, schema: str
) -> None:
    """`rightsledger migrate` on an empty schema creates every table and prints the
    migration it applied; run again it applies nothing and says the schema is up to date."""
    env = env_for(database, schema)
    command = [sys.executable, "-m", "rightsledger", "migrate"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    for migration in MIGRATIONS:
        assert f"applied migration {migration.version}: {migration.name}" in first.stdout
    assert set(TABLES) <= tables(database, schema)

    second = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr
    assert "nothing to apply" in second.stdout
    assert [(a.version, a.name) for a in applied(database.url, schema)] == [
        (m.version, m.name) for m in MIGRATIONS
    ]


def test_a_migration_waits_for_the_lock_held_elsewhere_then_finds_its_work_done(
    database: Database, schema: str
) -> None:
    """While another session holds the schema's migration lock, migrate() blocks; once the
    lock is released it proceeds, and it applies only the steps not yet recorded."""
    settings = make_settings(database, schema)
    env = ledger_env(settings, database)
    assert migrate(database.url, schema, env) == list(MIGRATIONS)

    ran: list[int] = []
    version = MIGRATIONS[-1].version + 1
    extra = Migration(version, "a test step", lambda step: ran.append(version))
    result: list[list[Migration]] = []
    with psycopg.connect(database.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock_key(schema),))
        thread = threading.Thread(
            target=lambda: result.append(
                migrate(database.url, schema, env, migrations=(*MIGRATIONS, extra))
            )
        )
        thread.start()

        def waiting() -> bool:
            row = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND ((classid::bigint << 32) | objid::bigint) = hashtext(%s)::bigint",
                (lock_key(schema),),
            ).fetchone()
            return row is not None and row[0] == 1

        wait_until(waiting, 10, "migrate() to wait for the lock")
        assert not ran
        assert thread.is_alive()
        holder.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock_key(schema),))
        thread.join(10)
    assert not thread.is_alive()
    assert result == [[extra]]
    assert ran == [version]
    assert versions(database, schema) == [*(m.version for m in MIGRATIONS), version]
