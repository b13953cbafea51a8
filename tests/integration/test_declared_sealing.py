"""The declarations on the event classes, against the real store: a sample of every event,
stored through the service's sealing mapper on PostgreSQL, holds none of its personal
values in clear, loads back equal, and publishes what it did before it was stored."""

from __future__ import annotations

import base64
import json
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import resolve_topic
from psycopg import sql

from rightsledger.bootstrap import Container
from rightsledger.domain.personal import declaration
from rightsledger.projections.audit import describe
from rightsledger.storage.sealing import SEALED
from rightsledger.workers import cloudevents
from tests.event_samples import PII, PII_AMOUNT, sample_id, samples


def encodings(value: str) -> list[bytes]:
    """The forms a value could take in stored bytes: raw, JSON-escaped, base64, hex."""
    raw = value.encode()
    return [raw, json.dumps(value).encode()[1:-1], base64.b64encode(raw), raw.hex().encode()]


def stored_row(container: Container, event: Any) -> StoredEvent:
    """The event's row as PostgreSQL holds it."""
    table = sql.Identifier(container.settings.database_schema, "rightsledger_events")
    with psycopg.connect(container.database.url) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT originator_id, originator_version, topic, state FROM {}"
                " WHERE originator_id = %s AND originator_version = %s"
            ).format(table),
            (event.originator_id, event.originator_version),
        ).fetchone()
    assert row is not None
    return StoredEvent(
        originator_id=row[0], originator_version=row[1], topic=row[2], state=bytes(row[3])
    )


@pytest.fixture
def stored(container: Container) -> dict[str, tuple[Any, StoredEvent]]:
    """Every sample stored through the service's mapper and recorder, and its row."""
    mapper = container.ledger.mapper
    out: dict[str, tuple[Any, StoredEvent]] = {}
    for event in samples():
        container.ledger.recorder.insert_events([mapper.to_stored_event(event)])
        out[sample_id(event)] = (event, stored_row(container, event))
    return out


def test_no_personal_value_is_stored_in_clear(
    container: Container, stored: dict[str, tuple[Any, StoredEvent]]
) -> None:
    """The stored bytes of each sample hold none of its personal values, in any encoding,
    and each declared personal field is a sealed envelope (or item by item, sealed items)."""
    forbidden = [*encodings(PII), *encodings(str(PII_AMOUNT))]
    transcoder = container.ledger.mapper.transcoder
    for name, (event, row) in stored.items():
        for form in forbidden:
            assert form not in row.state, name
        state = transcoder.decode(row.state)
        for field, marker in declaration(type(event)).personal.items():
            value = state[field]
            if value is None:
                continue
            if marker.items is None:
                assert value[SEALED] == 1, (name, field)
            else:
                for item in set(marker.items) & set(value):
                    assert value[item][SEALED] == 1, (name, field, item)


def test_every_sample_loads_back_as_it_was_stored(
    container: Container, stored: dict[str, tuple[Any, StoredEvent]]
) -> None:
    """Read back through the service's mapper, every sample is equal to what was stored
    (its aggregate's class stored by stable name, resolving to the same class), and its
    audit summary is the same."""
    for name, (event, row) in stored.items():
        loaded: Any = container.ledger.mapper.to_domain_event(row)
        if hasattr(event, "originator_topic"):  # a creation event names its aggregate
            assert resolve_topic(loaded.originator_topic) is resolve_topic(
                event.originator_topic
            ), name
            object.__setattr__(loaded, "originator_topic", event.originator_topic)
        assert loaded == event, name
        assert describe(loaded) == describe(event), name


def test_the_log_read_without_unsealing_publishes_the_same_data(
    container: Container, stored: dict[str, tuple[Any, StoredEvent]]
) -> None:
    """The relay reads the log without unsealing: from the sealed form each sample's
    CloudEvent ``data`` is the same as from the event itself."""
    raw = Mapper[Any](transcoder=container.ledger.mapper.transcoder)
    for name, (event, row) in stored.items():
        sealed = raw.to_domain_event(row)
        assert cloudevents.public_data(sealed) == cloudevents.public_data(event), name
