"""Every domain event declares each of its fields Personal, Public or Internal; sealing, the
topic's ``data`` and the audit trail's summary are derived from that, and none of them lets
a personal value out."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, cast
from uuid import uuid4

import pytest
from eventsourcing.domain import Aggregate
from hypothesis import given
from hypothesis import strategies as st

from rightsledger.domain.personal import (
    ENVELOPE,
    Internal,
    Key,
    Personal,
    Public,
    UndeclaredFieldError,
    declaration,
    domain_events,
)
from rightsledger.projections.audit import UndescribedEventError, describe
from rightsledger.storage import sealing
from rightsledger.workers import cloudevents
from tests.event_samples import PII, PII_AMOUNT, T, sample_id, samples, subject_of

EVENTS = domain_events()
SAMPLES = samples()
BEFORE = json.loads((Path(__file__).parent / "event_outputs.json").read_text())
"""The topic's document and the trail's summary of each sample, as the hand-written
per-event functions produced them before ``data`` was derived from the declarations."""


def _name(cls: type) -> str:
    return cls.__qualname__


def test_every_aggregate_of_the_domain_is_walked() -> None:
    """The walk finds the events of every aggregate in the domain, and the samples cover
    every event class it finds (a new event needs a sample here)."""
    aggregates = {cls.__qualname__.split(".")[0] for cls in EVENTS}
    assert aggregates == {
        "Customer",
        "DataRightsRequest",
        "Partner",
        "AccessRecord",
        "FollowerSkip",
    }
    assert {type(event) for event in SAMPLES} == set(EVENTS)


@pytest.mark.parametrize("event_class", EVENTS, ids=_name)
def test_every_field_is_declared(event_class: type) -> None:
    """Each field of each event class carries exactly one marker: Personal, Public or
    Internal (``declaration`` refuses the class otherwise)."""
    declared = declaration(event_class)
    fields = set(declared.personal) | set(declared.public) | set(declared.internal)
    own = {f.name for f in dataclasses.fields(event_class)} - ENVELOPE
    assert fields == own
    assert not set(declared.personal) & set(declared.public)


@pytest.mark.parametrize("event_class", EVENTS, ids=_name)
def test_every_event_class_holding_personal_values_has_sealing_rules(event_class: type) -> None:
    """The sealing rules name exactly the declared personal fields, no more, no fewer."""
    declared = declaration(event_class)
    spec = sealing.RULES.get(event_class)
    if not declared.personal:
        assert spec is None
        return
    assert spec is not None
    assert {rule.attribute for rule in spec[1]} == set(declared.personal)


@pytest.mark.parametrize("event", SAMPLES, ids=sample_id)
def test_no_personal_value_reaches_the_topic_or_the_trail(event: Any) -> None:
    """The CloudEvent of a sample and its audit summary hold none of its personal values."""
    document = cloudevents.encode(
        cloudevents.envelope(event, source="urn:rightsledger:test", subject=subject_of(event))
    ).decode()
    summary = describe(event)
    for text in (document, summary):
        assert PII not in text
        assert str(PII_AMOUNT) not in text
    for field in declaration(type(event)).personal:
        assert field not in json.loads(document)["data"]


@pytest.mark.parametrize("event", SAMPLES, ids=sample_id)
def test_the_topic_and_the_trail_say_what_they_said_before(event: Any) -> None:
    """For one sample of every event type the document and the summary are exactly those
    the per-event functions produced before the declarations."""
    document = cloudevents.envelope(
        event, source="urn:rightsledger:test", subject=subject_of(event)
    )
    assert json.loads(cloudevents.encode(document)) == BEFORE[sample_id(event)]["document"]
    assert describe(event) == BEFORE[sample_id(event)]["summary"]


def test_an_undeclared_field_is_refused() -> None:
    """A field without a marker makes the class undeclared: it is neither sealed nor
    published silently, the topic refuses it and the rules cannot be derived."""

    class Probe(Aggregate):
        class Noted(Aggregate.Event):
            id_on_topic = "probe_id"
            actor: Internal[str]
            note: str

    with pytest.raises(UndeclaredFieldError, match="note"):
        declaration(Probe.Noted)
    with pytest.raises(UndeclaredFieldError):
        sealing.derive_rules([Probe.Noted])
    event = cast(Any, Probe.Noted)(
        originator_id=uuid4(), originator_version=2, timestamp=T, actor="a", note="n"
    )
    with pytest.raises(UndeclaredFieldError):
        cloudevents.public_data(event)
    with pytest.raises(UndescribedEventError):
        describe(event)


def test_a_new_personal_field_is_sealed_without_another_list() -> None:
    """Declaring a field Personal is all it takes for sealing to cover it."""

    class Probe2(Aggregate):
        class Noted(Aggregate.Event):
            actor: Internal[str]
            kind: Public[str]
            note: Annotated[str, Personal(Key.CUSTOMER)]

    _subject, rules = sealing.derive_rules([Probe2.Noted])[Probe2.Noted]
    assert [(rule.attribute, rule.item) for rule in rules] == [("note", None)]


def _with_personal(event: Any, text: str) -> Any:
    """The event with every personal text replaced by ``text`` (mappings: each value)."""

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return text
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    changes = {field: fill(getattr(event, field)) for field in declaration(type(event)).personal}
    return dataclasses.replace(event, **changes)


@given(
    index=st.integers(min_value=0, max_value=len(SAMPLES) - 1),
    secret=st.text(min_size=1).map(lambda text: f"{PII}{text}"),
)
def test_whatever_a_personal_value_holds_it_stays_off_the_topic_and_the_trail(
    index: int, secret: str
) -> None:
    """Any personal text, in any event, reaches neither the topic's document nor the
    audit summary (in the document, also not JSON-escaped)."""
    event = _with_personal(SAMPLES[index], secret)
    document = cloudevents.encode(
        cloudevents.envelope(event, source="urn:rightsledger:test", subject=subject_of(event))
    )
    assert secret.encode() not in document
    assert json.dumps(secret).encode()[1:-1] not in document
    assert secret not in describe(event)
