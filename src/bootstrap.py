"""The composition root: builds the whole service from settings, and nothing else does."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.projection import ProjectionRunner
from eventsourcing.utils import Environment
from psycopg_pool import ConnectionPool
from rightsledger.config import Settings
from rightsledger.domain.ledger import RightsLedger
from rightsledger.projections.requests import RequestQueueProjection, RequestQueueView
from rightsledger.security.keys import ApiKeyStore
from rightsledger.storage.database import Database, open_database

log = logging.getLogger(__name__)


@dataclass
class Container:
    """Everything a process needs, built once from settings and closed once."""

    settings: Settings
    database: Database
    pool: ConnectionPool
    ledger: RightsLedger
    keys: ApiKeyStore
    request_queue: RequestQueueView
    env: dict[str, str]
    owns_database: bool = True
    runners: list[ProjectionRunner[RightsLedger, RequestQueueView]] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def start_projections(self) -> None:
        """Run the projections in this process (threads fed by LISTEN/NOTIFY)."""
        if self.runners:
            return
        runner: ProjectionRunner[RightsLedger, RequestQueueView] = ProjectionRunner(
            application_class=RightsLedger,
            projection_class=RequestQueueProjection,
            view_class=RequestQueueView,
            env=self.env,
        )
        runner.__enter__()
        self.runners.append(runner)

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until every running projection reached ``position``; False on timeout."""
        for runner in self.runners:
            try:
                runner.wait(position, timeout=timeout)
            except TimeoutError:
                return False
        return True

    def close(self) -> None:
        for runner in self.runners:
            runner.__exit__(None, None, None)
        self.runners.clear()
        for closer in reversed(self.closers):
            closer()
        self.closers.clear()
        self.ledger.close()
        self.request_queue.datastore.close()
        self.pool.close()
        if self.owns_database:
            self.database.close()


def ledger_env(settings: Settings, database: Database) -> dict[str, str]:
    env = database.eventsourcing_env(settings.database_schema)
    env.update(
        {
            "POSTGRES_POOL_SIZE": str(settings.pool_size),
            "POSTGRES_MAX_OVERFLOW": str(settings.pool_size),
            "POSTGRES_LOCK_TIMEOUT": "5",
            "AGGREGATE_CACHE_MAXSIZE": str(settings.aggregate_cache_size),
            "AGGREGATE_CACHE_FASTFORWARD": "n",
            "IS_SNAPSHOTTING_ENABLED": "y",
            "CREATE_TABLE": "y",
        }
    )
    if settings.aggregate_cache_size == 0:
        env.pop("AGGREGATE_CACHE_MAXSIZE")
    return env


def build(settings: Settings, *, database: Database | None = None) -> Container:
    """Open the store, build the application and the views; seed the admin key if set."""
    db = database or open_database(
        settings.database_url.get_secret_value() if settings.database_url else None,
        settings.data_dir,
    )
    try:
        db.ensure_schema(settings.database_schema)
        env = ledger_env(settings, db)
        ledger = RightsLedger(env, jurisdictions=settings.deadline_rules())
        request_queue = (
            InfrastructureFactory[RequestQueueView]
            .construct(
                env=Environment(
                    RequestQueueProjection.name,
                    {**env, "POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "4"},
                )
            )
            .tracking_recorder(RequestQueueView)
        )
        pool: ConnectionPool = ConnectionPool(db.url, min_size=1, max_size=4, open=True)
        keys = ApiKeyStore(pool, settings.database_schema)
        keys.create_table()
        if settings.admin_key is not None:
            keys.seed(settings.admin_key.get_secret_value())
    except Exception:
        if database is None:
            db.close()
        raise
    return Container(
        settings=settings,
        database=db,
        pool=pool,
        ledger=ledger,
        keys=keys,
        request_queue=request_queue,
        env=env,
        owns_database=database is None,
    )
