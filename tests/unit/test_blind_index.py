"""The blind index: one digest for every common way of writing an identifier, none for what
is not the same identifier, and nothing without the key."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from rightsledger.projections.lookup import BlindIndex, Identifier, normalise

KEY = os.urandom(32)
INDEX = BlindIndex(lambda: KEY)

local = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20)
spaces = st.text(alphabet=" \t", max_size=3)


@given(local, local, spaces, spaces, st.data())
def test_an_email_is_found_whatever_its_case_and_surrounding_space(
    name: str, domain: str, before: str, after: str, data: st.DataObject
) -> None:
    """Trimmed and casefolded: any casing with spaces around gives the same digest."""
    email = f"{name}@{domain}.example"
    cased = "".join(
        c.upper() if data.draw(st.booleans(), label=f"upper {i}") else c
        for i, c in enumerate(email)
    )
    assert INDEX.digest(Identifier.EMAIL, before + cased + after) == INDEX.digest(
        Identifier.EMAIL, email
    )


@given(
    st.lists(st.integers(0, 9), min_size=6, max_size=15),
    st.lists(st.sampled_from([" ", "-", ".", "(", ")", ""]), min_size=15, max_size=15),
    st.booleans(),
)
def test_a_phone_number_is_its_digits_whatever_the_separators(
    digits: list[int], separators: list[str], double_zero: bool
) -> None:
    """Separators never matter; a leading 00 is the international +; + and national differ."""
    plain = "".join(map(str, digits))
    written = "".join(f"{d}{s}" for d, s in zip(digits, separators, strict=False))
    prefix = "00" if double_zero else "+"
    assert normalise(Identifier.PHONE, prefix + written) == "+" + plain
    assert INDEX.digest(Identifier.PHONE, prefix + written) == INDEX.digest(
        Identifier.PHONE, "+" + plain
    )
    if not plain.startswith("00"):
        assert INDEX.digest(Identifier.PHONE, written) != INDEX.digest(
            Identifier.PHONE, "+" + plain
        )


def test_account_references_ignore_case_and_spaces_but_not_characters() -> None:
    """ "ACC 000417" and "acc000417" are one reference; "ACC-000417" another."""
    same = {INDEX.digest(Identifier.ACCOUNT, v) for v in ("ACC 000417", " acc000417 ", "Acc000417")}
    assert len(same) == 1
    assert INDEX.digest(Identifier.ACCOUNT, "ACC-000417") not in same


def test_digests_depend_on_the_key_and_the_kind_and_erased_values_have_none() -> None:
    """Another key, or the same text as another kind of identifier, is another digest;
    a placeholder of an erased value or an empty value is never indexed."""
    other = BlindIndex(lambda: os.urandom(32))
    value = "12345678"
    assert INDEX.digest(Identifier.PHONE, value) != other.digest(Identifier.PHONE, value)
    assert INDEX.digest(Identifier.PHONE, value) != INDEX.digest(Identifier.ACCOUNT, value)
    digest = INDEX.digest(Identifier.EMAIL, "ada@example.org")
    assert digest is not None
    assert len(digest) == 32
    assert b"ada" not in digest
    assert INDEX.digest(Identifier.EMAIL, "[erased]") is None
    assert INDEX.digest(Identifier.PHONE, " - ") is None
    assert INDEX.digest(Identifier.ACCOUNT, "   ") is None
