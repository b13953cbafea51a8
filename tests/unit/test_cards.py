"""Card numbers are never stored: the detector behind every command's refusal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rightsledger.domain.cards import (
    contains_card_number,
    find_card_number,
    luhn_valid,
    refuse_card_numbers,
)
from rightsledger.domain.errors import CardNumberError, InvalidCommandError


def with_check_digit(body: str) -> str:
    """Append the digit that makes ``body`` pass the Luhn check."""
    for digit in "0123456789":
        if luhn_valid(body + digit):
            return body + digit
    raise AssertionError("no check digit")  # pragma: no cover


card_bodies = st.integers(min_value=12, max_value=18).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)
)


@given(card_bodies)
def test_every_luhn_valid_number_of_13_to_19_digits_is_detected(body: str) -> None:
    """Any 13-19 digit string with a correct check digit counts as a card number."""
    number = with_check_digit(body)
    assert contains_card_number(number)
    assert contains_card_number(f"my card is {number}, thanks")


@given(card_bodies, st.sampled_from([" ", "-"]))
def test_grouped_card_numbers_are_detected(body: str, separator: str) -> None:
    """Card numbers written in groups of four with spaces or hyphens are still found."""
    number = with_check_digit(body)
    grouped = separator.join(number[i : i + 4] for i in range(0, len(number), 4))
    assert contains_card_number(f"card: {grouped}")


@given(card_bodies)
def test_a_wrong_check_digit_is_not_a_card_number(body: str) -> None:
    """Numbers failing the Luhn check (e.g. account references) are accepted."""
    valid = with_check_digit(body)
    wrong = valid[:-1] + str((int(valid[-1]) + 1) % 10)
    assert not contains_card_number(wrong)


@given(st.text(alphabet="0123456789", min_size=1, max_size=12))
def test_short_numbers_are_not_card_numbers(digits: str) -> None:
    """Phone numbers, invoice numbers and other runs under 13 digits pass."""
    assert not contains_card_number(digits)


@given(st.text(alphabet="0123456789", min_size=19, max_size=30))
def test_runs_longer_than_19_digits_are_not_card_numbers(body: str) -> None:
    """A 20+ digit run (e.g. a bank reference) is not a card number."""
    assert not contains_card_number(with_check_digit(body))


@given(st.text(alphabet=st.characters(blacklist_categories=("Nd",)), max_size=200))
def test_text_without_digits_is_never_refused(text: str) -> None:
    """Free text with no digits can never hold a card number."""
    assert not contains_card_number(text)


def test_known_test_card_numbers() -> None:
    """Well-known test numbers of major schemes are detected; off-by-one variants are not."""
    for number in (
        "4111111111111111",
        "5500 0000 0000 0004",
        "3400-000000-00009",
        "6011000000000004",
    ):
        assert contains_card_number(number), number
    assert not contains_card_number("4111111111111112")


def test_the_path_of_the_offending_field_is_reported() -> None:
    """The refusal names the field, including nested keys and list positions."""
    value = {"notes": ["fine", "card 4111 1111 1111 1111"]}
    assert find_card_number(value, "body") == "body.notes[1]"
    with pytest.raises(CardNumberError) as caught:
        refuse_card_numbers(statement="ok", details=value)
    assert caught.value.field == "details.notes[1]"


def test_keys_of_mappings_are_scanned_too() -> None:
    """A card number smuggled into a mapping key is refused as well."""
    assert find_card_number({"4111111111111111": "x"}) == "4111111111111111"


@given(st.text(min_size=1, max_size=50))
def test_text_that_cannot_be_stored_is_refused_everywhere(text: str) -> None:
    """A NUL character (which PostgreSQL cannot store) refuses the command, naming the field."""
    poisoned = text + "\x00"
    with pytest.raises(InvalidCommandError) as caught:
        refuse_card_numbers(statement="fine", detail={"note": poisoned})
    assert caught.value.field == "detail.note"


def test_lone_surrogates_are_refused() -> None:
    """Text that is not valid Unicode cannot be encoded for storage and is refused."""
    with pytest.raises(InvalidCommandError):
        refuse_card_numbers(name="Ada \udb4f")
