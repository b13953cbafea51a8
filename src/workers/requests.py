"""Request workers: fulfil access, correction, opt-out and deletion requests; chase deadlines.

The worker follows the event log from its own tracked position (a tracking table in
PostgreSQL). When a request's requester is verified it does the request's work through
the ledger's commands, which record what was done as events on the request itself; a
request that already records its work is left alone, so an event seen twice (after a
crash between the work and the tracking write) does nothing new.

A deletion is recorded first (``Customer.Erased``, with the request's progress, in one
transaction); destroying the customer's keys and deleting their exports follow from that
event, which the worker also reacts to. Both are idempotent and the tracked position moves
only after them, so a crash at any point is completed when the event is handled again:
the erasure is either recorded and carried out, or neither.

A periodic sweep chases deadlines (reminders, overdue marks, escalations, expiry) of the
requests that need attention by now, purges retained billing records whose retention
date has passed, and purges activity past its retention schedule: for each purpose, the
customers holding a period key that has passed it (the key vault knows each key's period)
get ``Customer.ActivityPurged`` recorded, and only then are the keys of the periods the log
records as purged destroyed. A crash in between leaves the keys live, so the next sweep
finds the customer again, records nothing new and destroys them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.utils import Environment

from rightsledger.domain.customer import Customer
from rightsledger.domain.errors import DomainError
from rightsledger.domain.ledger import ConcurrentChangeError, RightsLedger
from rightsledger.domain.naming import stored_names
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.domain.retention import RetentionSchedule
from rightsledger.domain.values import ActivityReason, Category, RequestType
from rightsledger.projections.base import APPLICATION_NAME
from rightsledger.projections.worker import FOLLOWER as PROJECTIONS
from rightsledger.projections.worker import ViewSet
from rightsledger.storage import chain
from rightsledger.storage.exports import ExportStore
from rightsledger.storage.followers import (
    FollowerBoard,
    FollowerRunner,
    State,
    follow_log,
    is_transient,
)
from rightsledger.storage.keyvault import PERSONAL, RETAINED, KeyVault
from rightsledger.storage.sealing import ERASED
from rightsledger.workers import export

log = logging.getLogger(__name__)

GATHER = 0.05
"""Seconds to wait after a wake-up before reading, so batches hold more than one event."""

BUSY_GATHER = 0.1
"""The same under load (woken again within ``followers.BUSY_WITHIN``): larger batches."""

ACTOR = "worker:requests"
FOLLOWER = "request-workers"
ERASURE_VIEW_WAIT = 30.0
"""How long an erasure waits for the customer's profile view to apply it before it is
recorded (then it is retried, as a transient failure)."""
PROJECTIONS_SILENT = timedelta(seconds=15)
"""A projection worker silent this long is not waited for (``/ready`` reports it)."""
"""This follower's name in ``follower_status``."""


@dataclass(frozen=True)
class WorkerPolicy:
    """How long each category is kept (billing records after erasure, activity by purpose),
    and when deadlines are chased."""

    retention: RetentionSchedule
    remind_before: timedelta
    sweep_every: float = 30.0
    sweep_page: int = 500
    """Requests read from ``request_queue`` at a time by the sweep."""
    sweep_cap: int = 5000
    """Requests chased by one sweep at most; the rest (a genuine backlog) wait for the next."""
    purge_page: int = 500
    """Customers whose activity one sweep purges at most, per purpose; the rest wait."""


def open_tracking(env: dict[str, str], name: str) -> PostgresTrackingRecorder:
    factory = InfrastructureFactory[PostgresTrackingRecorder].construct(
        env=Environment(name, {**env, "POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "2"})
    )
    return factory.tracking_recorder(PostgresTrackingRecorder)


class RequestWorker:
    """Carries out verified requests; sweeps deadlines and ended retention periods."""

    name = "request_workers"

    def __init__(
        self,
        ledger: RightsLedger,
        tracking: PostgresTrackingRecorder,
        exports: ExportStore,
        views: ViewSet,
        policy: WorkerPolicy,
        vault: KeyVault,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        board: FollowerBoard | None = None,
    ) -> None:
        self.ledger = ledger
        self.tracking = tracking
        self.exports = exports
        self.views = views
        self.policy = policy
        self.vault = vault
        self.clock = clock
        self.board = board
        self.retry_delay = 0.5
        """First back-off after a failure (doubling to 30 s)."""

    def position(self) -> int:
        return self.tracking.max_tracking_id(APPLICATION_NAME) or 0

    # ---------------------------------------------------------------- reacting

    def handle(self, event: object, position: int | None = None) -> None:
        """Do what an event calls for (at ``position`` in the log, when known); anything
        already done is left alone."""
        if isinstance(event, DataRightsRequest.IdentityVerified):
            self._fulfil(event.originator_id)
        elif isinstance(event, Customer.Erased):
            self._carry_out_erasure(event.originator_id, event.request_id, position)

    def _fulfil(self, request_id: UUID) -> None:
        request = self.ledger.get_request(request_id)
        if request.status.is_final or request.work_done or request.export_digest:
            return
        try:
            if request.request_type is RequestType.ACCESS:
                self._access(request)
            elif request.request_type is RequestType.CORRECTION:
                self.ledger.fulfil_correction(request_id, actor=ACTOR)
            elif request.request_type is RequestType.OPT_OUT:
                self.ledger.fulfil_opt_out(request_id, actor=ACTOR)
            elif request.request_type is RequestType.DELETION:
                # The erasure is recorded first; keys and exports go when the worker handles
                # the Customer.Erased event this records (next in the log it follows).
                self.ledger.start_deletion(request_id, actor=ACTOR)
        except ConcurrentChangeError:
            raise  # transient: the event is handled again
        except DomainError as error:
            log.warning("request %s could not be carried out: %s", request_id, error.detail)
            try:
                self.ledger.deny_request(
                    request_id, reason=f"could not be carried out: {error.detail}", actor=ACTOR
                )
            except DomainError:
                log.exception("request %s could not be denied either", request_id)

    def _access(self, request: DataRightsRequest) -> None:
        customer = self.ledger.get_customer(request.customer_id)
        partners: dict[str, Partner] = {}
        for disclosure in customer.disclosures:
            key = str(disclosure.partner_id)
            if key not in partners:
                partners[key] = self.ledger.get_partner(disclosure.partner_id)
        retention = self.policy.retention.statement()
        document = export.assemble(
            request,
            customer,
            partners,
            retention=retention,
            generated_at=self.clock(),
            reads=export.recorded_reads(self.views.audit_trail, self.ledger, customer.id),
            schedule=self.policy.retention.describe(),
        )
        digest = export.digest(document)
        self.exports.save(request.id, customer.id, digest, document)
        self.ledger.fulfil_access(
            request.id,
            digest=digest,
            categories=sorted(document["categories"]),
            items=export.items(document),
            actor=ACTOR,
        )

    def _carry_out_erasure(
        self, customer_id: UUID, request_id: UUID, position: int | None = None
    ) -> None:
        """What a recorded erasure (``Customer.Erased`` at ``position``) calls for, each step
        idempotent: destroy the customer's personal keys (their own and their requests'),
        delete their access exports, drop every decrypted copy held here, wait until the
        customer's profile view has applied the erasure, then record it (which fulfils the
        deletion when no recipient is awaited). Handled again after a crash, it completes."""
        self.vault.destroy(customer_id, PERSONAL)
        self.exports.delete_for_customer(customer_id)
        self._evict(customer_id, request_id)
        if position is not None:
            self._profile_applied(position)
        # only now may the deletion read fulfilled: nothing erased is readable any more
        self.ledger.confirm_erasure(request_id, actor=ACTOR)

    def _profile_applied(self, position: int) -> None:
        """Wait until the customer profile view (which shows personal values) has applied
        the log up to ``position``, while a projection worker is running; TimeoutError (a
        transient failure: the erasure is handled again) when it has not within
        ``ERASURE_VIEW_WAIT``. With no projection worker running there is nothing to wait
        for: the view applies the erasure before anything after it when one starts."""
        if self.board is None:
            return
        now = datetime.now(UTC)
        running = any(
            status.name == PROJECTIONS
            and status.state is State.RUNNING
            and now - status.heartbeat_at < PROJECTIONS_SILENT
            for status in self.board.statuses()
        )
        view = self.views.customer_profile
        if running and not self.views.wait(view, position, ERASURE_VIEW_WAIT):
            msg = f"the {view.name} view has not applied position {position} yet"
            raise TimeoutError(msg)

    def _shred(self, customer_id: UUID, kind: str, *request_ids: UUID) -> None:
        """Destroy the customer's keys of that kind; drop every decrypted copy held here."""
        self.vault.destroy(customer_id, kind)
        self._evict(customer_id, *request_ids)

    def _evict(self, customer_id: UUID, *request_ids: UUID) -> None:
        requests, _ = self.views.request_queue.search(
            customer_id=customer_id, now=self.clock(), limit=500
        )
        self.ledger.evict(customer_id, *request_ids, *(row["request_id"] for row in requests))

    TOPICS = (*stored_names(DataRightsRequest.IdentityVerified), *stored_names(Customer.Erased))
    """The only events the worker reacts to (every name they are stored under); PostgreSQL
    filters the log by them."""

    def catch_up(self, limit: int = 200) -> int:
        """Handle every relevant event past the tracked position; returns the new position."""
        return self.scan(limit)[0]

    def scan(self, limit: int = 200, *, pages: int | None = None) -> tuple[int, int]:
        """Handle relevant events past the tracked position (``pages`` pages of ``limit`` at
        most); the tracked position, and how far the log has been looked through (the head
        when everything relevant is handled: the events in between need nothing)."""
        head = self.ledger.recorder.max_notification_id() or 0
        position = self.position()
        left = pages
        while left is None or left > 0:
            notifications = self.ledger.recorder.select_notifications(
                start=position, limit=limit, topics=self.TOPICS, inclusive_of_start=False
            )
            if not notifications:
                return position, max(position, head)
            for notification in notifications:
                self.handle(self.ledger.mapper.to_domain_event(notification), notification.id)
                self.tracking.insert_tracking(Tracking(APPLICATION_NAME, notification.id))
                position = notification.id
            if left is not None:
                left -= 1
        return position, position

    def next_position(self, after: int) -> int | None:
        """The next event this worker reacts to after ``after``."""
        found = self.ledger.recorder.select_notifications(
            start=after, limit=1, topics=self.TOPICS, inclusive_of_start=False
        )
        return found[0].id if found else None

    def skip(self, position: int, actor: str) -> None:
        """Step over the event at ``position`` on an operator's decision, recorded first."""
        self.ledger.record_skip(
            follower=FOLLOWER, position=position, reason="skipped by an operator", actor=actor
        )
        self.tracking.insert_tracking(Tracking(APPLICATION_NAME, position))

    # ---------------------------------------------------------------- sweeping

    def sweep(self) -> dict[str, int]:
        """Chase deadlines and purge expired retained records; counts of what was done."""
        now = self.clock()
        counts: dict[str, int] = {}
        self._chase_deadlines(now, counts)
        for customer_id in self.views.customer_profile.retention_ended(now):
            try:
                self.ledger.purge_retained(customer_id, actor=ACTOR)
                self.exports.delete_for_customer(customer_id)
                self._shred(customer_id, RETAINED)
                self._shred(customer_id, PERSONAL)  # keys of any request made since erasure
                counts["purged"] = counts.get("purged", 0) + 1
            except DomainError as error:
                log.warning("could not purge %s: %s", customer_id, error.detail)
        self._purge_activity(now, counts)
        return counts

    def _purge_activity(self, now: datetime, counts: dict[str, int]) -> None:
        """For each purpose activity is logged for: the customers holding a key of a period
        past the schedule get ``ActivityPurged`` recorded, then the keys of the periods the
        log records as purged are destroyed (never before the event is recorded)."""
        schedule = self.policy.retention
        category = Category.ACTIVITY.value
        for reason in ActivityReason:
            due = schedule.activity_due(reason, now)
            customers = self.vault.customers_with_periods_ended(
                category=category, purpose=reason.value, ended_by=due, limit=self.policy.purge_page
            )
            for customer_id in customers:
                try:
                    entries, through = self.ledger.purge_activity(
                        customer_id, reason=reason.value, now=now, actor=ACTOR
                    )
                except ConcurrentChangeError:
                    raise  # transient: the next sweep finds the customer again
                except DomainError as error:
                    log.warning("could not purge activity of %s: %s", customer_id, error.detail)
                    continue
                if through is not None:
                    # exports delivered before: the purged entries go there too, before the
                    # keys (a crash in between leaves both for the next sweep to finish)
                    held = self.ledger.get_customer(customer_id).activity
                    self.exports.redact_activity(
                        customer_id, kept={str(e.entry_id) for e in held}, placeholder=ERASED
                    )
                    self.vault.destroy_periods(
                        customer_id, category=category, purpose=reason.value, ended_by=through
                    )
                elif self.ledger.get_customer(customer_id).erased_at is not None:
                    # erased (recorded): every personal key goes, as carrying it out does
                    self.vault.destroy(customer_id, PERSONAL)
                self.ledger.evict(customer_id)
                if entries:
                    counts["activity_purged"] = counts.get("activity_purged", 0) + len(entries)

    def _chase_deadlines(self, now: datetime, counts: dict[str, int]) -> None:
        """Chase every request whose next step is due by ``now`` (``next_attention_at``),
        soonest first, in pages, up to ``policy.sweep_cap``; nothing else is read."""
        policy = self.policy
        chased = legacy = 0
        after: tuple[datetime, UUID] | None = None
        while chased < policy.sweep_cap:
            rows = self.views.request_queue.needing_attention(
                now=now,
                remind_before=policy.remind_before,
                limit=min(policy.sweep_page, policy.sweep_cap - chased),
                after=after,
            )
            if not rows:
                break
            for row in rows:
                legacy += row["legacy"]
                try:
                    for action in self.ledger.chase(
                        row["request_id"], remind_before=policy.remind_before, actor=ACTOR
                    ):
                        counts[action] = counts.get(action, 0) + 1
                except DomainError as error:
                    log.warning("could not chase %s: %s", row["request_id"], error.detail)
            chased += len(rows)
            after = (rows[-1]["next_attention_at"], rows[-1]["request_id"])
        else:
            log.warning(
                "deadline sweep stopped at its cap of %d requests; the rest wait for the next",
                policy.sweep_cap,
            )
        if legacy:
            log.warning(
                "%d requests were chased by the former rule: their request_queue rows predate "
                "next-attention facts; run `rightsledger projections rebuild request_queue`",
                legacy,
            )

    def run_forever(
        self,
        database_url: str,
        stop: threading.Event,
        *,
        poll: float = 0.5,
        board: FollowerBoard | None = None,
    ) -> None:
        """Follow the log until ``stop`` is set, sweeping every ``policy.sweep_every`` seconds.
        Failures are handled by ``FollowerRunner`` (retried, or parked at the failing event)."""
        channel = self.ledger.recorder.channel_name  # type: ignore[attr-defined]
        schema = self.tracking.datastore.schema
        runner = FollowerRunner(FOLLOWER, board or self.board, first_delay=self.retry_delay)
        next_sweep = [0.0]

        def sweep_when_due() -> None:
            if time.monotonic() < next_sweep[0]:
                return
            try:
                self.sweep()
                chain.checkpoint(database_url, schema)
            except Exception as error:
                if is_transient(error):
                    raise
                # a sweep failure is not the log's: report it, and go on following the log
                log.exception("the deadline sweep failed; next attempt in %s s", 30)
                next_sweep[0] = time.monotonic() + 30
                return
            next_sweep[0] = time.monotonic() + self.policy.sweep_every

        def step(limit: int) -> int:
            _, scanned = self.scan(limit or 200, pages=1 if limit else 20)
            sweep_when_due()
            return scanned

        follow_log(
            runner,
            database_url=database_url,
            schema=schema,
            role="request-workers",
            channel=channel,
            stop=stop,
            step=step,
            position=self.position,
            skip=self.skip,
            locate=self.next_position,
            poll=poll,
            gather=GATHER,
            busy_gather=BUSY_GATHER,
        )
