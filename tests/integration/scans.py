"""Where a personal value could be left: every table of the test's schema, the Kafka
topics, and the encodings the project writes values in."""

from __future__ import annotations

import base64
import json
import time
import warnings
from typing import Any

import psycopg
from psycopg import sql

from rightsledger.bootstrap import Container

with warnings.catch_warnings():
    # kafka-python 3.0 warns once per protocol schema on import; the suite turns warnings
    # into errors.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition


def encodings(value: str) -> list[bytes]:
    """``value`` as the project may write it: raw, inside JSON, base64 and hex."""
    raw = value.encode()
    return [raw, json.dumps(value).encode()[1:-1], base64.b64encode(raw), raw.hex().encode()]


def dump_database(container: Container) -> bytes:
    """Every value of every table in the schema, raw bytes included, as one blob."""
    schema = container.settings.database_schema
    parts: list[bytes] = []
    with psycopg.connect(container.database.url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            ).fetchall()
        ]
        assert "rightsledger_events" in tables
        assert "subject_keys" in tables
        for table in tables:
            for row in conn.execute(
                sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, table))
            ).fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        parts.append(bytes(value))
                    else:
                        parts.append(json.dumps(value, default=str).encode())
                        parts.append(str(value).encode())
    return b"\n".join(parts)


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Any]:
    """Every record of a topic from the start (counted, not trusting end offsets)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout
        partitions: set[int] | None = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                time.sleep(0.1)
        assert partitions, f"topic {topic} does not exist"
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        records: list[Any] = []
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200)
            got = [r for rs in batch.values() for r in rs]
            records.extend(got)
            if got:
                quiet_since = time.monotonic()
            elif (
                len({r.value for r in records}) >= expected and time.monotonic() - quiet_since > 0.5
            ):
                break
        return records
    finally:
        consumer.close()
