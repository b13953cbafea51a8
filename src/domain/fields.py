"""The checks every personal value a person gives goes through, at registration, in a
correction and in a correction request alike."""

from __future__ import annotations

from collections.abc import Mapping

from rightsledger.domain.cards import unstorable
from rightsledger.domain.errors import InvalidCategoryError, InvalidCommandError
from rightsledger.domain.values import CATEGORY_FIELDS, Category

FIELD_LIMIT = 2000
"""The longest text a field holds (characters)."""


def text(value: object, field: str, *, required: bool = True) -> str:
    """``value`` stripped, when it is storable text of at most ``FIELD_LIMIT`` characters
    (and not empty, if ``required``); otherwise ``InvalidCommandError`` naming ``field``."""
    if not isinstance(value, str):
        raise InvalidCommandError(f"'{field}' must be text", field=field)
    stripped = value.strip()
    if unstorable(stripped):
        raise InvalidCommandError(
            f"'{field}' contains a NUL character or an unpaired surrogate", field=field
        )
    if required and not stripped:
        raise InvalidCommandError(f"'{field}' must not be empty", field=field)
    if len(stripped) > FIELD_LIMIT:
        raise InvalidCommandError(f"'{field}' is longer than {FIELD_LIMIT} characters", field=field)
    return stripped


def check_fields(category: Category, values: Mapping[str, object], field: str) -> dict[str, str]:
    """The values of ``category``'s fields, each checked (``text``; an email holds an ``@``),
    under ``field``; a field the category does not have is refused."""
    allowed = CATEGORY_FIELDS[category]
    if not allowed:
        raise InvalidCategoryError(
            f"{category.value} holds records, not fields: it has nothing to correct",
            field=field,
        )
    checked: dict[str, str] = {}
    for name, value in values.items():
        if name not in allowed:
            raise InvalidCategoryError(
                f"{category.value} has no field {name!r}; its fields are {', '.join(allowed)}",
                field=f"{field}.{name}",
            )
        checked[name] = text(value, f"{field}.{name}")
    if "email" in checked and "@" not in checked["email"]:
        raise InvalidCommandError("'email' is not an email address", field=f"{field}.email")
    return checked
