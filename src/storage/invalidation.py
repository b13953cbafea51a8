"""Cache invalidation across processes, through PostgreSQL LISTEN/NOTIFY.

Every process of a deployment (API replicas, the projection worker, the request
workers, the relay, the CLI) keeps small caches: API keys by digest, data keys by
id, aggregates by id. A change that must take effect everywhere at once (a key
revoked, a customer's keys destroyed) is announced with ``NOTIFY`` *in the same
transaction* that makes the change, on a channel named after the schema; each
process's ``Invalidations`` listener drops the affected entries as soon as the
commit is visible.

A cache may only trust its entries while the listener is connected: between a lost
connection and the moment ``LISTEN`` is in place again, notifications can be missed.
So when the listener loses its connection it marks itself unhealthy (the caches then
go to the database for every lookup), reconnects with back-off, and clears every
cache once it listens again before it reports healthy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

Handler = Callable[[str], None]
"""Called with a notification's argument (the part after ``kind:``)."""


def channel_name(schema: str) -> str:
    """The notification channel of one schema's deployment."""
    return f"rightsledger_invalidate_{schema}"


def notify(cursor: psycopg.Cursor[Any], schema: str, kind: str, argument: str) -> None:
    """Announce an invalidation inside the caller's transaction (delivered on commit)."""
    cursor.execute("SELECT pg_notify(%s, %s)", (channel_name(schema), f"{kind}:{argument}"))


class Invalidations:
    """One listener thread per process, dispatching ``kind:argument`` notifications."""

    def __init__(self, database_url: str, schema: str) -> None:
        self._url = database_url
        self._channel = channel_name(schema)
        self._handlers: dict[str, list[Handler]] = {}
        self._clearers: list[Callable[[], None]] = []
        self._healthy = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def healthy(self) -> bool:
        """True while every notification since the last cache clear has been received."""
        return self._healthy.is_set()

    def subscribe(self, kind: str, handler: Handler, clear: Callable[[], None]) -> None:
        """Call ``handler`` for each ``kind`` notification; ``clear`` drops the whole cache."""
        with self._lock:
            self._handlers.setdefault(kind, []).append(handler)
            self._clearers.append(clear)

    def start(self, *, wait: float = 5.0) -> Invalidations:
        """Start listening; waits (up to ``wait`` s) until the first LISTEN is in place."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="invalidations", daemon=True)
            self._thread.start()
        self._healthy.wait(wait)
        return self

    def stop(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            # Wake the listener out of its wait; closing from here is allowed by psycopg.
            try:
                conn.cancel_safe(timeout=1.0)
            except Exception:
                log.debug("cancelling the listener's wait failed", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._healthy.clear()

    def _clear_all(self) -> None:
        with self._lock:
            clearers = list(self._clearers)
        for clear in clearers:
            clear()

    def _dispatch(self, payload: str) -> None:
        kind, _, argument = payload.partition(":")
        with self._lock:
            handlers = list(self._handlers.get(kind, ()))
        for handler in handlers:
            try:
                handler(argument)
            except Exception:
                log.exception("invalidation handler for %r failed; clearing all caches", kind)
                self._clear_all()

    def _run(self) -> None:
        delay = 0.1
        reported = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    self._conn = conn
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    # Anything announced while we were not listening is unknown: start clean.
                    self._clear_all()
                    self._healthy.set()
                    if reported:
                        log.info("cache invalidation listener reconnected")
                    reported = False
                    delay = 0.1
                    while not self._stop.is_set():
                        for notification in conn.notifies(timeout=1.0, stop_after=256):
                            self._dispatch(notification.payload)
            except Exception as error:
                self._healthy.clear()
                self._clear_all()
                if self._stop.is_set():
                    break
                if not reported:
                    log.warning(
                        "cache invalidation listener lost its connection (%s); caches bypassed "
                        "until it is back",
                        error,
                    )
                    reported = True
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._conn = None
        self._healthy.clear()
