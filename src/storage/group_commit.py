"""Group commit: concurrent commands' events written in one transaction.

One writer thread takes every command waiting to be written and saves their events
together: one table lock, one commit and one notification for the lot. When any of
them conflicts (another writer got there first), each command of that batch is
written on its own, so only the conflicting one fails and is decided again.

The writer gathers under load: when commands arrive less than two windows apart (a moving
average of the gaps between them) and batches have been holding more than one command (a
moving average of their sizes: clients are waiting side by side), a batch begun waits
until ``gather`` seconds after its first command for others to share its transaction, or
until it holds as many as the largest batch of late (everyone who sends at once). A
command on a quiet service, or each command of a single client sending one after the
other, is written at once. Under load this gives fewer, larger transactions, and less
work per command for the writer, PostgreSQL and the followers (docs/benchmarks.md).

A waiting command never hangs: when the writer thread has died or the committer has
been stopped it gets ``CommitUnavailableError`` at once (nothing was written), and
when its batch takes longer than ``timeout`` it gets ``OutcomeUnknownError`` (the
write may still complete; a retry with the same idempotency key is safe).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from rightsledger.domain.ledger import (
    CommandMark,
    CommandTag,
    CommitUnavailableError,
    OutcomeUnknownError,
)
from rightsledger.storage.keyvault import KeyVault, NewKey

log = logging.getLogger(__name__)

_COMPANY = 1.25
"""The average batch size above which commands are taken to come from several clients."""


class _Pending:
    """One command's events waiting for the group commit."""

    def __init__(
        self,
        events: list[Any],
        aggregates: tuple[Aggregate, ...],
        tag: CommandTag | None,
        result: str | None,
    ) -> None:
        self.events = events
        self.aggregates = aggregates
        self.tag = tag
        self.result = result
        self.keys: list[NewKey] = []
        """Keys reserved for these events, written in their transaction."""
        self.done = threading.Event()
        self.queued = 0.0
        """When it was queued (``time.monotonic``)."""
        self.position = 0
        self.error: BaseException | None = None


def command_marks(batch: Sequence[_Pending]) -> list[CommandMark]:
    """Where each tagged command's events are in the batch, for the recorder."""
    marks: list[CommandMark] = []
    start = 0
    for pending in batch:
        if pending.tag is not None:
            marks.append(CommandMark(pending.tag, start, len(pending.events), pending.result))
        start += len(pending.events)
    return marks


class GroupCommit:
    """The ledger's committer when group commit is on (see the module's docstring)."""

    def __init__(
        self,
        app: Application[Any],
        *,
        max_batch: int = 64,
        timeout: float = 30.0,
        gather: float = 0.002,
    ) -> None:
        self._app = app
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._max_batch = max_batch
        self._timeout = timeout
        self._gather = gather
        self._gap = 1.0
        """A moving average of the gaps between commands' arrivals (seconds); none yet
        counts as quiet."""
        self._size = 1.0
        """A moving average of the batches' sizes (commands)."""
        self._most = 1.0
        """The largest batch of late (slowly forgotten): about how many clients are sending
        at once; a batch that has them all waits for no one else."""
        self._arrived = 0.0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopped.is_set()

    def commit(
        self, aggregates: tuple[Aggregate, ...], tag: CommandTag | None, result: str | None
    ) -> int:
        events = [event for aggregate in aggregates for event in aggregate.collect_events()]
        if not events:
            return self._app.recorder.max_notification_id() or 0
        if not self.alive:
            raise CommitUnavailableError("the event writer is not running; nothing was recorded")
        pending = _Pending(events, aggregates, tag, result)
        prepare = getattr(self._app.mapper, "prepare", None)
        if prepare is not None:
            # keys fetched here, in parallel, not by the writer; new ones reserved, to be
            # written with the events
            pending.keys = list(prepare(events) or ())
        pending.queued = time.monotonic()
        self._queue.put(pending)
        waited = 0.0
        while not pending.done.wait(0.5):
            waited += 0.5
            if not self._thread.is_alive():
                raise OutcomeUnknownError(
                    "the event writer stopped while this command was being written"
                )
            if waited >= self._timeout:
                raise OutcomeUnknownError(
                    f"the event store did not confirm the write within {self._timeout:g} s"
                )
        if pending.error is not None:
            raise pending.error
        return pending.position

    def _settle(self, keys: list[NewKey], *, stored: bool) -> None:
        vault = getattr(self._app.mapper, "vault", None)
        if keys and isinstance(vault, KeyVault):
            vault.settle(keys, stored=stored)

    def stop(self) -> None:
        self._stopped.set()
        self._queue.put(None)
        self._thread.join(timeout=10)
        # Anything still queued is answered, never left waiting.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._settle(item.keys, stored=False)
                item.error = CommitUnavailableError("the ledger stopped; nothing was recorded")
                item.done.set()

    def arrived(self, queued: float) -> None:
        """Count a command queued at ``queued`` in the moving average of the gaps between
        arrivals (a gap counts for at most a second)."""
        self._gap += (min(queued - self._arrived, 1.0) - self._gap) / 8
        self._arrived = queued

    def wrote(self, size: int) -> None:
        """Count a batch of ``size`` commands in the moving average of the sizes and in the
        largest of late (which forgets one command every 32 batches)."""
        self._size += (size - self._size) / 8
        self._most = max(float(size), self._most - 1 / 32)

    def complete(self, size: int) -> bool:
        """Whether a gathering batch of ``size`` has everyone: as many commands as the
        largest batch of late (about as many as clients send at once), so none is coming."""
        return size >= self._most

    @property
    def gathering(self) -> bool:
        """Whether a batch begun waits for more: commands come close together, and from
        several clients at once (batches have held more than one)."""
        return self._gap < 2 * self._gather and self._size > _COMPANY

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            self.arrived(first.queued)
            deadline = time.monotonic() + self._gather if self.gathering else 0.0
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if left <= 0 or self.complete(len(batch)):
                        break
                    try:
                        item = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
                if item is None:
                    self._write(batch)
                    return
                self.arrived(item.queued)
                batch.append(item)
            self.wrote(len(batch))
            self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        keys = [key for pending in batch for key in pending.keys]
        try:
            # the event store itself, not ``Application.save``: given events (not
            # aggregates) save does nothing more, but checks each event against runtime
            # protocols first, which cost more than its sealing
            recordings = self._app.events.put(
                [event for p in batch for event in p.events],
                commands=command_marks(batch),
                keys=keys,
            )
        except IntegrityError as error:
            if len(batch) > 1:
                for pending in batch:
                    self._write([pending])
                return
            self._settle(keys, stored=False)
            batch[0].error = error
            batch[0].done.set()
            return
        except BaseException as error:
            self._settle(keys, stored=False)
            for pending in batch:
                pending.error = error
                pending.done.set()
            return
        self._settle(keys, stored=True)
        positions = {
            (r.domain_event.originator_id, r.domain_event.originator_version): r.notification.id
            for r in recordings
        }
        cache = self._app.repository.cache
        for pending in batch:
            pending.position = max(
                positions[(e.originator_id, e.originator_version)] for e in pending.events
            )
            if cache is not None:
                for aggregate in pending.aggregates:
                    cache.put(aggregate.id, aggregate)
            pending.done.set()
