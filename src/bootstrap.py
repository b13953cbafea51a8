"""The composition root: builds the whole service from settings, and nothing else does."""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.utils import get_topic
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from rightsledger.config import Settings
from rightsledger.domain.ledger import RightsLedger
from rightsledger.domain.retention import (
    DEFAULT_ACTIVITY,
    DEFAULT_BILLING,
    RetentionSchedule,
    Span,
)
from rightsledger.domain.retention import RuleSetting as RetentionRuleSetting
from rightsledger.domain.values import ActivityReason
from rightsledger.projections.base import View
from rightsledger.projections.lookup import BlindIndex
from rightsledger.projections.worker import (
    Progress,
    ProjectionWorker,
    Share,
    ViewSet,
    chosen_views,
    drop_leftover_splits,
    drop_split,
    fresh_shadows,
    join_shares,
    rebuild,
    shadows_of,
    split_log,
    swap_in,
)
from rightsledger.security.keys import ApiKeyStore, AuthGuard
from rightsledger.storage.chain import ChainedRecorder
from rightsledger.storage.database import Database, open_database
from rightsledger.storage.exports import ExportStore
from rightsledger.storage.followers import FollowerBoard
from rightsledger.storage.group_commit import GroupCommit
from rightsledger.storage.idempotency import IdempotencyStore
from rightsledger.storage.invalidation import Invalidations
from rightsledger.storage.keyvault import KeyVault, PostgresKeyVault
from rightsledger.storage.migrations import migrate
from rightsledger.storage.sealing import SealingMapper
from rightsledger.storage.transcoding import FastJSONTranscoder
from rightsledger.workers.relay import Relay, RelayConfig
from rightsledger.workers.requests import RequestWorker, WorkerPolicy
from rightsledger.workers.supervisor import watch_parent

log = logging.getLogger(__name__)


@dataclass
class Container:
    """Everything a process needs, built once from settings and closed once."""

    settings: Settings
    database: Database
    pool: ConnectionPool
    ledger: RightsLedger
    keys: ApiKeyStore
    auth_guard: AuthGuard
    vault: PostgresKeyVault
    exports: ExportStore
    views: ViewSet
    env: dict[str, str]
    invalidations: Invalidations
    idempotency: IdempotencyStore
    board: FollowerBoard
    owns_database: bool = True
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def projection_worker(self) -> ProjectionWorker:
        return ProjectionWorker(self.ledger, list(self.views.views.values()), board=self.board)

    def start_projections(self) -> None:
        """Run the projection worker in a thread of this process (woken by LISTEN/NOTIFY)."""
        if any(t.name == "projections" for t in self.threads):
            return
        worker = self.projection_worker()
        self._thread(
            "projections", lambda: worker.run_forever(self.database.url, self.stop, poll=0.1)
        )

    def _thread(self, name: str, body: Callable[[], None]) -> None:
        def run() -> None:
            while not self.stop.is_set():
                try:
                    body()
                except Exception:
                    log.exception("%s failed; restarting in 1 s", name)
                    self.stop.wait(1.0)

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def request_worker(self) -> RequestWorker:
        settings = self.settings
        policy = WorkerPolicy(
            retention=self.ledger.retention,
            remind_before=timedelta(days=settings.remind_before_days),
            sweep_every=settings.sweep_seconds,
        )
        tracking = self.tracking(RequestWorker.name)
        return RequestWorker(
            self.ledger, tracking, self.exports, self.views, policy, self.vault, board=self.board
        )

    def relay(self, bootstrap: str) -> Relay:
        settings = self.settings
        tracking = self.tracking(Relay.name)
        config = RelayConfig(
            bootstrap=bootstrap,
            events_topic=settings.events_topic,
            notifications_topic=settings.notifications_topic,
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            source=f"/rightsledger/{settings.database_schema}",
        )
        # reads the log without unsealing personal values; one connection is enough
        reader = RightsLedger({**self.env, "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "0"})
        self.closers.append(reader.close)
        return Relay(self.ledger, tracking, config, reader=reader, board=self.board)

    def tracking(self, name: str) -> PostgresTrackingRecorder:
        """A follower's tracking table (created by the migrations), on the views' connections."""
        return PostgresTrackingRecorder(
            datastore=self.views.datastore, tracking_table_name=f"{name.lower()}_tracking"
        )

    def start_workers(self, bootstrap: str | None) -> None:
        """Run the request workers, and the relay when there is a broker, in this process."""
        worker = self.request_worker()
        self._thread(
            "request-workers",
            lambda: worker.run_forever(self.database.url, self.stop, poll=0.2),
        )
        if bootstrap:
            relay = self.relay(bootstrap)
            self._thread("kafka-relay", lambda: relay.run_forever(self.database.url, self.stop))

    def wait_for(self, view: View, position: int, timeout: float) -> bool:
        """Block until ``view`` has applied ``position``; False on timeout."""
        return self.views.wait(view, position, timeout, self.stop)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)
        self.threads.clear()
        for closer in reversed(self.closers):
            closer()
        self.closers.clear()
        self.ledger.close()
        self.views.close()
        self.invalidations.stop()
        self.pool.close()
        if self.owns_database:
            self.database.close()


def ledger_env(
    settings: Settings, database: Database, *, pool_size: int | None = None
) -> dict[str, str]:
    """The event store's environment; its pool keeps one connection open and grows to
    ``pool_size`` (the API's ``RIGHTSLEDGER_POOL_SIZE`` unless given)."""
    size = pool_size or settings.pool_size
    env = database.eventsourcing_env(settings.database_schema)
    env.update(
        {
            "POSTGRES_POOL_SIZE": "1",
            "POSTGRES_MAX_OVERFLOW": str(size - 1),
            "POSTGRES_LOCK_TIMEOUT": "5",
            "AGGREGATE_CACHE_MAXSIZE": str(settings.aggregate_cache_size),
            # Commands decide on the cached copy: an accepted one on a stale copy fails the
            # version check at insert and is decided again, a refusal is checked against the
            # stored version first, reads fast-forward (RightsLedger._read, _decide).
            "AGGREGATE_CACHE_FASTFORWARD": "n",
            "IS_SNAPSHOTTING_ENABLED": "n",
            "CREATE_TABLE": "y",
            "APPLICATION_RECORDER_TOPIC": get_topic(ChainedRecorder),
            # the stored format unchanged, decoded with orjson (storage/transcoding.py)
            "TRANSCODER_TOPIC": get_topic(FastJSONTranscoder),
        }
    )
    if settings.aggregate_cache_size == 0:
        env.pop("AGGREGATE_CACHE_MAXSIZE")
    return env


def retention_schedule(settings: Settings) -> RetentionSchedule:
    """The retention schedule: the settings' table over the defaults (each entry's reasoning
    kept when the setting gives none); ``billing_retention_days`` sets billing's entry."""
    table = settings.retention
    activity = {
        reason: RetentionRuleSetting(entry.to_span(), entry.basis or DEFAULT_ACTIVITY[reason].basis)
        for reason in ActivityReason
        if (entry := table.get("activity", {}).get(reason.value)) is not None
    }
    billing = DEFAULT_BILLING
    entry = table.get("billing", {}).get("legal")
    if entry is not None:
        billing = RetentionRuleSetting(entry.to_span(), entry.basis or DEFAULT_BILLING.basis)
    elif settings.billing_retention_days is not None:
        billing = RetentionRuleSetting(
            Span(days=settings.billing_retention_days), DEFAULT_BILLING.basis
        )
    return RetentionSchedule.build(activity, billing)


def make_ledger(env: dict[str, str], vault: KeyVault, settings: Settings) -> RightsLedger:
    """The application, with personal values in events sealed by the vault's keys."""
    ledger = RightsLedger(
        env,
        jurisdictions=settings.deadline_rules(),
        retention=retention_schedule(settings),
        mapper_factory=lambda transcoder: SealingMapper(vault, transcoder),
    )
    if settings.group_commit:
        ledger.committer = GroupCommit(ledger, gather=settings.group_commit_gather_ms / 1000)
    return ledger


@dataclass(frozen=True)
class Budget:
    """PostgreSQL connections of one process: each pool keeps one open and grows to its size
    (see docs/architecture.md, "Connection budget")."""

    event_store: int
    views: int
    small: int


def budget(settings: Settings, role: str) -> Budget:
    """An API process takes commands and reads; a follower process (``projections run``,
    ``workers run``, ``relay run``) or a CLI command needs few connections."""
    if role == "api":
        return Budget(event_store=settings.pool_size, views=2, small=2)
    return Budget(event_store=settings.follower_pool_size, views=2, small=2)


def build(settings: Settings, *, database: Database | None = None, role: str = "api") -> Container:
    """Open the store, build the application and the views; seed the admin key if set (API
    processes only).
    ``role`` (``api`` or ``follower``) sets the connection budget."""
    connections = budget(settings, role)
    db = database or open_database(
        settings.database_url.get_secret_value() if settings.database_url else None,
        settings.data_dir,
    )
    try:
        env = ledger_env(settings, db, pool_size=connections.event_store)
        # The schema and every table, created once under the migration lock (several processes
        # creating tables at once fail); below, eventsourcing creates none and the views' own
        # CREATE ... IF NOT EXISTS find theirs there.
        migrate(db.url, settings.database_schema, env)
        env["CREATE_TABLE"] = "n"
        # Keys, data keys, idempotency keys, exports: a connection is checked before use, so
        # one terminated by the server is replaced instead of failing a request.
        pool: ConnectionPool = ConnectionPool(
            db.url,
            min_size=1,
            max_size=connections.small,
            open=True,
            check=ConnectionPool.check_connection,
        )
        invalidations = Invalidations(db.url, settings.database_schema)
        vault = PostgresKeyVault(pool, settings.database_schema, invalidations=invalidations)
        ledger = make_ledger(env, vault, settings)
        # An erasure anywhere drops every decrypted aggregate this process holds.
        invalidations.subscribe("customer-keys", lambda _: ledger.clear_cache(), ledger.clear_cache)
        # The blind index of customer_lookup digests identifiers under the vault's index key.
        views = ViewSet.open(
            env, pool_size=connections.views, blind_index=BlindIndex(vault.index_key)
        )
        keys = ApiKeyStore(pool, settings.database_schema, invalidations=invalidations)
        idempotency = IdempotencyStore(
            pool, settings.database_schema, ttl=timedelta(hours=settings.idempotency_ttl_hours)
        )
        invalidations.start()
        auth_guard = AuthGuard(
            pool,
            settings.database_schema,
            allowed=settings.auth_failures_allowed,
            keep_days=settings.auth_failures_keep_days,
            keep_rows=settings.auth_failures_keep_rows,
        )
        exports = ExportStore(pool, settings.database_schema)
        board = FollowerBoard(pool, settings.database_schema)
        if settings.admin_key is not None and role == "api":
            # the one seeded admin key, replaced when the token changes (never one more);
            # a follower or a CLI command never seeds (it might carry another token)
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
        auth_guard=auth_guard,
        vault=vault,
        exports=exports,
        views=views,
        env=env,
        invalidations=invalidations,
        idempotency=idempotency,
        board=board,
        owns_database=database is None,
    )


class RebuildFailedError(RuntimeError):
    """A rebuild that could not be done: a process rebuilding a share of the log failed or
    ended before it was done, or another rebuild of the same store is running."""


@contextmanager
def _sole_rebuild(container: Container) -> Iterator[None]:
    """The store's rebuild lock, held for the whole rebuild on a connection of its own.

    Rebuilds of one store share the tables they build beside the live ones (``__rebuild``),
    so a second rebuild at the same time is refused, never let to drop the first one's
    tables midway. Under the lock, what a rebuild killed midway left behind (the tables
    splitting the log into shares) is dropped. The lock goes with its connection, so a
    killed rebuild never keeps it."""
    schema = container.settings.database_schema
    with psycopg.connect(container.database.url, autocommit=True) as conn:
        held = conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s))", (f"rightsledger.rebuild.{schema}",)
        ).fetchone()
        if not (held and held[0]):
            raise RebuildFailedError(
                f"another rebuild of the views in schema {schema!r} is running;"
                " run this one when it is done"
            )
        left = drop_leftover_splits(container.views.datastore)
        if left:
            log.info("dropped %d split tables left by an earlier rebuild", len(left))
        yield


def rebuild_views(
    container: Container,
    names: Sequence[str],
    *,
    processes: int = 1,
    progress: Progress | None = None,
    batch_size: int = 2000,
) -> int:
    """Rebuild the views ``names`` beside the live ones and swap them in; their position.

    With several ``processes``, the log up to its head is split into that many shares by
    the customer who owns each stream (``worker.Share``), and each share is applied to
    every view by a process of its own, built from the same settings on the same store: each
    reads and decodes only its share, and the shares run on several cores at once. When
    every share is done, this process joins their tracking records, applies what the log
    gained meanwhile, and swaps the views in. A share that fails ends the others (the live
    views stay as they were) and raises ``RebuildFailedError``, as does a second rebuild of
    the same store while one is running (``_sole_rebuild``).
    """
    chosen = chosen_views(names)
    with _sole_rebuild(container):
        return _rebuild_views(container, chosen, processes, progress, batch_size)


def _rebuild_views(
    container: Container,
    chosen: list[str],
    processes: int,
    progress: Progress | None,
    batch_size: int,
) -> int:
    views = container.views
    datastore = views.datastore
    if processes <= 1:
        return rebuild(
            container.ledger,
            datastore,
            chosen,
            progress=progress,
            batch_size=batch_size,
            context=views.context,
        )
    lives, shadows = fresh_shadows(datastore, chosen, views.context)
    target = container.ledger.recorder.max_notification_id() or 0
    split = split_log(container.ledger, datastore, target, processes)
    shares = [Share(index, processes, split) for index in range(processes)]
    try:
        _rebuild_shares(container, chosen, shares, target, batch_size, progress)
    finally:
        drop_split(datastore, split)
    join_shares(shadows, shares, target)
    return swap_in(ProjectionWorker(container.ledger, shadows, batch_size=batch_size), lives)


def _rebuild_shares(
    container: Container,
    names: list[str],
    shares: list[Share],
    target: int,
    batch_size: int,
    progress: Progress | None,
) -> None:
    """Every share of the log up to ``target`` applied to the views ``names`` (beside the
    live ones), one process per share; returns when all are done."""
    # the children open the store this process uses (never an embedded server of their own)
    settings = container.settings.model_copy(
        update={"database_url": SecretStr(container.database.url)}
    )
    context = multiprocessing.get_context("spawn")  # threads here: never fork
    reports: multiprocessing.Queue[tuple[str, int, int, str]] = context.Queue()
    processes = len(shares)
    children = [
        context.Process(
            target=_rebuild_share,
            args=(settings, names, share, target, batch_size, reports, os.getpid()),
            name=f"rebuild-{share.index}",
            daemon=True,
        )
        for share in shares
    ]
    for child in children:
        child.start()
    done = dict.fromkeys(range(processes), 0)
    finished: set[int] = set()
    try:
        while len(finished) < processes:
            try:
                kind, index, reached, error = reports.get(timeout=1.0)
            except queue.Empty:
                gone = [i for i, c in enumerate(children) if not c.is_alive() and i not in finished]
                if gone and reports.empty():
                    child = children[gone[0]]
                    raise RebuildFailedError(
                        f"the process rebuilding share {gone[0] + 1} of {processes} ended"
                        f" (exit code {child.exitcode}) before it was done"
                    ) from None
                continue
            if kind == "failed":
                raise RebuildFailedError(f"rebuilding share {index + 1} of {processes}: {error}")
            if kind == "done":
                finished.add(index)
                reached = target
            done[index] = reached
            if progress is not None:
                progress(min(done.values()), target)
    finally:
        for child in children:
            if child.is_alive() and child.pid is not None and len(finished) < processes:
                child.terminate()
            child.join(30)
        reports.close()


def _rebuild_share(
    settings: Settings,
    names: list[str],
    share: Share,
    target: int,
    batch_size: int,
    reports: multiprocessing.Queue[tuple[str, int, int, str]],
    parent: int,
) -> None:
    """A rebuilding process: its share of the log up to ``target`` applied to the views
    being rebuilt, reported to the parent (which it does not outlive)."""
    watch_parent(lambda: os._exit(1), parent=parent, grace=0.0)

    def advance(reached: int, _total: int) -> None:
        reports.put(("progress", share.index, reached, ""))

    try:
        container = build(settings, role="follower")
        try:
            views = container.views
            shadows = shadows_of(views.datastore, names, views.context)
            worker = ProjectionWorker(container.ledger, shadows, batch_size=batch_size, share=share)
            worker.catch_up(until=target, progress=advance)
        finally:
            container.close()
    except BaseException as error:
        reports.put(("failed", share.index, 0, f"{type(error).__name__}: {error}"))
        raise
    reports.put(("done", share.index, target, ""))
