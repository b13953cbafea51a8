"""Copying an aggregate for the repository's cache, without ``copy.deepcopy``'s walk.

The repository hands out a copy of a cached aggregate for every command, so that a command
refused half-way leaves the cached one as it was. ``copy.deepcopy`` pays its memo and its
``__reduce_ex__`` round trip for every value, down to each frozen record and each datetime
(measured: a copy cost more than the decision it is taken for; docs/benchmarks.md).

An aggregate's state is built of values that are never changed in place (text, numbers,
ids, instants, enums, and the frozen records of ``dataclass(frozen=True)``) held in dicts,
lists, sets and tuples that events do change. ``CheapCopy`` copies those containers, at
every depth, and shares the values; anything else is left to ``copy.deepcopy``. A frozen
record is shared as it is: its fields are never reassigned, and nothing in the domain
changes a container held by one.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Self
from uuid import UUID

_SHARED: tuple[type, ...] = (
    str,
    int,
    float,
    bool,
    bytes,
    type(None),
    UUID,
    datetime,
    date,
    time,
    timedelta,
    Decimal,
    Enum,
)
"""Values never changed in place (``bool`` and enums of ``str`` are covered twice)."""


def copied(value: Any, memo: dict[int, Any]) -> Any:
    """``value`` with its dicts, lists, sets and tuples copied and its values shared."""
    kind = type(value)
    if kind is dict:
        return {key: copied(item, memo) for key, item in value.items()}
    if kind is list:
        return [copied(item, memo) for item in value]
    if isinstance(value, _SHARED):
        return value
    if kind is set:
        return {copied(item, memo) for item in value}
    if kind is tuple:
        return tuple(copied(item, memo) for item in value)
    if dataclasses.is_dataclass(value) and value.__dataclass_params__.frozen:  # type: ignore[union-attr]
        return value
    return copy.deepcopy(value, memo)


class CheapCopy:
    """Mixin for an aggregate whose state is made as the module says: ``copy.deepcopy`` of
    it copies its containers and shares its values."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update({name: copied(v, memo) for name, v in self.__dict__.items()})
        return clone
