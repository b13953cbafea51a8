"""The Kafka relay against the embedded broker and real PostgreSQL: order, no loss, no PII."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from rightsledger.bootstrap import Container
from rightsledger.domain.ledger import RightsLedger
from rightsledger.workers.broker import EmbeddedBroker
from rightsledger.workers.cloudevents import event_id
from tests import scenarios
from tests.conftest import EVIDENCE, spawn
from tests.integration.scans import consume_all, encodings

PERSONAL = {
    "name": "Zelda Quixotic-Personal",
    "email": "zelda.quixotic@private.example",
    "phone": "+44 7700 900123",
    "postal_address": "99 Secretive Lane, Hidden Town",
}


def personal_scenario(ledger: RightsLedger) -> dict[str, UUID]:
    """A customer's life in personal values: registration, consent, correction, billing,
    activity, a share with the processor, and a correction request carried out."""
    customer = ledger.register_customer(
        policy_version="2026-01",
        identity=PERSONAL,
        account={"plan": "fibre-900"},
        payment_method={"processor": "Acme Payments", "token": "tok_secret_zelda"},
        actor="intake:desk",
    ).id
    scenarios.consent(ledger, customer, "email", actor="m:m")
    ledger.correct_customer(
        customer, {"identity_contact": {"postal_address": "1 New Secret Road"}}, actor="s:s"
    )
    scenarios.invoice(ledger, customer, "77.77")
    ledger.log_activity(
        customer,
        kind="network",
        reason="security",
        detail="login from 203.0.113.77 Zelda laptop",
        occurred_at=datetime(2026, 10, 2, tzinfo=UTC),
        actor="support:s",
    )
    partner = scenarios.payment_processor(ledger)
    scenarios.share(
        ledger,
        customer,
        partner,
        categories=["payment_method", "identity_contact"],
        purpose="billing",
        reference="monthly run for Zelda",
        actor="billing:b",
    )
    request = ledger.submit_request(
        customer_id=customer,
        request_type="correction",
        channel="postal_mail",
        jurisdiction="gdpr",
        statement="Zelda Quixotic-Personal asks to fix her address",
        corrections={"identity_contact": {"postal_address": "2 Another Secret Road"}},
        actor="intake:desk",
    ).id
    ledger.verify_request(request, method="id_document", reference="passport scan", actor="po:po")
    ledger.fulfil_correction(request, actor="worker:test")
    return {"customer": customer, "partner": partner, "request": request}


def test_every_event_reaches_the_topic_in_order_without_personal_data(
    container: Container, broker: EmbeddedBroker
) -> None:
    """Each event once, keyed by its customer, in log order per key, no personal value."""
    ids = personal_scenario(container.ledger)
    relay = container.relay(broker.bootstrap)
    relay.start()
    published = relay.catch_up()
    relay.close()
    head = scenarios.log_head(container.ledger)
    assert published == head
    records = consume_all(broker.bootstrap, container.settings.events_topic, head)
    assert len(records) == head
    documents = [json.loads(r.value) for r in records]
    assert {d["specversion"] for d in documents} == {"1.0"}
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for record in records:
        position = int(dict(record.headers)["position"].decode())
        by_key[record.key].append(position)
    for positions in by_key.values():
        assert positions == sorted(positions)
    assert sorted(p for ps in by_key.values() for p in ps) == list(range(1, head + 1))
    customer_key = str(ids["customer"]).encode()
    customer_types = [
        json.loads(r.value)["type"]
        for r in sorted(
            (r for r in records if r.key == customer_key),
            key=lambda r: int(dict(r.headers)["position"]),
        )
    ]
    assert customer_types[0] == "rightsledger.Customer.Registered"
    assert "rightsledger.DataRightsRequest.PartnersNotified" in customer_types
    assert "rightsledger.DataRightsRequest.Fulfilled" in customer_types
    assert len({d["id"] for d in documents}) == head
    corrected = [d for d in documents if d["type"] == "rightsledger.Customer.DetailsCorrected"]
    assert [d["data"]["fields"] for d in corrected] == [["postal_address"], ["postal_address"]]
    submitted = next(d for d in documents if d["type"].endswith("DataRightsRequest.Submitted"))
    assert submitted["data"]["categories_to_correct"] == ["identity_contact"]
    first = min(records, key=lambda r: int(dict(r.headers)["position"]))
    assert json.loads(first.value)["id"] == event_id(ids["customer"], 1)
    notifications = consume_all(broker.bootstrap, container.settings.notifications_topic, 1)
    assert [r.key for r in notifications] == [str(ids["partner"]).encode()]
    notice = json.loads(notifications[0].value)["data"]
    assert notice["categories"] == ["identity_contact"]
    assert notice["request_id"] == str(ids["request"])
    secrets = [
        *PERSONAL.values(),
        "1 New Secret Road",
        "2 Another Secret Road",
        "tok_secret_zelda",
        "Zelda",
        "203.0.113.77",
        "passport scan",
        "77.77",
        "monthly run",
    ]
    for record in [*records, *notifications]:
        blob = record.value + record.key + b"".join(v for _, v in record.headers)
        for secret in secrets:
            for encoded in encodings(secret):
                assert encoded not in blob, f"{secret!r} leaked onto the topic"


def start_relay(container: Container, broker: EmbeddedBroker) -> subprocess.Popen[bytes]:
    return spawn(container, "relay", "run", RIGHTSLEDGER_KAFKA_BOOTSTRAP=broker.bootstrap)


def test_relay_killed_and_broker_frozen_lose_nothing(
    container: Container, broker: EmbeddedBroker
) -> None:
    """SIGKILL of the relay mid-stream, then a frozen broker, while commands keep arriving:
    every logged event is on the topic; repeats carry the same CloudEvents id."""
    ledger = container.ledger
    customers = scenarios.customers(ledger, 30)
    done = threading.Event()

    def traffic() -> None:
        granted = dict.fromkeys(customers, False)
        for _ in range(30):
            for customer in customers:
                ledger.change_consent(
                    customer,
                    channel="sms",
                    granted=not granted[customer],
                    evidence=EVIDENCE,
                    actor="m:t",
                )
                granted[customer] = not granted[customer]
            time.sleep(0.01)
        done.set()

    relay = container.relay(broker.bootstrap)  # only to read the tracked position
    first = start_relay(container, broker)
    writer = threading.Thread(target=traffic)
    writer.start()
    deadline = time.monotonic() + 90
    while relay.tracked() < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = relay.tracked()
    second = start_relay(container, broker)
    try:
        time.sleep(0.3)
        os.kill(broker.pid, signal.SIGSTOP)
        time.sleep(3)
        os.kill(broker.pid, signal.SIGCONT)
        writer.join(120)
        assert done.is_set()
        head = scenarios.log_head(ledger)
        assert head == 30 + 30 * 30
        while relay.tracked() < head and time.monotonic() < deadline:
            time.sleep(0.05)
        assert relay.tracked() == head
    finally:
        second.terminate()
        second.wait(10)
    assert 0 < killed_at < head
    records = consume_all(broker.bootstrap, container.settings.events_topic, head)
    documents = [json.loads(r.value) for r in records]
    consumed = {d["id"] for d in documents}
    expected = {
        event_id(event.originator_id, event.originator_version)
        for _, event in ledger.log_page(0, head + 10)
    }
    assert consumed == expected
    by_id: dict[str, set[bytes]] = defaultdict(set)
    for record in records:
        by_id[json.loads(record.value)["id"]].add(record.value)
    assert all(len(values) == 1 for values in by_id.values()), "a repeat differs from the original"


def test_a_fresh_broker_gets_the_whole_history_again(container: Container, tmp_path: Path) -> None:
    """The embedded broker keeps nothing across restarts: the relay republishes from the start."""
    customer = scenarios.customer(container.ledger, actor="i")
    scenarios.consent(container.ledger, customer, "post")
    with EmbeddedBroker(log_dir=tmp_path / "one") as first:
        relay = container.relay(first.bootstrap)
        relay.start()
        assert relay.catch_up() == 2
        relay.close()
    with EmbeddedBroker(log_dir=tmp_path / "two") as second:
        relay = container.relay(second.bootstrap)
        relay.start()
        assert relay.position == 0
        assert relay.catch_up() == 2
        relay.close()
        records = consume_all(second.bootstrap, container.settings.events_topic, 2)
        assert len(records) == 2
    assert relay.tracked() == 2


def test_catch_up_reads_no_further_page_once_it_reached_the_head(
    container: Container, broker: EmbeddedBroker
) -> None:
    """Full pages follow one another at once; a page shorter than a batch is the head of
    the log, and once it is published the relay goes back to waiting for new events (and
    gathering more) rather than reading again for the few committed meanwhile."""
    personal_scenario(container.ledger)
    head = scenarios.log_head(container.ledger)
    batch = next(size for size in range(3, head) if head % size)
    relay = container.relay(broker.bootstrap)
    relay.config = dataclasses.replace(relay.config, batch_size=batch)
    pages: list[int] = []
    read = relay._page

    def counted(after: int) -> list[tuple[int, Any]]:
        page = read(after)
        pages.append(len(page))
        return page

    relay._page = counted  # type: ignore[method-assign]
    relay.start()
    published = relay.catch_up()
    relay.close()
    assert published == head
    assert pages == [batch] * (head // batch) + [head % batch]
    assert len(consume_all(broker.bootstrap, container.settings.events_topic, head)) == head
