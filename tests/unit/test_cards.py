"""Card numbers are never stored: the detector behind every command's refusal."""

from __future__ import annotations

import re
import unicodedata
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from rightsledger.api import schemas
from rightsledger.domain.cards import (
    contains_card_number,
    find_card_number,
    luhn_valid,
    normalise,
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


@given(st.text(alphabet=st.characters(exclude_categories=["N", "So"]), max_size=200))
def test_text_without_digits_is_never_refused(text: str) -> None:
    """Free text with no digits (nor numerals NFKC turns into digits, such as circled
    numbers) can never hold a card number."""
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
    """The refusal names the field as the API names fields (nested keys and list positions
    joined by dots), and its message holds the path, never the number."""
    value = {"notes": ["fine", "card 4111 1111 1111 1111"]}
    assert find_card_number(value, "body") == "body.notes.1"
    with pytest.raises(CardNumberError) as caught:
        refuse_card_numbers(statement="ok", details=value)
    assert caught.value.field == "details.notes.1"
    assert "4111" not in str(caught.value)


def test_keys_of_mappings_are_scanned_too() -> None:
    """A card number smuggled into a mapping key is refused as well, reported by the
    mapping's path so that the number is not echoed."""
    assert find_card_number({"4111111111111111": "x"}, "corrections") == "corrections"
    with pytest.raises(CardNumberError) as caught:
        refuse_card_numbers(changes={"4111111111111111": "x"})
    assert caught.value.field == "changes"
    assert "4111" not in caught.value.detail


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


# -------------------------------------------------------------- shapes of card numbers

card_numbers = card_bodies.map(with_check_digit)

SEPARATORS = st.sampled_from([" ", "-", ".", "/", "_", "\t", "\u00a0", "\u2013", "\u3000"])
"""Space, hyphen, dot, slash, underscore, tab, no-break space, en dash, ideographic space."""


def unicode_digit_forms() -> list[str]:
    """The zero of every Unicode script's decimal digits, plus forms NFKC folds to ASCII
    (full-width, mathematical bold)."""
    zeros = [chr(c) for c in range(0x110000) if unicodedata.decimal(chr(c), None) == 0]
    return ["0", *zeros]


DIGIT_ZEROS = unicode_digit_forms()


def in_form(number: str, zero: str) -> str:
    """The number written with the digits that start at ``zero`` (ASCII, full-width,
    Arabic-Indic, Devanagari, mathematical bold...)."""
    return "".join(chr(ord(zero) + int(d)) for d in number)


@st.composite
def grouped(draw: st.DrawFn) -> tuple[str, str]:
    """A card number and a way of writing it: in groups of four (or the 4-6-5 of American
    Express), one kind of separator throughout, each separator a run of whitespace or a
    punctuation mark with optional whitespace around it, in any script's digits."""
    number = draw(card_numbers)
    sizes = [4, 6, 5] if len(number) == 15 and draw(st.booleans()) else [4] * 5
    groups, rest = [], number
    for size in sizes:
        if rest:
            groups.append(rest[:size])
            rest = rest[size:]
    if rest:
        groups.append(rest)
    mark = draw(SEPARATORS)
    if mark.isspace():
        joints = st.integers(1, 3).map(lambda n: mark * n)
    else:
        joints = st.tuples(st.sampled_from(["", " ", "  "]), st.sampled_from(["", " "])).map(
            lambda pads: pads[0] + mark + pads[1]
        )
    text = groups[0]
    for group in groups[1:]:
        text += draw(joints) + group
    zero = draw(st.sampled_from(DIGIT_ZEROS))
    written = "".join(in_form(c, zero) if c.isdigit() else c for c in text)
    return number, written


@given(grouped(), st.sampled_from(["{}", "card: {}", "my card is {}, thanks", "{}\nbye"]))
def test_card_numbers_in_every_common_shape_are_refused(
    shape: tuple[str, str], sentence: str
) -> None:
    """Any separator (space, tab, runs of whitespace, hyphen, dot, slash, underscore, dashes)
    and any script's decimal digits: the card number is found."""
    _, written = shape
    assert contains_card_number(sentence.format(written)), repr(written)


@given(card_numbers, st.sampled_from(DIGIT_ZEROS))
def test_unicode_digits_count_as_digits(number: str, zero: str) -> None:
    """Full-width, Arabic-Indic, Devanagari and every other decimal digit reads as its ASCII
    digit after NFKC normalisation."""
    assert normalise(in_form(number, zero)) == number
    assert contains_card_number(in_form(number, zero))


@given(card_numbers)
def test_a_card_with_its_expiry_date_is_refused(number: str) -> None:
    """A card number written in groups followed by its expiry date is still found."""
    groups = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    assert contains_card_number(f"{groups} 12/29")


@given(st.uuids(), st.binary(min_size=32, max_size=32))
def test_no_uuid_or_digest_is_ever_taken_for_a_card_number(value: UUID, digest: bytes) -> None:
    """A UUID is 8-4-4-4-12 hexadecimal: its digit groups never make 13 digits of card
    shape, so one quoted in a statement is never refused (nor is any id field scanned);
    digits glued to letters, as in a hexadecimal id or digest, are a code, not a card."""
    assert not contains_card_number(str(value))
    assert not contains_card_number(f"about request {value} ({value.hex}x)")
    assert not contains_card_number(f"evidence sha256:{digest.hex()}f")


@given(st.uuids(), st.uuids(), st.uuids())
def test_no_uuid_in_an_identifier_field_is_ever_refused(
    customer: UUID, partner: UUID, request: UUID
) -> None:
    """Identifier fields (customer_id, partner_id, request_id) are never scanned: every
    UUID is accepted, including those whose hyphen-grouped digits pass the Luhn check."""
    schemas.RequestIn.model_validate(
        {
            "customer_id": str(customer),
            "type": "access",
            "channel": "email",
            "jurisdiction": "gdpr",
            "statement": "please",
        }
    )
    schemas.DisclosureIn.model_validate(
        {
            "partner_id": str(partner),
            "basis": "service_provider",
            "categories": ["billing"],
            "purpose": "billing",
        }
    )
    schemas.AcknowledgementIn.model_validate({"request_id": str(request)})


def scanned_as_before(text: str) -> bool:
    """The former rule: any digits grouped by single spaces or hyphens, in any field."""
    for match in re.finditer(r"(?<![0-9])[0-9](?:[ -]?[0-9])*(?![0-9])", text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return True
    return False


def test_a_uuid_the_former_rule_refused_is_accepted() -> None:
    """This UUID's digits read ``00-4111-1111-1111-1111`` hyphen by hyphen, which the former
    rule took for a card number; as an id it is not scanned, and as text it is no card."""
    value = "abcdef00-4111-1111-1111-1111abcdefab"
    assert scanned_as_before(value)
    schemas.RequestIn.model_validate(
        {
            "customer_id": value,
            "type": "access",
            "channel": "email",
            "jurisdiction": "gdpr",
            "statement": "please",
        }
    )
    assert not contains_card_number(value)


@pytest.mark.parametrize(
    "text",
    [
        "+44 20 7946 0958",
        "+86 138 0013 8000",
        "+8613800138000",
        "+880 1712 345678",
        "+1 (415) 555-2671",
        "020 7946 0958 / 020 7946 0959",
        "2026-01-15",
        "from 2026-01-15/2026-02-15 to 2026.03.01",
        "2026-01-15T09:00:00+00:00",
        "DE89 3704 0044 0532 0130 00",
        "GB82 WEST 1234 5698 7654 32",
        "order 12345678, invoice 2026/0042, account ACC-000123456",
        "12 St James's Square, London SW1Y 4LE",
    ],
)
def test_ordinary_numbers_are_not_card_numbers(text: str) -> None:
    """Phone numbers with a country code (E.164: at most 15 digits), dates, date ranges,
    IBANs and account references are not card numbers, whatever their check digit."""
    assert not contains_card_number(text)


@given(
    st.from_regex(r"[A-Z]{2}[0-9]{2}", fullmatch=True),
    st.lists(st.from_regex(r"[0-9]{4}", fullmatch=True), min_size=3, max_size=7),
    st.sampled_from([" ", ""]),
)
def test_ibans_are_never_refused(head: str, groups: list[str], joint: str) -> None:
    """An IBAN (country code, check digits, then groups of four) is a reference code,
    whatever its digits: even one holding a Luhn-valid 16 digits after its check digits."""
    assert not contains_card_number(joint.join([head, *groups]))
    assert not contains_card_number(f"IBAN {head} 4111 1111 1111 1111 00")


@given(card_numbers)
def test_a_line_break_ends_a_number(number: str) -> None:
    """Groups on separate lines (a letter's address and phone lines) are separate numbers."""
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    assert not contains_card_number("\n".join(groups))
    assert not contains_card_number(" \r\n ".join(groups))


@given(card_numbers)
def test_a_card_next_to_a_code_is_still_refused(number: str) -> None:
    """Letters glued to digits make a code of what follows, not of what came before."""
    groups = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    assert contains_card_number(f"card {groups} CVV123")


@given(st.integers(min_value=10**7, max_value=10**15 - 1))
def test_international_phone_numbers_are_never_refused(number: int) -> None:
    """A number written after '+' with at most 15 digits is a phone number."""
    assert not contains_card_number(f"+{number}")


@given(st.dates(), st.dates())
def test_dates_and_date_ranges_are_never_refused(start: object, end: object) -> None:
    """ISO dates and ranges of them, with any of the usual separators, are not cards."""
    for joint in ("/", " - ", " to ", "..", " "):
        assert not contains_card_number(f"{start}{joint}{end}")


@given(grouped())
def test_the_api_names_the_field_and_never_echoes_the_number(shape: tuple[str, str]) -> None:
    """A card number in a nested field is refused naming the path (``identity.name``,
    ``corrections.identity_contact.name``); no part of the error holds the value."""
    _, written = shape
    body = {
        "customer_id": "00abcdef-4111-1111-1111-111111111111",
        "type": "correction",
        "channel": "email",
        "jurisdiction": "gdpr",
        "statement": "fine",
        "corrections": {"identity_contact": {"name": f"card {written}"}},
    }
    with pytest.raises(ValidationError) as caught:
        schemas.RequestIn.model_validate(body)
    errors = caught.value.errors(include_input=False, include_url=False)
    assert [(e["type"], e["loc"]) for e in errors] == [
        (schemas.CARD_NUMBER_ERROR, ("corrections", "identity_contact", "name"))
    ]
    assert written not in str(errors)


@given(
    card_numbers,
    st.lists(
        st.sampled_from(["\u200b", "\u200c", "\u200d", "\u00ad", "\u2060", "\ufeff", "\u0301"]),
        min_size=1,
        max_size=3,
    ),
)
def test_characters_that_show_nothing_do_not_hide_a_card_number(
    number: str, unseen: list[str]
) -> None:
    """Zero-width spaces and joiners, soft hyphens, word joiners, byte-order marks and
    combining marks between the digits: the text shows, and copies as, the card number, so
    it is refused."""
    written = "".join(
        digit + (unseen[i % len(unseen)] if i % 4 == 3 else "") for i, digit in enumerate(number)
    )
    assert contains_card_number(f"billing address {written} London"), repr(written)
    with pytest.raises(CardNumberError):
        refuse_card_numbers(postal_address=written)
