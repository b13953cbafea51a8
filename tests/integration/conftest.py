from __future__ import annotations

from collections.abc import Iterator

import pytest

from rightsledger.bootstrap import Container, build
from rightsledger.config import Settings
from rightsledger.storage.database import Database
from tests.conftest import make_settings


@pytest.fixture
def settings(database: Database, schema: str) -> Settings:
    return make_settings(database, schema)


@pytest.fixture
def container(settings: Settings, database: Database) -> Iterator[Container]:
    built = build(settings, database=database)
    try:
        yield built
    finally:
        built.close()
