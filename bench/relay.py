"""Relay throughput: events/s the Kafka relay publishes from the log, beside a plain producer.

Fills a fresh schema ``bench_<hex>`` with a realistic backlog (the log of
``bench/rebuild.py``: registrations, consent changes, corrections, invoices, shares,
requests; personal fields sealed with keys from the vault, as the service stores them)
by bulk-copying stored events, starts the embedded Kafka broker (Tansu), then measures
in the same run:

- relay: ``Relay.start(); Relay.catch_up()`` publishing the whole backlog (read and
  decode each page of the log, build the CloudEvents, send with ``acks=all`` and an
  idempotent producer, wait for every acknowledgement, track the position);
- plain: a ``KafkaProducer`` with the same ``producer_settings`` sending the same records
  (built beforehand with ``Relay.records``) to other topics with the same partitions,
  then ``flush()``: the rate the client and broker allow with no log reading at all.

The COPY bypasses the hash chain (events are not linked); the relay does not look at it.

Run: ``.venv/bin/python bench/relay.py --events 200000``
(``--database-url`` defaults to RIGHTSLEDGER_DATABASE_URL or the local server;
``--keep`` leaves the schema for inspection; ``--batch`` is the relay's page size;
``--profile FILE`` writes a cProfile of the relay phase).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import time
import uuid
import warnings
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql
from rebuild import fill, progress  # bench/rebuild.py: the same log as the rebuild benchmark

from rightsledger.bootstrap import Container, build
from rightsledger.config import Settings
from rightsledger.workers.broker import EmbeddedBroker
from rightsledger.workers.relay import producer_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

TARGET_EVENTS_PER_S = 10_000
TARGET_RATIO = 0.5

Record = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


def run_relay(
    container: Container, bootstrap: str, head: int, batch: int, profile: str | None
) -> tuple[int, float]:
    """Publish the whole backlog with the service's relay; (events, seconds)."""
    relay = container.relay(bootstrap)
    relay.config = replace(relay.config, batch_size=batch)
    published = 0
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    try:
        relay.start()
        # catch_up(), page by page, so progress shows on stderr
        while True:
            count = relay.relay_once()
            if count == 0:
                break
            published += count
            progress("relay", published, head, started)
        seconds = time.perf_counter() - started
    finally:
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        relay.close()
    sys.stderr.write("\n")
    assert published == head, (published, head)
    assert relay.tracked() == head, (relay.tracked(), head)
    return published, seconds


def build_records(
    container: Container, bootstrap: str, head: int, topics: dict[str, str], batch: int
) -> tuple[list[Record], float, float]:
    """The relay's records for every event, retargeted to ``topics``; also read/encode times."""
    relay = container.relay(bootstrap)  # not started: no producer, records() only
    records: list[Record] = []
    read_seconds = 0.0
    encode_seconds = 0.0
    position = 0
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        page = container.ledger.log_page(position, batch)
        t1 = time.perf_counter()
        read_seconds += t1 - t0
        if not page:
            break
        for event_position, event in page:
            for topic, key, value, headers in relay.records(event_position, event):
                records.append((topics[topic], key, value, headers))
        encode_seconds += time.perf_counter() - t1
        position = page[-1][0]
        progress("records", position, head, started)
    sys.stderr.write("\n")
    relay.close()
    return records, read_seconds, encode_seconds


def create_topics(bootstrap: str, names: list[str], partitions: int, replication: int) -> None:
    admin: Any = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-relay-admin")
    try:
        admin.create_topics(
            [
                NewTopic(name=n, num_partitions=partitions, replication_factor=replication)
                for n in names
            ]
        )
    finally:
        admin.close()


def run_plain(bootstrap: str, records: list[Record]) -> tuple[float, int]:
    """Send every record with one producer and flush; (seconds, failed sends)."""
    producer: Any = KafkaProducer(**producer_settings(bootstrap))
    try:
        producer.partitions_for(records[0][0])  # metadata fetched before timing
        futures = []
        started = time.perf_counter()
        for i, (topic, key, value, headers) in enumerate(records, 1):
            futures.append(producer.send(topic, key=key, value=value, headers=headers))
            if i % 20000 == 0:
                progress("plain", i, len(records), started)
        producer.flush(timeout=120)
        seconds = time.perf_counter() - started
        sys.stderr.write("\n")
        failed = 0
        for future in futures:
            try:
                future.get(timeout=30)
            except Exception:  # any failed delivery counts
                failed += 1
    finally:
        producer.close(timeout=5)
    return seconds, failed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000, help="relay page size (events)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "RIGHTSLEDGER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--broker-log-dir", help="keep the broker's output in this directory")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--profile", help="write a cProfile of the relay phase to this file")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:10]
    schema = "bench_" + tag
    settings = Settings(
        database_url=args.database_url,
        database_schema=schema,
        run_projections=False,
        run_workers=False,
        events_topic=f"bench.{tag}.events",
        notifications_topic=f"bench.{tag}.partner-notifications",
    )
    container = build(settings)
    try:
        fill_started = time.perf_counter()
        written = fill(container.ledger, args.database_url, schema, args.events)
        fill_seconds = time.perf_counter() - fill_started
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ANALYZE {}").format(sql.Identifier(schema, "rightsledger_events"))
            )
        head = container.ledger.recorder.max_notification_id() or 0
        assert head == written, (head, written)
        with EmbeddedBroker(log_dir=args.broker_log_dir) as broker:
            bootstrap = broker.bootstrap
            # (a) the relay, through its own start() (creates the topics) and pages
            published, relay_seconds = run_relay(
                container, bootstrap, head, args.batch, args.profile
            )
            # (b) the same records from a plain producer, to topics of the same shape
            plain_topics = {
                settings.events_topic: f"bench.{tag}.plain.events",
                settings.notifications_topic: f"bench.{tag}.plain.partner-notifications",
            }
            create_topics(
                bootstrap,
                list(plain_topics.values()),
                settings.topic_partitions,
                settings.topic_replication_factor,
            )
            records, read_seconds, encode_seconds = build_records(
                container, bootstrap, head, plain_topics, args.batch
            )
            plain_seconds, failed = run_plain(bootstrap, records)
            assert failed == 0, f"{failed} plain sends failed"
        relay_rate = published / relay_seconds
        plain_rate = head / plain_seconds
        ratio = relay_rate / plain_rate
        read_rate = head / read_seconds
        encode_rate = head / encode_seconds
        mark = {True: "ok", False: "MISSED"}
        figures = {
            "events": head,
            "messages": len(records),
            "relay_events_per_s": round(relay_rate),
            "relay_seconds": round(relay_seconds, 1),
            "plain_producer_events_per_s": round(plain_rate),
            "plain_seconds": round(plain_seconds, 1),
            "ratio_relay_to_plain": round(ratio, 3),
            "log_read_decode_events_per_s": round(read_rate),
            "records_encode_events_per_s": round(encode_rate),
            "fill_seconds": round(fill_seconds, 1),
            "batch": args.batch,
            "partitions": settings.topic_partitions,
            "target_events_per_s": TARGET_EVENTS_PER_S,
            "target_ratio": TARGET_RATIO,
            "meets_targets": relay_rate >= TARGET_EVENTS_PER_S and ratio >= TARGET_RATIO,
        }
        rate_ok = mark[relay_rate >= TARGET_EVENTS_PER_S]
        ratio_ok = mark[ratio >= TARGET_RATIO]
        print(f"events in log:             {head:,} ({len(records):,} Kafka records)")
        print(
            f"relay (acks=all, idemp.):  {relay_rate:,.0f} events/s ({relay_seconds:.1f} s)"
            f"   target >= {TARGET_EVENTS_PER_S:,} [{rate_ok}]"
        )
        print(f"plain KafkaProducer:       {plain_rate:,.0f} events/s ({plain_seconds:.1f} s)")
        print(f"ratio relay / plain:       {ratio:.3f}   target >= {TARGET_RATIO} [{ratio_ok}]")
        print(
            f"relay parts, untimed run:  log read+decode {read_rate:,.0f} events/s,"
            f" Relay.records {encode_rate:,.0f} events/s"
        )
        print(
            f"targets: >= {TARGET_EVENTS_PER_S:,} events/s and >= {TARGET_RATIO}"
            " of the plain producer"
        )
        print("json:", json.dumps(figures))
    finally:
        container.close()
        if not args.keep:
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
