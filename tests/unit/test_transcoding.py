"""The msgspec-decoding transcoder reads the stored format exactly as eventsourcing's own does,
and writes the very same bytes; ``jsonable``'s orjson path gives what its rules give."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError
from hypothesis import given
from hypothesis import strategies as st

from rightsledger.projections.base import _datetime_text, _flat, _jsonable, jsonable
from rightsledger.storage.transcoding import FastJSONTranscoder


def transcoders() -> tuple[JSONTranscoder, FastJSONTranscoder]:
    """Both transcoders with the application's transcodings (UUID, Decimal, datetime)."""
    stock, fast = JSONTranscoder(), FastJSONTranscoder()
    for transcoder in (stock, fast):
        Application.register_transcodings(Application.__new__(Application), transcoder)
    return stock, fast


zones = st.one_of(
    st.none(),
    st.just(UTC),
    st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)
times = st.builds(
    lambda d, tz: d.replace(tzinfo=tz),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    zones,
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.uuids(),
    st.decimals(allow_nan=False, allow_infinity=False),
    times,
)
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=25,
)
states = st.dictionaries(st.text(max_size=8), values, max_size=6)


@given(state=states)
def test_the_stored_bytes_and_their_reading_are_unchanged(state: dict[str, Any]) -> None:
    """Encoding gives eventsourcing's bytes; decoding them gives what eventsourcing reads."""
    stock, fast = transcoders()
    stored = stock.encode(state)
    assert fast.encode(state) == stored
    assert fast.decode(stored) == stock.decode(stored)


@given(state=st.dictionaries(st.text(max_size=8), st.text(), max_size=3))
def test_text_holding_the_tag_is_not_mistaken_for_a_tagged_value(state: dict[str, str]) -> None:
    """Strings that look like the tag, and mappings named like it, read as themselves."""
    stock, fast = transcoders()
    state = {**state, "note": '{"_type_":"uuid_hex","_data_":"x"}', "_type_": "plain"}
    stored = stock.encode(state)
    assert fast.decode(stored) == stock.decode(stored) == state


@pytest.mark.parametrize(
    "stored",
    [
        b'{"n": 123456789012345678901234567890}',  # beyond 64 bits: outside what a float holds
        b'{"x": NaN}',
        b'[{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"}, [1, 2]]',
        b'{"_type_":"decimal_str","_data_":"1.50"}',
    ],
)
def test_what_orjson_refuses_or_rarely_sees_still_decodes(stored: bytes) -> None:
    """Stored bytes of unusual content or shape read as eventsourcing reads them."""
    stock, fast = transcoders()
    assert repr(fast.decode(stored)) == repr(stock.decode(stored))


def test_an_unknown_tag_is_refused_as_before() -> None:
    """A value of a type no transcoding is registered for raises eventsourcing's error."""
    _, fast = transcoders()
    with pytest.raises(TranscodingNotRegisteredError):
        fast.decode(b'{"a": {"_type_": "nope", "_data_": "1"}}')


def test_ids_read_back_are_ordinary_uuids() -> None:
    """The quick UUID construction yields UUIDs equal, hashing and printing as usual."""
    _, fast = transcoders()
    value = UUID("0123456789abcdef0123456789abcdef")
    read = fast.decode(
        b'{"id": {"_type_": "uuid_hex", "_data_": "0123456789abcdef0123456789abcdef"}}'
    )
    assert read["id"] == value
    assert hash(read["id"]) == hash(value)
    assert str(read["id"]) == str(value)
    assert read["id"].is_safe == value.is_safe


jsonable_values = st.recursive(
    st.one_of(leaves, st.dates(), st.text(alphabet=st.sampled_from("a\x00b"))),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), children, max_size=4),
    ),
    max_leaves=25,
)


@given(value=jsonable_values)
def test_jsonable_gives_what_its_rules_give(value: Any) -> None:
    """Through orjson or by the rules, the same plain JSON value (NUL replaced, keys text)."""
    assert jsonable(value) == _jsonable(value)


@given(moment=times)
def test_times_are_written_as_isoformat_writes_them(moment: datetime) -> None:
    """A time's text (orjson's for times in UTC) is exactly ``isoformat``'s, at any date,
    with or without microseconds, in UTC or at any offset."""
    assert _datetime_text(moment) == moment.isoformat()


@given(
    value=st.dictionaries(
        st.text(alphabet=st.sampled_from("ab\x00"), max_size=3),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.text(alphabet=st.sampled_from("a\x00"), max_size=3),
            times,
            st.dates(),
            st.uuids(),
            st.decimals(allow_nan=False, allow_infinity=False),
        ),
        max_size=5,
    )
)
def test_flat_mappings_take_the_short_way_to_the_same_value(value: dict[str, Any]) -> None:
    """A mapping of text to plain values (evidence, an invoice) is converted at once, to what
    the rules give; one holding a NUL in its text is left to the rules, which replace it."""
    flat = _flat(value)
    if any("\x00" in item for item in value.values() if isinstance(item, str)):
        assert flat is None
    else:
        assert flat == _jsonable(value)
        assert flat == {
            key: item.isoformat()
            if isinstance(item, date)
            else str(item)
            if isinstance(item, UUID | Decimal)
            else item
            for key, item in value.items()
        }
    assert jsonable(value) == _jsonable(value)


def test_jsonable_writes_times_dates_ids_and_amounts_as_before() -> None:
    """Times and dates through isoformat, ids and amounts through str."""
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    ident = UUID(int=7)
    value = {"t": moment, "d": date(2026, 1, 2), "u": ident, "a": Decimal("1.50"), "n": "x\x00"}
    assert jsonable(value) == {
        "t": moment.isoformat(),
        "d": "2026-01-02",
        "u": str(ident),
        "a": "1.50",
        "n": "x\ufffd",
    }
