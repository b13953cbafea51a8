"""What the relay computes for every record it publishes: the event's id, its bytes and its
partition, each the same as the slower form it replaces."""

from __future__ import annotations

import json
import uuid
import warnings
from typing import Any
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from rightsledger.workers.cloudevents import ID_NAMESPACE, encode, event_id
from rightsledger.workers.relay import KeyHashPartitioner

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]


@given(originator_id=st.uuids(), version=st.integers(min_value=1, max_value=2**63 - 1))
def test_an_event_id_is_the_uuid5_of_its_aggregate_and_version(
    originator_id: UUID, version: int
) -> None:
    """Ids are what they always were: consumers dedupe on them across versions."""
    expected = str(uuid.uuid5(ID_NAMESPACE, f"{originator_id}/{version}"))
    assert event_id(originator_id, version) == expected


documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=16,
)


@given(document=st.dictionaries(st.text(), documents, max_size=6))
def test_a_document_is_compact_json_with_sorted_keys_in_utf8(document: dict[str, Any]) -> None:
    """Any document, integers beyond 64 bits included, is written as the standard library
    writes compact JSON with sorted keys, and reads back as itself."""
    written = encode(document)
    expected = json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    assert written == expected.encode()
    assert json.loads(written) == document


class Cluster:
    """The two questions a partitioner asks of the producer's cluster metadata."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic = topic
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


@given(
    keys=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=20),
    partitions=st.integers(min_value=1, max_value=64),
)
def test_a_key_goes_to_the_partition_kafka_would_choose(keys: list[bytes], partitions: int) -> None:
    """A customer's events land on the partition the default (murmur2) partitioner picks,
    the first time a key is seen and every time after."""
    cluster = Cluster("rightsledger.events", partitions)
    ours, kafkas = KeyHashPartitioner(keys=4), DefaultPartitioner()
    for key in [*keys, *reversed(keys)]:
        args = ("rightsledger.events", None, key, None, b"{}", cluster)
        assert ours.partition(*args) == kafkas.partition(*args)
