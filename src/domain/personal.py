"""Which fields of an event are personal, and which are public, declared on the event itself.

Every field of every domain event carries one marker on its annotation:

- ``Annotated[T, Personal(key)]``: a personal value, sealed in the stored event with the
  named key (``Key``) and never published. A mapping can instead be sealed item by item
  (``Personal(items={...})``: each named item under its own key; the item names stay
  readable). The key may be chosen from the event's data by a small named strategy (a
  function of the event returning a ``Key``), and an activity period's key names the
  period with another (``period=``, returning a ``PeriodScope``).
- ``Public[T]``: goes on the topic (the CloudEvent's ``data``) under its own name, or
  under another one: ``Annotated[T, Published("type")]``.
- ``Internal[T]``: not personal, so stored in clear, but kept off the topic (who acted,
  operators' texts, contract references).

The envelope fields eventsourcing gives every event (``ENVELOPE``) are the CloudEvent's own
(id, sequence, time); the aggregate's id goes into ``data`` under the name the event class
gives it in ``id_on_topic`` (``None``: not at all).

``declaration`` reads the markers of one event class (and refuses a class with an
undeclared field); ``domain_events`` finds every event class of every aggregate of the
domain. Sealing, the CloudEvent's ``data`` and the audit trail are derived from these.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, TypeVar


class Key(StrEnum):
    """The key a personal value is sealed with; destroying it erases the value."""

    CUSTOMER = "customer"
    """The customer's personal key (identity, contact and account data): destroyed on erasure."""
    RETAINED = "retained"
    """The customer's retained key (billing records, the processor's token): destroyed when
    their retention ends."""
    REQUEST = "request"
    """The data-rights request's own key (the requester's statement, documents, reasons)."""
    PERIOD = "period"
    """The key of one customer, purpose and month (activity): destroyed by the retention
    sweep, or with the rest on erasure."""


@dataclass(frozen=True)
class PeriodScope:
    """What a period key seals: one category's entries, for one purpose, in one period."""

    category: str
    purpose: str
    period: str
    period_end: datetime


KeyChoice = Key | Callable[[Any], Key]
"""A key, or a strategy choosing one from the event."""


@dataclass(frozen=True, eq=False)
class Personal:
    """A personal value: sealed under ``key`` (or item by item, ``items``); never published."""

    key: KeyChoice = Key.CUSTOMER
    items: Mapping[str, Key] | None = None
    """When set, the value is a mapping and only these items are sealed, each under its key."""
    period: Callable[[Any], PeriodScope] | None = None
    """For ``Key.PERIOD``: the period the event's value belongs to."""

    def __post_init__(self) -> None:
        if (self.key is Key.PERIOD) != (self.period is not None):
            raise TypeError("a period key, and only a period key, names its period")
        if self.items is not None:
            object.__setattr__(self, "items", MappingProxyType(dict(self.items)))

    def key_of(self, event: object) -> Key:
        """The key this event's value is sealed with."""
        return self.key if isinstance(self.key, Key) else self.key(event)


@dataclass(frozen=True)
class Published:
    """Goes on the topic, under ``name`` (the field's own name by default)."""

    name: str | None = None


@dataclass(frozen=True)
class Unpublished:
    """Not personal (stored in clear), but kept off the topic."""


T = TypeVar("T")
Public = Annotated[T, Published()]
"""A field that goes on the topic under its own name."""
Internal = Annotated[T, Unpublished()]
"""A field stored in clear and kept off the topic."""

ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})
"""eventsourcing's fields of every event: the CloudEvent's id, sequence and time."""

Marker = Personal | Published | Unpublished


class UndeclaredFieldError(TypeError):
    """An event field carries no marker (or more than one)."""


@dataclass(frozen=True)
class Declaration:
    """What one event class declares of its fields."""

    event: type
    personal: Mapping[str, Personal]
    public: Mapping[str, str]
    """Field -> its name on the topic."""
    internal: tuple[str, ...]
    id_on_topic: str | None
    """The name the topic's ``data`` gives the aggregate's id (``None``: not carried)."""

    def keys(self) -> set[Key]:
        """Every key a value of this event may be sealed with (strategies: all they may pick)."""
        found: set[Key] = set()
        for marker in self.personal.values():
            if marker.items is not None:
                found.update(marker.items.values())
            elif isinstance(marker.key, Key):
                found.add(marker.key)
            else:
                found.update((Key.CUSTOMER, Key.RETAINED))
        return found


def _markers(hint: Any) -> list[Marker]:
    if typing.get_origin(hint) is not Annotated:
        return []
    return [m for m in hint.__metadata__ if isinstance(m, Marker)]


_DECLARED: dict[type, Declaration] = {}


def declaration(event_class: type) -> Declaration:
    """The declaration of an event class; ``UndeclaredFieldError`` when a field has none."""
    found = _DECLARED.get(event_class)
    if found is None:
        found = _DECLARED[event_class] = _declare(event_class)
    return found


def _declare(event_class: type) -> Declaration:
    if not dataclasses.is_dataclass(event_class):
        raise UndeclaredFieldError(f"{event_class.__qualname__} is not an event class")
    hints = typing.get_type_hints(event_class, include_extras=True)
    personal: dict[str, Personal] = {}
    public: dict[str, str] = {}
    internal: list[str] = []
    problems: list[str] = []
    for field in dataclasses.fields(event_class):
        if field.name in ENVELOPE:
            continue
        markers = _markers(hints.get(field.name))
        if len(markers) != 1:
            problems.append(field.name)
            continue
        (marker,) = markers
        if isinstance(marker, Personal):
            personal[field.name] = marker
        elif isinstance(marker, Published):
            public[field.name] = marker.name or field.name
        else:
            internal.append(field.name)
    if problems:
        raise UndeclaredFieldError(
            f"{event_class.__qualname__}: declare each of {', '.join(problems)} as Personal, "
            "Public or Internal (exactly one)"
        )
    id_on_topic = getattr(event_class, "id_on_topic", None)
    return Declaration(
        event=event_class,
        personal=MappingProxyType(personal),
        public=MappingProxyType(public),
        internal=tuple(internal),
        id_on_topic=id_on_topic if isinstance(id_on_topic, str) else None,
    )


def events_of(aggregate: type) -> list[type]:
    """The event classes nested in an aggregate class, but its ``Event`` and ``Created``
    (the bases eventsourcing defines on every aggregate, not events of their own)."""
    return [
        value
        for name, value in vars(aggregate).items()
        if inspect.isclass(value)
        and name not in {"Event", "Created"}
        and dataclasses.is_dataclass(value)
        and "originator_version" in {f.name for f in dataclasses.fields(value)}
    ]


def domain_events(package: str = "rightsledger.domain") -> list[type]:
    """Every event class of every aggregate defined in the domain's modules."""
    root = importlib.import_module(package)
    found: list[type] = []
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{package}.{info.name}")
        for value in vars(module).values():
            if inspect.isclass(value) and value.__module__ == module.__name__:
                found.extend(events_of(value))
    return found
