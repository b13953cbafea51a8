"""The relay and a broker that lost its log: both topics get the whole log again, and only then.

The broker is killed and a new, empty one started on the same port with the same cluster id
while the relay runs (in a thread, ``run_forever``), so only the topic ids and the offsets
can tell the relay what happened (the rule is in the module docstring of
``workers/relay.py``). Also: no republish against a broker that kept its log, a republish
carried on after a relay restart, a topic the broker made with the wrong partitions, a send
stuck on the new broker, and the Tansu offset bound the rule relies on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rightsledger.bootstrap import Container
from rightsledger.domain.ledger import RightsLedger
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.workers.broker import EmbeddedBroker, free_port
from rightsledger.workers.cloudevents import event_id
from rightsledger.workers.relay import Relay, producer_settings
from tests.conftest import EVIDENCE
from tests.integration.scans import consume_all
from tests.integration.test_relay import personal_scenario
from tests.scenarios import customers, log_head, toggle

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import TopicAlreadyExistsError
    from kafka.partitioner.default import murmur2

RELAY_LOG = "rightsledger.workers.relay"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def expected_ids(ledger: RightsLedger) -> tuple[set[str], set[str]]:
    """The CloudEvents ids of every logged event, and of every partner notification."""
    events: set[str] = set()
    notifications: set[str] = set()
    for _, event in ledger.log_page(0, 1_000_000):
        identity = event_id(event.originator_id, event.originator_version)
        events.add(identity)
        if isinstance(event, DataRightsRequest.PartnersNotified):
            notifications.update(f"{identity}/{n['partner_id']}" for n in event.notifications)
    return events, notifications


def consumed_ids(bootstrap: str, topic: str, expected: int) -> list[str]:
    return [json.loads(r.value)["id"] for r in consume_all(bootstrap, topic, expected)]


def partition_counts(bootstrap: str, topics: tuple[str, str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(topics))}
    finally:
        admin.close()


def republished(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == RELAY_LOG and r.levelno == logging.WARNING and "republishing" in r.message
    ]


class Running:
    """``Relay.run_forever`` in a thread, stopped and joined on exit."""

    def __init__(self, relay: Relay, container: Container) -> None:
        self.relay = relay
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=relay.run_forever, args=(container.database.url, self.stop), daemon=True
        )

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        self.thread.join(20)
        assert not self.thread.is_alive(), "the relay did not stop"


@pytest.mark.parametrize("after", ["more-events", "idle", "auto-created"])
def test_a_broker_restarted_empty_under_the_running_relay_gets_both_topics_again(
    container: Container, tmp_path: Path, caplog: pytest.LogCaptureFixture, after: str
) -> None:
    """Kill the broker, start an empty one on the port (same cluster id), write on or not: the
    relay finds out (a failed or stalled send, or its periodic check), republishes both topics
    from the start of the log, with the configured partitions, and says so once.

    ``auto-created``: the events topic is first made by a producer's metadata request, as
    Tansu does for the relay's own producer when it reconnects (4 partitions); a send to a
    partition the producer never wrote to is then retried forever by kafka-python
    (``UnknownProducerIdError`` taken for retention) instead of failing."""
    caplog.set_level(logging.WARNING, logger=RELAY_LOG)
    ledger = container.ledger
    settings = container.settings
    topics = (settings.events_topic, settings.notifications_topic)
    port = free_port()
    cluster = "rightsledger-republish-test"
    first = EmbeddedBroker(port, log_dir=tmp_path / "one", cluster_id=cluster, stop_timeout=0.5)
    second = EmbeddedBroker(port, log_dir=tmp_path / "two", cluster_id=cluster, stop_timeout=0.5)
    personal_scenario(ledger)  # a request whose PartnersNotified goes to the second topic
    people = customers(ledger, 20)
    toggle(ledger, people, 3)
    relay = container.relay(f"127.0.0.1:{port}")
    relay.config = replace(relay.config, verify_every=1.0)
    first.start()
    try:
        with Running(relay, container):
            before = log_head(ledger)
            wait_for(lambda: relay.position == before, 20, "the first broker to get the log")
            events, _ = expected_ids(ledger)
            assert set(consumed_ids(first.bootstrap, topics[0], before)) == events

            os.kill(first.pid, signal.SIGKILL)
            first.stop()
            second.start()
            restarted = time.monotonic()
            if after == "auto-created":
                stray = KafkaProducer(**producer_settings(second.bootstrap))
                assert len(stray.partitions_for(topics[0])) == 4
                stray.close()
            if after != "idle":
                toggle(ledger, people, 2, granted=False)  # sends to the new broker fail
            head = log_head(ledger)
            wait_for(
                lambda: (
                    bool(republished(caplog)) and relay.position == head and relay.tracked() == head
                ),
                25,
                "the relay to catch up on the new broker",
            )
            caught_up = time.monotonic() - restarted
        events, notifications = expected_ids(ledger)
        assert len(events) == head
        assert set(consumed_ids(second.bootstrap, topics[0], head)) == events
        assert set(consumed_ids(second.bootstrap, topics[1], len(notifications))) == notifications
        assert partition_counts(second.bootstrap, topics) == dict.fromkeys(topics, 3)
    finally:
        first.stop()
        second.stop()
    lines = republished(caplog)
    assert len(lines) == 1, lines
    assert topics[0] in lines[0]
    assert topics[1] in lines[0]
    # the records the first broker confirmed (and any the new one did before it was found out)
    confirmed = re.search(rf"(\d+) on {re.escape(topics[0])}", lines[0])
    assert confirmed is not None
    assert int(confirmed.group(1)) >= before
    assert caught_up < 15, f"{caught_up:.1f} s from the new broker to caught up"


def test_a_send_stuck_on_a_broker_that_lost_the_log_is_abandoned_at_once(
    container: Container, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The new broker has the events topic with 4 partitions (made on a metadata request, as
    Tansu does) and the next event goes to partition 3, which the relay's producer never
    wrote to: kafka-python resends it on every ``UnknownProducerIdError`` (it takes it for
    retention) until its 30 s delivery timeout. The relay checks the broker after a second of
    waiting, abandons the send and republishes; the periodic check is out of the way here."""
    caplog.set_level(logging.WARNING, logger=RELAY_LOG)
    ledger = container.ledger
    topics = (container.settings.events_topic, container.settings.notifications_topic)
    people = customers(ledger, 40)
    stuck = next(c for c in people if (murmur2(str(c).encode()) & 0x7FFFFFFF) % 4 == 3)
    port = free_port()
    cluster = "rightsledger-stuck-send-test"
    first = EmbeddedBroker(port, log_dir=tmp_path / "one", cluster_id=cluster, stop_timeout=0.5)
    second = EmbeddedBroker(port, log_dir=tmp_path / "two", cluster_id=cluster, stop_timeout=0.5)
    relay = container.relay(f"127.0.0.1:{port}")
    relay.config = replace(relay.config, verify_every=120.0)
    first.start()
    try:
        with Running(relay, container):
            before = log_head(ledger)
            wait_for(lambda: relay.position == before, 20, "the first broker to get the log")
            os.kill(first.pid, signal.SIGKILL)
            first.stop()
            second.start()
            admin = KafkaAdminClient(bootstrap_servers=second.bootstrap)
            with contextlib.suppress(TopicAlreadyExistsError):  # Tansu may have made it already
                admin.create_topics({topics[0]: {"num_partitions": 4, "replication_factor": 1}})
            admin.close()
            wait_for(
                lambda: len(relay.producer.partitions_for(topics[0])) == 4,
                15,
                "the relay's producer to see the new broker's 4 partitions",
            )
            restarted = time.monotonic()
            ledger.change_consent(stuck, channel="sms", granted=True, evidence=EVIDENCE, actor="m")
            head = log_head(ledger)
            wait_for(
                lambda: (
                    bool(republished(caplog)) and relay.position == head and relay.tracked() == head
                ),
                25,
                "the relay to republish on the new broker",
            )
            caught_up = time.monotonic() - restarted
        assert set(consumed_ids(second.bootstrap, topics[0], head)) == expected_ids(ledger)[0]
        assert partition_counts(second.bootstrap, topics) == dict.fromkeys(topics, 3)
    finally:
        first.stop()
        second.stop()
    assert len(republished(caplog)) == 1
    assert caught_up < 10, f"{caught_up:.1f} s from the stuck send to caught up"


def test_a_relay_restarted_against_a_broker_that_kept_its_log_does_not_republish(
    container: Container, broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Same broker, new relay, checks every 0.2 s while more events come: each event is on
    the topic exactly once (the second relay resumed, it did not start over)."""
    caplog.set_level(logging.WARNING, logger=RELAY_LOG)
    ledger = container.ledger
    settings = container.settings
    personal_scenario(ledger)
    people = customers(ledger, 10)
    toggle(ledger, people, 2)
    first = container.relay(broker.bootstrap)
    first.start()
    head = log_head(ledger)
    assert first.catch_up() == head
    first.close()

    second = container.relay(broker.bootstrap)
    second.config = replace(second.config, verify_every=0.2)
    assert second.position == head
    with Running(second, container):
        time.sleep(0.5)  # a few checks against what the first relay delivered
        toggle(ledger, people, 2)
        head = log_head(ledger)
        wait_for(lambda: second.position == head, 20, "the second relay to catch up")
        time.sleep(0.5)  # and a few more after it
    events, notifications = expected_ids(ledger)
    ids = consumed_ids(broker.bootstrap, settings.events_topic, head)
    assert sorted(ids) == sorted(events), "an event is missing or was published twice"
    assert consumed_ids(broker.bootstrap, settings.notifications_topic, 1) == sorted(notifications)
    assert republished(caplog) == []


def test_a_relay_stopped_mid_republish_carries_on_with_it(
    container: Container, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The republish position is kept in PostgreSQL: a relay stopped half way through resumes
    the republish instead of jumping to its tracked position."""
    caplog.set_level(logging.WARNING, logger=RELAY_LOG)
    ledger = container.ledger
    toggle(ledger, customers(ledger, 4), 2)
    head = log_head(ledger)
    with EmbeddedBroker(log_dir=tmp_path / "one") as first:
        relay = container.relay(first.bootstrap)
        relay.start()
        assert relay.catch_up() == head
        relay.close()
    with EmbeddedBroker(log_dir=tmp_path / "two") as second:
        relay = container.relay(second.bootstrap)
        relay.config = replace(relay.config, batch_size=5)
        relay.start()
        assert relay.position == 0
        assert relay.relay_once() == 5
        relay.close()
        again = container.relay(second.bootstrap)
        assert (again.position, again.tracked()) == (5, head)
        again.start()
        assert again.position == 5
        assert again.catch_up() == head - 5
        again.close()
        ids = consumed_ids(second.bootstrap, container.settings.events_topic, head)
    assert sorted(ids) == sorted(expected_ids(ledger)[0])
    assert len(republished(caplog)) == 1


def test_a_topic_the_broker_made_by_itself_is_made_again_with_the_configured_partitions(
    container: Container, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Tansu creates a topic on a producer's metadata request (4 partitions, whatever the
    client asks); found on a broker that lost the log, it is created again with 3."""
    caplog.set_level(logging.WARNING, logger=RELAY_LOG)
    ledger = container.ledger
    settings = container.settings
    topics = (settings.events_topic, settings.notifications_topic)
    personal_scenario(ledger)
    head = log_head(ledger)
    port = free_port()
    relay = container.relay(f"127.0.0.1:{port}")
    with EmbeddedBroker(port, log_dir=tmp_path / "one"):
        relay.start()
        assert relay.catch_up() == head
        relay.reset()
    with EmbeddedBroker(port, log_dir=tmp_path / "two") as second:
        stray = KafkaProducer(**producer_settings(second.bootstrap))
        try:
            assert len(stray.partitions_for(topics[0])) == 4  # allow_auto_create_topics=False
        finally:
            stray.close()
        relay.start()
        assert relay.position == 0
        assert partition_counts(second.bootstrap, topics) == dict.fromkeys(topics, 3)
        assert relay.catch_up() == head
        relay.close()
        events, notifications = expected_ids(ledger)
        assert set(consumed_ids(second.bootstrap, topics[0], head)) == events
        assert set(consumed_ids(second.bootstrap, topics[1], 1)) == notifications
    assert len(republished(caplog)) == 1
    assert any(f"recreating {topics[0]}" in r.getMessage() for r in caplog.records)


def test_tansu_latest_offset_stays_above_the_start_of_the_last_acknowledged_batch(
    broker: EmbeddedBroker,
) -> None:
    """The bound the relay's offset rule relies on (Kafka: the high watermark is above every
    acknowledged offset). Tansu reports the last batch's base offset + 1, not the end."""
    topic = "offsets"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    admin.close()
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    partition = TopicPartition(topic, 0)
    try:
        sent = 0
        for size in (1, 7, 1, 30, 2):
            futures = [producer.send(topic, value=b"x") for _ in range(size)]
            producer.flush(timeout=10)
            offsets = [f.get(timeout=10).offset for f in futures]
            sent += size
            latest = consumer.end_offsets([partition])[partition]
            assert offsets[0] + 1 <= latest <= sent, (offsets, latest)
    finally:
        producer.close()
        consumer.close()
