"""The command line run as a process of its own, from a directory other than the store's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from rightsledger.bootstrap import Container, build
from rightsledger.security.keys import SEEDED_KEY_ID
from rightsledger.storage.database import Database
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def run(
    cwd: Path, *args: str, env: dict[str, str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``python -m rightsledger ARGS`` in ``cwd`` with only the given RIGHTSLEDGER_ settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSLEDGER_")}
    return subprocess.run(
        [sys.executable, "-m", "rightsledger", *args],
        env={**base, **env},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def store_env(container: Container) -> dict[str, str]:
    return {
        "RIGHTSLEDGER_DATABASE_URL": container.database.url,
        "RIGHTSLEDGER_DATABASE_SCHEMA": container.settings.database_schema,
    }


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed with one line on stderr, no traceback."""
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in done.stderr
    return lines[0]


def test_keys_from_another_directory(container: Container, tmp_path: Path) -> None:
    """A key created from another directory is one the API's store accepts; `keys list`
    shows it with its role, when it was last used and, once revoked, when; revoking it again
    is a one-line error."""
    env = store_env(container)
    created = run(tmp_path, "keys", "create", "--role", "support", "--name", "desk", env=env)
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(":", 1) for line in created.stdout.splitlines()[:3])
    key_id, token = fields["key id"].strip(), fields["key"].strip()
    principal = container.keys.authenticate(token)
    assert principal is not None
    assert str(principal.key_id) == key_id
    assert not list(tmp_path.iterdir()), "the command left files where it ran"

    listed = run(tmp_path, "keys", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["key_id"]: row for row in json.loads(listed.stdout)}
    assert rows[key_id]["name"] == "desk"
    assert rows[key_id]["role"] == "support"
    assert rows[key_id]["last_used_at"] is not None
    assert rows[key_id]["revoked_at"] is None
    assert token not in listed.stdout

    table = run(tmp_path, "keys", "list", env=env)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:4] == ["id", "name", "role", "partner"]
    assert any(line.startswith(key_id) and "support" in line for line in table.stdout.splitlines())

    revoked = run(tmp_path, "keys", "revoke", key_id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert container.keys.authenticate(token) is None
    again = run(tmp_path, "keys", "revoke", key_id, env=env)
    assert key_id in one_line_error(again)
    after = json.loads(run(tmp_path, "keys", "list", "--json", env=env).stdout)
    rows = {row["key_id"]: row for row in after}
    assert rows[key_id]["revoked_at"] is not None


def test_unknown_ids_are_one_line_errors(container: Container, tmp_path: Path) -> None:
    """Ids that are not UUIDs, and ids of nothing, are reported in one line, exit 1."""
    env = store_env(container)
    nobody = str(uuid.uuid4())
    assert "not a key id" in one_line_error(run(tmp_path, "keys", "revoke", "nope", env=env))
    assert nobody in one_line_error(run(tmp_path, "keys", "revoke", nobody, env=env))
    replay = run(tmp_path, "audit", "replay", "--customer", nobody, env=env)
    assert nobody in one_line_error(replay)
    partner = run(
        tmp_path, "keys", "create", "--role", "partner", "--name", "p", "--partner", nobody, env=env
    )
    assert nobody in one_line_error(partner)
    assert "nope" in one_line_error(run(tmp_path, "followers", "resume", "nope", env=env))


def test_bad_or_unreachable_database_is_one_line(tmp_path: Path) -> None:
    """A URL that is not one, and a server that does not answer, are one line each, and the
    password in the URL is never printed."""
    bad = run(tmp_path, "keys", "list", env={"RIGHTSLEDGER_DATABASE_URL": "not a url secretpw"})
    assert "RIGHTSLEDGER_DATABASE_URL" in one_line_error(bad)
    assert "secretpw" not in bad.stderr
    gone = run(
        tmp_path,
        "projections",
        "status",
        env={"RIGHTSLEDGER_DATABASE_URL": "postgresql://u:secretpw@127.0.0.1:1/db"},
    )
    assert "cannot reach the database" in one_line_error(gone)
    assert "secretpw" not in gone.stderr
    setting = run(tmp_path, "keys", "list", env={"RIGHTSLEDGER_PORT": "eighty"})
    assert "RIGHTSLEDGER_PORT" in one_line_error(setting)


def test_no_store_is_never_created_by_a_command(database: Database, tmp_path: Path) -> None:
    """Where there is no store, a command says where it looked and how to point at one, and
    creates nothing: no embedded server under the data directory, no schema on a server."""
    home = tmp_path / "xdg"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(
        elsewhere,
        "keys",
        "create",
        "--role",
        "admin",
        "--name",
        "x",
        env={"XDG_DATA_HOME": str(home)},
    )
    line = one_line_error(done)
    assert str(home / "rightsledger") in line
    assert "RIGHTSLEDGER_DATA_DIR" in line
    assert "RIGHTSLEDGER_DATABASE_URL" in line
    assert not home.exists()
    assert not list(elsewhere.iterdir())

    schema = "t_missing_" + uuid.uuid4().hex[:8]
    missing = run(
        elsewhere,
        "keys",
        "list",
        env={"RIGHTSLEDGER_DATABASE_URL": database.url, "RIGHTSLEDGER_DATABASE_SCHEMA": schema},
    )
    assert repr(schema) in one_line_error(missing)
    with psycopg.connect(database.url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    assert found is None


def test_embedded_store_is_the_same_from_any_directory(tmp_path: Path) -> None:
    """With the same settings (here none but the home), `migrate` run in one directory
    creates the embedded store, and commands run in two others use that one store."""
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    dirs = [tmp_path / name for name in ("a", "b", "c")]
    for directory in dirs:
        directory.mkdir()
    assert run(dirs[0], "migrate", env=env).returncode == 0
    created = run(dirs[1], "keys", "create", "--role", "auditor", "--name", "books", env=env)
    assert created.returncode == 0, created.stderr
    key_id = created.stdout.splitlines()[0].split(":", 1)[1].strip()
    listed = run(dirs[2], "keys", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [row["key_id"] for row in json.loads(listed.stdout)] == [key_id]
    assert (tmp_path / "xdg" / "rightsledger" / "pgdata" / "PG_VERSION").is_file()
    assert all(not list(d.iterdir()) for d in dirs)


def test_admin_key_is_one_key_replaced_on_each_start(
    database: Database, schema: str, tmp_path: Path
) -> None:
    """Every start with RIGHTSLEDGER_ADMIN_KEY leaves exactly one seeded admin key: the same
    token twice changes nothing, another token replaces it (the old one stops working),
    seeded keys of earlier versions are revoked, a revoked seeded token stays revoked; a CLI
    command never seeds."""
    first, second = "rlk_first_admin_token_123", "rlk_second_admin_token_456"
    build(make_settings(database, schema, admin_key=first), database=database).close()
    legacy = build(make_settings(database, schema, admin_key=None), database=database)
    try:
        legacy.keys.create("admin", "seeded admin")  # as an earlier version seeded it
    finally:
        legacy.close()

    def active_admins(container: Container) -> list[str]:
        return [
            str(k.key_id)
            for k in container.keys.list()
            if k.role == "admin" and k.revoked_at is None
        ]

    for token in (first, first, second):
        container = build(make_settings(database, schema, admin_key=token), database=database)
        try:
            assert active_admins(container) == [str(SEEDED_KEY_ID)]
            assert container.keys.authenticate(token) is not None
        finally:
            container.close()
    container = build(make_settings(database, schema, admin_key=None), database=database)
    try:
        assert container.keys.authenticate(first) is None
        assert container.keys.authenticate(second) is not None
        env = {
            "RIGHTSLEDGER_DATABASE_URL": database.url,
            "RIGHTSLEDGER_DATABASE_SCHEMA": schema,
            "RIGHTSLEDGER_ADMIN_KEY": "rlk_a_cli_never_seeds_this",
        }
        assert run(tmp_path, "keys", "list", env=env).returncode == 0
        assert container.keys.authenticate("rlk_a_cli_never_seeds_this") is None
        assert active_admins(container) == [str(SEEDED_KEY_ID)]
    finally:
        container.close()

    # a seeded token that was revoked stays revoked when seeded again, start-up goes on;
    # another token is a new key again
    container = build(make_settings(database, schema, admin_key=second), database=database)
    try:
        assert container.keys.revoke(SEEDED_KEY_ID)
    finally:
        container.close()
    container = build(make_settings(database, schema, admin_key=second), database=database)
    try:
        assert container.keys.authenticate(second) is None
        assert active_admins(container) == []
    finally:
        container.close()
    container = build(make_settings(database, schema, admin_key=first), database=database)
    try:
        assert container.keys.authenticate(first) is not None
        assert container.keys.authenticate(second) is None
        assert active_admins(container) == [str(SEEDED_KEY_ID)]
    finally:
        container.close()


def test_every_view_is_rebuilt_by_several_processes_from_the_command_line(
    container: Container, tmp_path: Path
) -> None:
    """`projections rebuild --all --processes 2` rebuilds every view from the log and swaps
    them in at the head; naming no view is a one-line error, as is an unknown one."""
    ledger = container.ledger
    customer = ledger.register_customer(
        policy_version="v1", identity={"name": "Ann"}, actor="intake:t"
    ).id
    head = ledger.recorder.max_notification_id()
    env = store_env(container)
    done = run(tmp_path, "projections", "rebuild", "--all", "--processes", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"rebuilt and swapped in at position {head}")
    assert container.views.positions() == dict.fromkeys(container.views.views, head)
    profile, _ = container.views.customer_profile.get(customer)
    assert profile is not None
    assert "name the views" in one_line_error(run(tmp_path, "projections", "rebuild", env=env))
    assert "unknown view 'nope'" in one_line_error(
        run(tmp_path, "projections", "rebuild", "nope", env=env)
    )
    # while another rebuild holds the store's rebuild lock, one more is a one-line refusal
    key = f"rightsledger.rebuild.{container.settings.database_schema}"
    with psycopg.connect(container.database.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        refused = run(tmp_path, "projections", "rebuild", "--all", env=env)
    assert "another rebuild of the views" in one_line_error(refused)
