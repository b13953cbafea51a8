"""The opaque cursors every list route pages with."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsledger.api.pages import BadCursorError, decode_cursor, encode_cursor, next_cursor

keys = st.lists(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40)), min_size=1, max_size=4
)


@given(keys)
def test_a_cursor_carries_its_key_back(key: list[Any]) -> None:
    """What a page's cursor encodes is exactly what the next request decodes."""
    cursor = encode_cursor("requests", key)
    assert decode_cursor("requests", cursor, len(key)) == tuple(key)


def test_a_cursor_of_another_list_is_refused() -> None:
    """A cursor from the requests list cannot page the disclosures register."""
    cursor = encode_cursor("requests", ["2026-12-01", "x"])
    with pytest.raises(BadCursorError):
        decode_cursor("disclosures", cursor, 2)
    with pytest.raises(BadCursorError):
        decode_cursor("requests", cursor, 3)


@pytest.mark.parametrize("cursor", ["not-base64!", "AAAA", "bm90IGpzb24"])
def test_a_forged_cursor_is_refused(cursor: str) -> None:
    """Anything the service did not give out answers 422, never a 500."""
    with pytest.raises(BadCursorError):
        decode_cursor("requests", cursor, 1)


def test_the_last_page_has_no_next_cursor() -> None:
    """A page that read no more than ``limit`` rows is the last one."""
    rows = [{"n": i} for i in range(3)]
    assert next_cursor("n", rows, 3, lambda row: [row["n"]]) is None
    token = next_cursor("n", [*rows, {"n": 3}], 3, lambda row: [row["n"]])
    assert token is not None
    assert decode_cursor("n", token, 1) == (2,)
