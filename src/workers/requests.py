"""Request workers: fulfil access, correction, opt-out and deletion requests; chase deadlines.

The worker follows the event log from its own tracked position (a tracking table in
PostgreSQL). When a request's requester is verified it does the request's work through
the ledger's commands, which record what was done as events on the request itself; a
request that already records its work is left alone, so an event seen twice (after a
crash between the work and the tracking write) does nothing new. A periodic sweep
chases deadlines (reminders, overdue marks, escalations, expiry) and purges retained
billing records whose retention date has passed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.utils import Environment, get_topic
from psycopg import sql

from rightsledger.domain.errors import DomainError
from rightsledger.domain.ledger import ConcurrentChangeError, RightsLedger
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.domain.values import RequestType
from rightsledger.projections.base import APPLICATION_NAME
from rightsledger.projections.worker import ViewSet, exclusive
from rightsledger.storage import chain
from rightsledger.storage.exports import ExportStore
from rightsledger.storage.keyvault import PERSONAL, RETAINED, KeyVault
from rightsledger.workers import export

log = logging.getLogger(__name__)

GATHER = 0.01
"""Seconds to wait after a wake-up before reading, so batches hold more than one event."""

ACTOR = "worker:requests"


@dataclass(frozen=True)
class WorkerPolicy:
    """How long billing records are kept after erasure, and when deadlines are chased."""

    retain_billing_for: timedelta
    remind_before: timedelta
    sweep_every: float = 30.0


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
    ) -> None:
        self.ledger = ledger
        self.tracking = tracking
        self.exports = exports
        self.views = views
        self.policy = policy
        self.vault = vault
        self.clock = clock

    def position(self) -> int:
        return self.tracking.max_tracking_id(APPLICATION_NAME) or 0

    # ---------------------------------------------------------------- reacting

    def handle(self, event: Any) -> None:
        """Do what an event calls for; anything already done is left alone."""
        if isinstance(event, DataRightsRequest.IdentityVerified):
            self._fulfil(event.originator_id)

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
                # Keys and exports go first: if the worker dies before the erasure is recorded,
                # the event is handled again and the erasure recorded then.
                self.exports.delete_for_customer(request.customer_id)
                self._shred(request.customer_id, PERSONAL, request_id)
                self.ledger.start_deletion(
                    request_id, retain_for=self.policy.retain_billing_for, actor=ACTOR
                )
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
            key = str(disclosure["partner_id"])
            if key not in partners:
                partners[key] = self.ledger.get_partner(disclosure["partner_id"])
        retention = (
            "Billing records and the payment processor's token are kept for "
            f"{self.policy.retain_billing_for.days} days after erasure for regulatory "
            "compliance; everything else is erased on a deletion request."
        )
        document = export.assemble(
            request,
            customer,
            partners,
            retention=retention,
            generated_at=self.clock(),
            reads=export.recorded_reads(self.views.audit_trail, self.ledger, customer.id),
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

    def _shred(self, customer_id: UUID, kind: str, *request_ids: UUID) -> None:
        """Destroy the customer's keys of that kind; drop every decrypted copy held here."""
        self.vault.destroy(customer_id, kind)
        requests, _ = self.views.request_queue.search(
            customer_id=customer_id, now=self.clock(), limit=500
        )
        self.ledger.evict(customer_id, *request_ids, *(row["request_id"] for row in requests))

    TOPICS = (get_topic(DataRightsRequest.IdentityVerified),)
    """The only events the worker reacts to; PostgreSQL filters the log by them."""

    def catch_up(self, limit: int = 200) -> int:
        """Handle every relevant event past the tracked position; returns the new position."""
        position = self.position()
        while True:
            notifications = self.ledger.recorder.select_notifications(
                start=position, limit=limit, topics=self.TOPICS, inclusive_of_start=False
            )
            if not notifications:
                return position
            for notification in notifications:
                self.handle(self.ledger.mapper.to_domain_event(notification))
                self.tracking.insert_tracking(Tracking(APPLICATION_NAME, notification.id))
                position = notification.id

    # ---------------------------------------------------------------- sweeping

    def sweep(self) -> dict[str, int]:
        """Chase deadlines and purge expired retained records; counts of what was done."""
        now = self.clock()
        counts: dict[str, int] = {}
        due, _ = self.views.request_queue.search(
            due_before=now + self.policy.remind_before, open_only=True, now=now, limit=500
        )
        for row in due:
            if row["status"] not in ("open", "in_progress"):
                continue
            try:
                for action in self.ledger.chase(
                    row["request_id"], remind_before=self.policy.remind_before, actor=ACTOR
                ):
                    counts[action] = counts.get(action, 0) + 1
            except DomainError as error:
                log.warning("could not chase %s: %s", row["request_id"], error.detail)
        for customer_id in self.views.customer_profile.retention_ended(now):
            try:
                self.ledger.purge_retained(customer_id, actor=ACTOR)
                self.exports.delete_for_customer(customer_id)
                self._shred(customer_id, RETAINED)
                self._shred(customer_id, PERSONAL)  # keys of any request made since erasure
                counts["purged"] = counts.get("purged", 0) + 1
            except DomainError as error:
                log.warning("could not purge %s: %s", customer_id, error.detail)
        return counts

    def run_forever(self, database_url: str, stop: threading.Event, *, poll: float = 0.5) -> None:
        """Follow the log until ``stop`` is set, sweeping every ``policy.sweep_every`` seconds."""
        channel = self.ledger.recorder.channel_name  # type: ignore[attr-defined]
        next_sweep = 0.0
        schema = self.tracking.datastore.schema
        with (
            exclusive(database_url, schema, stop, "request-workers") as acquired,
            psycopg.connect(database_url, autocommit=True) as listener,
        ):
            if not acquired:
                return
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            while not stop.is_set():
                self.catch_up()
                if time.monotonic() >= next_sweep:
                    self.sweep()
                    chain.checkpoint(database_url, self.tracking.datastore.schema)
                    next_sweep = time.monotonic() + self.policy.sweep_every
                for _ in listener.notifies(timeout=poll, stop_after=1):
                    stop.wait(GATHER)  # let a few more commits arrive: bigger, cheaper batches
