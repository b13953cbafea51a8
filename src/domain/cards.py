"""Detection of payment card numbers, which the policy says are never stored.

A card number is a run of 13 to 19 digits, optionally grouped by single spaces
or hyphens, that passes the Luhn check. Any string in any command is scanned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from rightsledger.domain.errors import CardNumberError, InvalidCommandError

_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9])*(?![0-9])")


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    if not digits or not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def contains_card_number(text: str) -> bool:
    """True when the text contains a 13-19 digit number that passes the Luhn check."""
    for match in _DIGIT_RUN.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return True
    return False


def _walk(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            key_text = str(key)
            yield path + "." + key_text if path else key_text, key_text
            yield from _walk(item, f"{path}.{key_text}" if path else key_text)
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def find_card_number(value: object, path: str = "") -> str | None:
    """Return the path of the first string holding a card number, or None."""
    for where, text in _walk(value, path):
        if contains_card_number(text):
            return where
    return None


def refuse_card_numbers(**fields: object) -> None:
    """Raise ``CardNumberError`` naming the field when any value holds a card number
    (and ``InvalidCommandError`` for text that cannot be stored at all)."""
    for name, value in fields.items():
        broken = find_unstorable(value, name)
        if broken is not None:
            raise InvalidCommandError(
                f"'{broken}' contains a NUL character or an unpaired surrogate", field=broken
            )
        where = find_card_number(value, name)
        if where is not None:
            raise CardNumberError(
                f"'{where}' contains a payment card number; card numbers are never stored, "
                "payments go through the payment processor's token",
                field=where,
            )


def unstorable(text: str) -> bool:
    """True for text PostgreSQL cannot store: NUL characters or lone surrogates."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def find_unstorable(value: object, path: str = "") -> str | None:
    """The path of the first string holding a NUL character or a lone surrogate, or None."""
    for where, text in _walk(value, path):
        if unstorable(text):
            return where
    return None
