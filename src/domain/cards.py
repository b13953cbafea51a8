"""Detection of payment card numbers, which the policy says are never stored.

A card number is 13 to 19 digits that pass the Luhn check, written in one piece or in
groups. Only text a person wrote and personal values are scanned, never identifiers
(ids, positions, enumerated values, dates, amounts). The text is first normalised:
NFKC (full-width digits, non-breaking and ideographic spaces), characters that show
nothing dropped (zero-width spaces and joiners, soft hyphens, combining marks), and every
Unicode decimal digit read as its ASCII digit. Then a number is

- a run of digits on its own (``4111111111111111``), or
- groups of 4 to 6 digits (the last may be shorter) joined by one kind of separator
  throughout: a run of spaces or tabs, or one of ``-`` ``.`` ``/`` ``_`` (or a dash)
  with optional spaces around it: ``4111 1111 1111 1111``, ``4111.1111.1111.1111``,
  ``3400-000000-00009``, ``4111 / 1111 / 1111 / 1111``. A line break ends a number.

What keeps ordinary text from being taken for a card: the group rule (dates, ``2026-01-15``,
have groups of two; a change of separator ends a number, so ``020 7946 0958 / 020 7946 0959``
is two phone numbers); a number written after ``+`` with at most 15 digits is a phone number
in international form (E.164 numbers have at most 15 digits); and groups glued to letters
(``DE89 3704 0044 0532 0130 00``, an IBAN; a UUID's or a digest's hexadecimal digits) make
the run a reference code rather than a card. A UUID never holds 13 digits of card shape
(its middle groups are 4-4-4). Refusals name the field, never the value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from rightsledger.domain.errors import CardNumberError, InvalidCommandError

MIN_DIGITS = 13
MAX_DIGITS = 19
MIN_GROUP = 4
MAX_GROUP = 6
"""Groups of a grouped card number: 4 to 6 digits (American Express: 4-6-5), but the last,
which may be shorter (13 digits in fours: 4-4-4-1)."""
MAX_PHONE_DIGITS = 15

_DIGITS = re.compile(r"[0-9]+")
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_SPACE = r"[^\S\r\n\v\f\x1c-\x1e\x85\u2028\u2029]"
"""Whitespace within a line: spaces and tabs (a line break ends a number)."""
_SEPARATOR = re.compile(rf"{_SPACE}*([{_DASHES}./_]){_SPACE}*|{_SPACE}+")
_PHONE_PREFIX = re.compile(rf"\+(?:{_SPACE}|\()*$")


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    if not digits or not digits.isascii() or not digits.isdigit():
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


_UNSEEN = frozenset({"Cf", "Mn", "Me"})
"""Characters that show nothing of their own: format characters (zero-width space and
joiners, soft hyphen, word joiner, byte-order mark) and combining marks. Dropped before
scanning, or ``4111\u200b1111\u200b1111\u200b1111`` would pass for text while it shows,
and is copied, as a card number."""


def normalise(text: str) -> str:
    """NFKC, without the characters that show nothing (``_UNSEEN``), then every Unicode
    decimal digit (Arabic-Indic, Devanagari, ...) as ASCII."""
    folded = unicodedata.normalize("NFKC", text)
    if folded.isascii():
        return folded
    return "".join(
        str(unicodedata.decimal(char)) if char.isdecimal() else char
        for char in folded
        if char.isascii() or unicodedata.category(char) not in _UNSEEN
    )


@dataclass(frozen=True, slots=True)
class _Group:
    digits: str
    start: int
    end: int
    code: bool
    """Glued to letters, or joined by a separator to a group that is: part of a code."""
    after_plus: bool


def _groups(text: str) -> list[_Group]:
    out: list[_Group] = []
    for match in _DIGITS.finditer(text):
        start, end = match.span()
        glued = (start > 0 and text[start - 1].isalpha()) or (
            end < len(text) and text[end].isalpha()
        )
        joined = bool(out) and _SEPARATOR.fullmatch(text, out[-1].end, start) is not None
        code = glued or (joined and out[-1].code)
        after_plus = _PHONE_PREFIX.search(text, max(0, start - 4), start) is not None
        out.append(_Group(match.group(), start, end, code, after_plus))
    return out


def _separator(text: str, before: _Group, after: _Group) -> str | None:
    """The kind of separator between two groups (``" "`` for whitespace), or None."""
    match = _SEPARATOR.fullmatch(text, before.end, after.start)
    if match is None:
        return None
    return match.group(1) or " "


def _is_card(digits: str, first: _Group) -> bool:
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS or not luhn_valid(digits):
        return False
    return not (first.after_plus and len(digits) <= MAX_PHONE_DIGITS)


def _candidates(text: str) -> Iterator[tuple[str, _Group]]:
    """Every digit run that could be a card number: each group on its own, and each
    grouped number (groups of 4 to 6 digits, the last of 1 to 6, one kind of separator)."""
    groups = _groups(text)
    chain: list[_Group] = []
    kind: str | None = None
    for index, group in enumerate(groups):
        if group.code:
            yield from _grouped(chain)
            chain, kind = [], None
            continue
        yield group.digits, group
        size = len(group.digits)
        link = _separator(text, groups[index - 1], group) if chain else None
        extends = link is not None and size <= MAX_GROUP and _full(chain[-1])
        if extends and kind in (None, link):
            chain.append(group)
            kind = link
            continue
        yield from _grouped(chain)
        if extends:
            # The separator changed: what came before is a number with or without the
            # group between the two, and a new one starts at that group.
            yield from _grouped(chain[:-1])
            chain, kind = [chain[-1], group], link
        else:
            chain, kind = ([group] if _full(group) else []), None
    yield from _grouped(chain)


def _full(group: _Group) -> bool:
    """A group a grouped card number can go on after: 4 to 6 digits."""
    return MIN_GROUP <= len(group.digits) <= MAX_GROUP


def _grouped(chain: list[_Group]) -> Iterator[tuple[str, _Group]]:
    if len(chain) > 1:
        yield "".join(group.digits for group in chain), chain[0]
        if not _full(chain[-1]):  # a short last group may be the card's or the next thing's
            yield from _grouped(chain[:-1])


def contains_card_number(text: str) -> bool:
    """True when the text holds 13-19 digits passing the Luhn check, in any common shape."""
    if not any(char.isdigit() for char in text) and text.isascii():
        return False
    normal = normalise(text)
    return any(_is_card(digits, first) for digits, first in _candidates(normal))


def _walk(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            key_text = str(key)
            yield path, key_text  # a key is reported by its mapping's path, never by itself
            yield from _walk(item, f"{path}.{key_text}" if path else key_text)
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}.{index}" if path else str(index))


def find_card_number(value: object, path: str = "") -> str | None:
    """Return the path (``identity.name``, ``notes.1``) of the first string holding a card
    number, or None. A card number in a mapping's key is reported by the mapping's path."""
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
            raise CardNumberError(card_number_message(where), field=where)


def card_number_message(where: str) -> str:
    """The refusal's wording: it names the field, never the value."""
    return (
        f"'{where}' contains a payment card number; card numbers are never stored, "
        "payments go through the payment processor's token"
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
