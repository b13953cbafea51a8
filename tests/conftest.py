"""Shared fixtures: a real PostgreSQL for every test that touches storage.

The server in RIGHTSLEDGER_TEST_DATABASE_URL when set; otherwise an embedded
PostgreSQL started from the pip wheel for the test session. Each test gets a
schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from rightsledger.bootstrap import Container
from rightsledger.config import Settings
from rightsledger.storage.database import Database, start_embedded
from rightsledger.workers.broker import EmbeddedBroker

ADMIN_KEY = "rlk_test_admin_key_0123456789"

EVIDENCE: dict[str, Any] = {
    "method": "web_form_checkbox",
    "wording_version": "mkt-v3",
    "captured_at": datetime(2026, 11, 1, tzinfo=UTC),
}
"""How a marketing consent was captured, as the ledger takes it."""


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    url = os.environ.get("RIGHTSLEDGER_TEST_DATABASE_URL")
    if url:
        yield Database(url=url)
        return
    home = Path(tmp_path_factory.mktemp("pg"))
    db = start_embedded(home)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def schema(database: Database) -> Iterator[str]:
    name = "t_" + uuid.uuid4().hex[:16]
    database.ensure_schema(name)
    try:
        yield name
    finally:
        with psycopg.connect(database.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """The embedded Kafka broker (Tansu), fresh for the test."""
    with EmbeddedBroker(log_dir=tmp_path / "broker") as running:
        yield running


def make_settings(database: Database, schema: str, **overrides: Any) -> Settings:
    """Settings for one test's schema; topics are named after it so tests never mix."""
    values: dict[str, Any] = {
        "database_url": database.url,
        "database_schema": schema,
        "admin_key": ADMIN_KEY,
        "run_projections": False,
        "run_workers": False,
        "events_topic": f"events.{schema}",
        "notifications_topic": f"notifications.{schema}",
        "pool_size": 4,
    }
    values.update(overrides)
    return Settings(**values)


def spawn(container: Container, *command: str, **extra: str) -> subprocess.Popen[bytes]:
    """`python -m rightsledger COMMAND...` as a process of its own, on the test's schema."""
    settings = container.settings
    env = {
        **os.environ,
        "RIGHTSLEDGER_DATABASE_URL": container.database.url,
        "RIGHTSLEDGER_DATABASE_SCHEMA": settings.database_schema,
        "RIGHTSLEDGER_EVENTS_TOPIC": settings.events_topic,
        "RIGHTSLEDGER_NOTIFICATIONS_TOPIC": settings.notifications_topic,
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "rightsledger", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
