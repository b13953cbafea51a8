from __future__ import annotations

from collections.abc import Iterator

import pytest

from rightsledger.bootstrap import Container, build
from rightsledger.config import Settings
from rightsledger.storage.database import Database
from tests.conftest import ADMIN_KEY


@pytest.fixture
def settings(database: Database, schema: str) -> Settings:
    return Settings(
        database_url=database.url,
        database_schema=schema,
        admin_key=ADMIN_KEY,
        run_projections=False,
        run_workers=False,
        events_topic=f"events.{schema}",
        notifications_topic=f"notifications.{schema}",
        pool_size=4,
    )


@pytest.fixture
def container(settings: Settings, database: Database) -> Iterator[Container]:
    built = build(settings, database=database)
    try:
        yield built
    finally:
        built.close()
