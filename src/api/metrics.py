"""``/metrics``: Prometheus text exposition (prometheus-client).

Two kinds of figures:

- **Counted by each API process**: HTTP requests by method, route template and status, with
  a latency histogram; commands (the ``/v1`` writes) by kind and outcome; failed
  authentications by reason. With ``serve --workers N`` the processes count in
  prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, which ``serve`` sets
  for the API processes it starts) and every process answers the sum over all of them.
- **Read from the store at scrape time** (:class:`StoreCollector`), so every process reports
  the same truth: the log's head, each view's and each follower's position, lag (events and
  seconds), state and last report; the request queue by status and type, and overdue; the
  customers erased and purged; failed authentications stored in the last hour.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as render
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from psycopg import sql
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rightsledger.api.offload import OffloadedRoute
from rightsledger.storage.followers import State

if TYPE_CHECKING:
    from rightsledger.bootstrap import Container

log = logging.getLogger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
COMMAND_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
METHODS = COMMAND_METHODS | {"GET", "HEAD", "OPTIONS"}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

router = APIRouter(tags=["health"], route_class=OffloadedRoute)


class Metrics:
    """One API process's metrics: its counters, and the store's figures collected when
    scraped. ``multiprocess_dir`` (``PROMETHEUS_MULTIPROC_DIR``, when set) makes the answer
    the sum over every process that counts in that directory."""

    def __init__(self, container: Container, *, multiprocess_dir: str | None = None) -> None:
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram, Counter | None]] = {}
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rightsledger_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rightsledger_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.commands = Counter(
            "rightsledger_commands",
            "Commands (POST, PATCH, DELETE under /v1) by kind (the operation) and outcome: "
            "accepted (2xx), refused (4xx) or failed (5xx).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "rightsledger_auth_failures",
            "Failed authentications by reason: no_key, unknown_key (unknown or revoked), "
            "limited (refused with 429 before any lookup).",
            ["reason"],
            registry=self.registry,
        )
        self.store = StoreCollector(container)
        if multiprocess_dir:
            # the counters are in the directory's files, written by every process
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        else:
            self.exposed = self.registry
        self.exposed.register(self.store)

    @classmethod
    def from_environment(cls, container: Container) -> Metrics:
        return cls(container, multiprocess_dir=os.environ.get(MULTIPROCESS_ENV) or None)

    def observe(self, method: str, route: BaseRoute | None, status: int, seconds: float) -> None:
        template = getattr(route, "path", None) or "unmatched"
        if method not in METHODS:
            method = "other"  # a client's invented method is no new series
        series = self._series.get((method, template, status))
        if series is None:
            series = self._series[(method, template, status)] = self._children(
                method, route, template, status
            )
        requests, latency, commands = series
        requests.inc()
        latency.observe(seconds)
        if commands is not None:
            commands.inc()

    def _children(
        self, method: str, route: BaseRoute | None, template: str, status: int
    ) -> tuple[Counter, Histogram, Counter | None]:
        """The labelled series one kind of answer counts in (looked up once, then kept)."""
        commands = None
        if method in COMMAND_METHODS and template.startswith("/v1/"):
            kind = getattr(route, "name", None) or template
            commands = self.commands.labels(kind, _outcome(status))
        return (
            self.requests.labels(method, template, str(status)),
            self.latency.labels(method, template),
            commands,
        )

    def auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def exposition(self) -> bytes:
        return render(self.exposed)


def _outcome(status: int) -> str:
    if status < 400:
        return "accepted"
    return "refused" if status < 500 else "failed"


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request by its route template (the
    route the router chose; found by matching when a middleware answered first)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route") or self._match(scope)
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - started)

    def _match(self, scope: Scope) -> BaseRoute | None:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route
        return None


class StoreCollector(Collector):
    """Figures read from the store when ``/metrics`` is scraped; a store that does not
    answer gives ``rightsledger_store_up 0`` and nothing else."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def describe(self) -> list[Metric]:
        return []  # collected from the store only when scraped

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "rightsledger_store_up", "Whether the store answered this scrape (1) or not (0)."
        )
        try:
            figures = list(self._figures())
        except Exception:
            log.warning("metrics: the store did not answer", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from figures

    def _figures(self) -> Iterator[Metric]:
        from rightsledger.api.routers.health import oldest_waiting

        container = self.container
        now = datetime.now(UTC)
        head = container.ledger.recorder.max_notification_id() or 0
        yield _gauge("rightsledger_log_head", "Position of the last event in the log.", head)

        views = GaugeMetricFamily(
            "rightsledger_view_position",
            "Last log position each view has applied.",
            labels=["view"],
        )
        for name, applied in container.views.positions().items():
            views.add_metric([name], applied)
        yield views

        position = GaugeMetricFamily(
            "rightsledger_follower_position",
            "Last log position each follower has dealt with (follower_status).",
            labels=["follower"],
        )
        lag = GaugeMetricFamily(
            "rightsledger_follower_lag_events",
            "Events in the log past each follower's position.",
            labels=["follower"],
        )
        waited = GaugeMetricFamily(
            "rightsledger_follower_lag_seconds",
            "How long the oldest event past each follower's position has waited (0 if none).",
            labels=["follower"],
        )
        heartbeat = GaugeMetricFamily(
            "rightsledger_follower_heartbeat_age_seconds",
            "Seconds since each follower last reported.",
            labels=["follower"],
        )
        state = GaugeMetricFamily(
            "rightsledger_follower_state",
            "Each follower's state: 1 for the one it is in, 0 for the others.",
            labels=["follower", "state"],
        )
        failures = GaugeMetricFamily(
            "rightsledger_follower_failures",
            "Consecutive failures of each follower at its current event.",
            labels=["follower"],
        )
        for status in container.board.statuses():
            position.add_metric([status.name], status.position)
            lag.add_metric([status.name], max(0, head - status.position))
            since = oldest_waiting(container, status.position) if status.position < head else None
            age = max(0.0, (now - since).total_seconds()) if since else 0.0
            waited.add_metric([status.name], age)
            heartbeat.add_metric(
                [status.name], max(0.0, (now - status.heartbeat_at).total_seconds())
            )
            failures.add_metric([status.name], status.failures)
            for candidate in State:
                state.add_metric([status.name, candidate.value], int(status.state is candidate))
        yield from (position, lag, waited, heartbeat, state, failures)
        yield from self._queue(now)
        yield from self._customers()
        yield from self._auth(now)

    def _queue(self, now: datetime) -> Iterator[Metric]:
        view = self.container.views["request_queue"]
        table = view.table("request_queue")
        rows, _ = view.fetch(
            sql.SQL(
                "SELECT type, status, count(*) AS n,"
                " count(*) FILTER (WHERE status IN ('open', 'in_progress') AND due_at < %(now)s)"
                " AS overdue FROM {} GROUP BY type, status"
            ).format(table),
            {"now": now},
        )
        queue = GaugeMetricFamily(
            "rightsledger_requests",
            "Data-rights requests in the request queue, by type and status.",
            labels=["type", "status"],
        )
        overdue = GaugeMetricFamily(
            "rightsledger_requests_overdue",
            "Open or in-progress requests past their due date, by type.",
            labels=["type"],
        )
        late: dict[str, int] = {}
        for row in rows:
            queue.add_metric([row["type"], row["status"]], row["n"])
            late[row["type"]] = late.get(row["type"], 0) + row["overdue"]
        for kind, count in sorted(late.items()):
            overdue.add_metric([kind], count)
        yield queue
        yield overdue

    def _customers(self) -> Iterator[Metric]:
        view = self.container.views["customer_profile"]
        rows, _ = view.fetch(
            sql.SQL(
                "SELECT count(*) AS customers,"
                " count(*) FILTER (WHERE erased_at IS NOT NULL) AS erased,"
                " count(*) FILTER (WHERE purged_at IS NOT NULL) AS purged FROM {}"
            ).format(view.table("customer_profile")),
            {},
        )
        row = rows[0]
        yield _gauge("rightsledger_customers", "Customers registered.", row["customers"])
        yield _gauge(
            "rightsledger_customers_erased",
            "Customers whose personal data is erased.",
            row["erased"],
        )
        yield _gauge(
            "rightsledger_customers_purged",
            "Erased customers whose retained records are purged too.",
            row["purged"],
        )

    def _auth(self, now: datetime) -> Iterator[Metric]:
        table = sql.Identifier(self.container.settings.database_schema, "auth_failures")
        with self.container.pool.connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE at > %s").format(table),
                (now - timedelta(hours=1),),
            ).fetchone()
        yield _gauge(
            "rightsledger_auth_failures_last_hour",
            "Failed authentications stored in the last hour, by every process.",
            row[0] if row else 0,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format; unauthenticated like /health and /ready (no personal data)."""
    found: Metrics = request.app.state.metrics
    body = await run_in_threadpool(found.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def install(app: Any, container: Container) -> Metrics:
    """Count the app's requests and serve ``/metrics``; the metrics are on ``app.state``."""
    found = Metrics.from_environment(container)
    app.state.metrics = found
    app.include_router(router)
    app.add_middleware(RequestMetrics, metrics=found, routes=app.router.routes)
    return found
