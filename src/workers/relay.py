"""The relay: every domain event, in log order, to Kafka; at least once, nothing lost.

Events are read from the log after the relay's tracked position, turned into
CloudEvents without personal data (``cloudevents.envelope``) and produced with the
customer id as key (a partner's own events use the partner id), so one customer's
events stay ordered on one partition. The tracked position advances only after the
broker acknowledged every record of the batch (``acks=all``, idempotent producer);
after a crash or an outage the relay resumes from the last acknowledged position, so
consumers may see an event twice and must dedupe on the CloudEvents ``id``.

A request's ``PartnersNotified`` event is also delivered to each notified partner on
the partner-notifications topic, keyed by partner id.

When the relay creates the events topic itself (a fresh broker, e.g. the embedded one
after a restart, which keeps nothing) while its tracked position is ahead, it
republishes from the start of the log, so downstream consumers are offered the whole
history again.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg import sql

from rightsledger.domain.access import AccessRecord
from rightsledger.domain.customer import Customer
from rightsledger.domain.ledger import RightsLedger
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.projections.base import APPLICATION_NAME
from rightsledger.projections.worker import exclusive
from rightsledger.workers import cloudevents

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer  # type: ignore[import-untyped]
    from kafka.admin import KafkaAdminClient, NewTopic  # type: ignore[import-untyped]
    from kafka.errors import TopicAlreadyExistsError  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

GATHER = 0.01
"""Seconds to wait after a wake-up before reading, so batches hold more than one event."""


@dataclass(frozen=True)
class RelayConfig:
    bootstrap: str
    events_topic: str = "rightsledger.events"
    notifications_topic: str = "rightsledger.partner-notifications"
    partitions: int = 3
    replication_factor: int = 1
    source: str = "/rightsledger"
    batch_size: int = 2000
    send_timeout: float = 30.0


def producer_settings(bootstrap: str) -> dict[str, Any]:
    """Idempotent, acks=all: a retried send cannot reorder or duplicate within a partition."""
    return {
        "bootstrap_servers": bootstrap,
        "client_id": "rightsledger-relay",
        "acks": "all",
        "enable_idempotence": True,
        "retries": 2**31 - 1,
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "request_timeout_ms": 10_000,
        "delivery_timeout_ms": 30_000,
        "reconnect_backoff_max_ms": 1000,
    }


class Relay:
    """Publishes the log to Kafka and tracks the last acknowledged position in PostgreSQL."""

    name = "kafka_relay"

    def __init__(
        self,
        ledger: RightsLedger,
        tracking: PostgresTrackingRecorder,
        config: RelayConfig,
        *,
        reader: RightsLedger | None = None,
        producer_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.ledger = ledger
        # Nothing sealed goes on the topic, so the log can be read without unsealing.
        self.reader = reader or ledger
        self.tracking = tracking
        self.config = config
        self._producer_factory = producer_factory or (
            lambda: KafkaProducer(**producer_settings(config.bootstrap))
        )
        self._producer: Any = None
        self._customers: dict[UUID, UUID] = {}
        self.position = self.tracked()

    def tracked(self) -> int:
        return self.tracking.max_tracking_id(APPLICATION_NAME) or 0

    # ---------------------------------------------------------------- topics

    def ensure_topics(self) -> bool:
        """Create the topics when missing; True when the events topic was created now."""
        admin: Any = KafkaAdminClient(
            bootstrap_servers=self.config.bootstrap, client_id="rightsledger-relay-admin"
        )
        created = False
        try:
            existing = set(admin.list_topics())
            for topic in (self.config.events_topic, self.config.notifications_topic):
                if topic in existing:
                    continue
                try:
                    admin.create_topics(
                        [
                            NewTopic(
                                name=topic,
                                num_partitions=self.config.partitions,
                                replication_factor=self.config.replication_factor,
                            )
                        ]
                    )
                except TopicAlreadyExistsError:
                    continue
                if topic == self.config.events_topic:
                    created = True
        finally:
            admin.close()
        return created

    def start(self) -> None:
        """Create topics; republish from the start when the broker is new to this log."""
        created = self.ensure_topics()
        if created and self.tracked() > 0:
            log.warning(
                "events topic was created now but %s events were already published: the "
                "broker is new, republishing the whole log",
                self.tracked(),
            )
            self.position = 0
        # Otherwise the position stays where the last acknowledged batch left it (during a
        # republish it is behind the tracked position, which only ever moves forward).

    # ---------------------------------------------------------------- publishing

    @property
    def producer(self) -> Any:
        if self._producer is None:
            self._producer = self._producer_factory()
        return self._producer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    def _subject(self, event: Any) -> UUID:
        """The partition key: the customer an event concerns (a partner's own: the partner)."""
        if isinstance(event, Customer.Event | Customer.Registered):
            return event.originator_id  # type: ignore[no-any-return]
        if isinstance(event, AccessRecord.DataAccessed | AccessRecord.AccessRefused):
            return event.customer_id  # a read: its customer's, not its own record's id
        if isinstance(event, DataRightsRequest.Submitted):
            self._customers[event.originator_id] = event.customer_id
            return event.customer_id
        if isinstance(event, DataRightsRequest.Event):
            customer = self._customers.get(event.originator_id)
            if customer is None:
                customer = self.ledger.get_request(event.originator_id).customer_id
                self._customers[event.originator_id] = customer
            return customer
        if isinstance(event, Partner.Event | Partner.Registered):
            return event.originator_id  # type: ignore[no-any-return]
        return event.originator_id  # type: ignore[no-any-return]

    def records(
        self, position: int, event: Any
    ) -> list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]:
        """(topic, key, value, headers) for one event."""
        subject = self._subject(event)
        document = cloudevents.envelope(event, source=self.config.source, subject=subject)
        headers = [
            ("position", str(position).encode()),
            ("content-type", b"application/cloudevents+json"),
        ]
        out = [
            (self.config.events_topic, str(subject).encode(), cloudevents.encode(document), headers)
        ]
        if isinstance(event, DataRightsRequest.PartnersNotified):
            request_type = self.ledger.get_request(event.originator_id).request_type.value
            for notification in event.notifications:
                partner = notification["partner_id"]
                body = {
                    **document,
                    "id": cloudevents.event_id(event.originator_id, event.originator_version)
                    + f"/{partner}",
                    "type": "rightsledger.PartnerNotification",
                    "subject": partner,
                    "data": {
                        "request_id": str(event.originator_id),
                        "request_type": request_type,
                        "customer_id": str(subject),
                        "partner_id": partner,
                        "categories": list(notification["categories"]),
                        "acknowledgement_required": event.awaiting_acknowledgement,
                        "acknowledge_at": f"/v1/partners/{partner}/acknowledgements",
                    },
                }
                out.append(
                    (
                        self.config.notifications_topic,
                        str(partner).encode(),
                        cloudevents.encode(body),
                        headers,
                    )
                )
        return out

    def publish(self, events: Sequence[tuple[int, Any]]) -> None:
        """Send a batch and wait until the broker acknowledged every record (or raise)."""
        producer = self.producer
        futures = []
        for position, event in events:
            for topic, key, value, headers in self.records(position, event):
                futures.append(producer.send(topic, key=key, value=value, headers=headers))
        producer.flush(timeout=self.config.send_timeout)
        for future in futures:
            future.get(timeout=self.config.send_timeout)

    def _page(self, after: int) -> list[tuple[int, Any]]:
        return self.reader.log_page(after, self.config.batch_size)

    def _commit(self, page: list[tuple[int, Any]]) -> None:
        self.publish(page)
        last = page[-1][0]
        if last > self.tracked():
            self.tracking.insert_tracking(Tracking(APPLICATION_NAME, last))
        self.position = last

    def relay_once(self) -> int:
        """Publish one batch past the current position; the number of events published."""
        page = self._page(self.position)
        if not page:
            return 0
        self._commit(page)
        return len(page)

    def catch_up(self) -> int:
        """Publish everything past the position; the next page is read while one is sent."""
        published = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-reader") as reader:
            pending = reader.submit(self._page, self.position)
            while True:
                page = pending.result()
                if not page:
                    return published
                pending = reader.submit(self._page, page[-1][0])
                self._commit(page)
                published += len(page)

    def run_forever(self, database_url: str, stop: threading.Event, *, poll: float = 0.2) -> None:
        """Follow the log until ``stop``; on a broker error, back off and resume unacknowledged."""
        channel = self.ledger.recorder.channel_name  # type: ignore[attr-defined]
        backoff = 0.5
        schema = self.tracking.datastore.schema
        with (
            exclusive(database_url, schema, stop, f"relay.{self.config.events_topic}") as acquired,
            psycopg.connect(database_url, autocommit=True) as listener,
        ):
            if not acquired:
                return
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            started = False
            while not stop.is_set():
                try:
                    if not started:
                        self.start()
                        started = True
                    self.catch_up()
                    backoff = 0.5
                except Exception as error:  # a broker outage: retry from the tracked position
                    log.warning("relay paused (%s); retrying in %.1f s", error, backoff)
                    self.close()  # unacknowledged records are sent again by a new producer
                    started = False  # check the topics again: the broker may be a new one
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                for _ in listener.notifies(timeout=poll, stop_after=1):
                    stop.wait(GATHER)  # let a few more commits arrive: bigger, cheaper batches
        self.close()
