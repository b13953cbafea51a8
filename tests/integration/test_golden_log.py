"""Logs written by earlier versions keep loading: the golden logs under tests/golden/.

Each golden log is the sealed rows an earlier version stored (events, chain links and
checkpoints, data keys), written once by ``tests/golden/make_golden.py`` and never
rewritten. Loaded into a fresh schema, every one must verify (the chain covers the topics
and bytes as they were stored), every aggregate must reconstruct, and replay to the state
recorded beside it when it was written.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import resolve_topic
from psycopg import sql

from rightsledger.bootstrap import Container
from rightsledger.domain.naming import MODULE_TOPICS, domain_event_classes, register_names
from rightsledger.domain.requests import DataRightsRequest
from rightsledger.storage import chain
from tests.golden import golden

NAMES = golden.golden_names()


def load(container: Container, name: str) -> dict[str, Any]:
    log, _ = golden.read(name)
    schema = container.settings.database_schema
    with psycopg.connect(container.database.url) as conn:
        golden.load(conn, schema, log)
    container.ledger.clear_cache()
    container.vault.clear_cache()
    return log


def test_there_is_a_golden_log_with_module_topics() -> None:
    """The first golden log was stored with module paths as topics, as the log was written
    before events had stable names: keeping it proves those logs still load."""
    log, _ = golden.read(NAMES[0])
    assert all(":" in e["topic"] for e in log["events"])


@pytest.mark.parametrize("name", NAMES)
def test_golden_log_verifies(container: Container, name: str) -> None:
    """The chain of a golden log verifies as stored: every link and checkpoint matches."""
    log = load(container, name)
    result = chain.verify(container.database.url, container.settings.database_schema)
    assert result.ok, result
    assert result.checked == len(log["events"])
    assert result.checkpoints_checked == len(log["checkpoints"])


@pytest.mark.parametrize("name", NAMES)
def test_golden_log_replays_to_the_same_state(container: Container, name: str) -> None:
    """Every aggregate of a golden log reconstructs and replays to the state it had when the
    log was written (sealed values opened with its keys, erased ones as placeholders). A
    later version may add attributes to an aggregate's state (e.g. a list that new events
    fill); every attribute the log's state recorded must replay to the same value."""
    _, expected = golden.read(name)
    load(container, name)
    for aggregate_id, summary in expected.items():
        aggregate: Any = container.ledger.repository.get(UUID(aggregate_id))
        replayed = golden.summary(aggregate)
        assert replayed["type"] == summary["type"], aggregate_id
        recorded = summary["state"]
        assert {k: replayed["state"].get(k) for k in recorded} == recorded, aggregate_id


@pytest.mark.parametrize("name", NAMES)
def test_every_view_takes_a_golden_log(container: Container, name: str) -> None:
    """The projection worker applies a whole golden log to every view without stopping (a
    renewed contract included: it reaches the disclosures register's partner row)."""
    log = load(container, name)
    _, state = golden.read(name)
    assert container.projection_worker().catch_up() == log["events"][-1]["position"]
    renewed = {
        UUID(i): s["state"]["contract_reference"]
        for i, s in state.items()
        if s["type"] == "Partner" and s["state"]["contract_reference"]
    }
    assert renewed
    table = sql.Identifier(container.settings.database_schema, "disclosure_partners")
    with psycopg.connect(container.database.url) as conn:
        for partner_id, reference in renewed.items():
            row = conn.execute(
                sql.SQL("SELECT contract_reference FROM {} WHERE partner_id = %s").format(table),
                (partner_id,),
            ).fetchone()
            assert row == (reference,)


@pytest.mark.parametrize("name", NAMES)
def test_golden_log_keeps_growing(container: Container, name: str) -> None:
    """New events appended after a golden log's rows are stored under stable names and chain
    on from them; the whole verifies and the old and new events load together."""
    log = load(container, name)
    customer = container.ledger.register_customer(
        policy_version="2026-01", identity={"name": "Nia New"}, actor="intake:test"
    ).id
    (stored,) = container.ledger.recorder.select_events(customer)
    assert stored.topic == "Customer.Registered.v1"
    assert container.ledger.mapper.transcoder.decode(stored.state)["originator_topic"] == (
        "Customer"
    )
    result = chain.verify(container.database.url, container.settings.database_schema)
    assert result.ok, result
    assert result.checked == len(log["events"]) + 1
    page = container.ledger.log_page(0, len(log["events"]) + 10)
    assert len(page) == len(log["events"]) + 1
    assert container.ledger.get_customer(customer).data["identity_contact"]["name"] == "Nia New"


def test_module_topics_stored_before_stable_names_are_all_kept() -> None:
    """Every module path the first golden log holds, as a topic or a creation event's
    ``originator_topic``, is one of the frozen former names, and resolves to its class."""
    log, _ = golden.read(NAMES[0])
    stored = {e["topic"] for e in log["events"]} | {
        origin for e in log["events"] if (origin := json.loads(e["state"]).get("originator_topic"))
    }
    assert stored <= set(MODULE_TOPICS)
    table = register_names()
    assert all(resolve_topic(topic) is table[topic] for topic in stored)


def test_every_event_class_has_a_golden_sample() -> None:
    """Each event class of the domain is in at least one golden log (a new class needs a new
    golden log written by make_golden.py)."""
    sampled: set[type] = set()
    for name in NAMES:
        log, _ = golden.read(name)
        sampled |= {resolve_topic(e["topic"]) for e in log["events"]}
    missing = sorted(c.__qualname__ for c in domain_event_classes() if c not in sampled)
    assert not missing, f"no golden sample of {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_an_old_class_version_loads_as_the_current_one(container: Container, name: str) -> None:
    """An expiry stored as class version 1 (no ``unacknowledged``, no ``class_version``)
    loads as version 2, upcast with an empty list; a version 2 expiry keeps its list."""
    log = load(container, name)
    mapper = container.ledger.mapper
    expiries = [e for e in log["events"] if resolve_topic(e["topic"]) is DataRightsRequest.Expired]
    versions: dict[int, list[Any]] = {}
    for row in expiries:
        stored = StoredEvent(
            originator_id=UUID(row["originator_id"]),
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=row["state"].encode(),
        )
        raw = mapper.transcoder.decode(stored.state)
        event = mapper.to_domain_event(stored)
        assert isinstance(event, DataRightsRequest.Expired)
        versions.setdefault(raw.get("class_version", 1), []).append(event)
    assert set(versions) == {1, 2}
    assert all(e.unacknowledged == [] for e in versions[1])
    assert any(e.unacknowledged for e in versions[2])
