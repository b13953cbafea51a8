"""Stable names of stored events and aggregates, independent of where the classes live.

An event is stored under ``<Aggregate>.<Event>.v<class_version>`` (``Customer.ConsentGranted.v1``):
its aggregate's class name, its own class name, and eventsourcing's ``class_version`` (1
unless the class says otherwise). An aggregate, named in its creation event's
``originator_topic``, is stored under its class name (``Customer``). Nothing else is listed:
a new event is named by being defined. A class that is renamed or moved under another
aggregate keeps its stored name by saying it, next to its fields::

    class ConsentGiven(Event):
        event_name = "Customer.ConsentGranted"   # the name it was stored under

(``aggregate_name`` on an aggregate class does the same). Moving a class to another module
changes nothing.

Logs written before events had stable names hold module paths
(``rightsledger.domain.customer:Customer.Registered``). ``MODULE_TOPICS`` keeps every one of
them, as written then, and ``register_names`` makes each resolve to the class now bearing
that name, wherever it lives. Each version 1 to ``class_version`` of a stable name resolves
too; the stored state's ``class_version`` says which upcasters (``upcast_vN_vN+1``) run.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.utils import register_topic, resolve_topic

STABLE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*(\.[A-Z][A-Za-z0-9]*)*$")
"""A stable name's class part: dotted class names, never a module path (no ``:``)."""

MODULE_TOPICS: tuple[str, ...] = (
    "rightsledger.domain.access:AccessRecord",
    "rightsledger.domain.access:AccessRecord.AccessRefused",
    "rightsledger.domain.access:AccessRecord.DataAccessed",
    "rightsledger.domain.customer:Customer",
    "rightsledger.domain.customer:Customer.AccessRefused",
    "rightsledger.domain.customer:Customer.ActivityLogged",
    "rightsledger.domain.customer:Customer.ActivityPurged",
    "rightsledger.domain.customer:Customer.ConsentGranted",
    "rightsledger.domain.customer:Customer.ConsentWithdrawn",
    "rightsledger.domain.customer:Customer.DataAccessed",
    "rightsledger.domain.customer:Customer.DataDisclosed",
    "rightsledger.domain.customer:Customer.DetailsCorrected",
    "rightsledger.domain.customer:Customer.Erased",
    "rightsledger.domain.customer:Customer.InvoiceRecorded",
    "rightsledger.domain.customer:Customer.Registered",
    "rightsledger.domain.customer:Customer.RetainedRecordsPurged",
    "rightsledger.domain.operations:FollowerSkip",
    "rightsledger.domain.operations:FollowerSkip.Recorded",
    "rightsledger.domain.partner:Partner",
    "rightsledger.domain.partner:Partner.ContractRenewed",
    "rightsledger.domain.partner:Partner.Registered",
    "rightsledger.domain.requests:DataRightsRequest",
    "rightsledger.domain.requests:DataRightsRequest.DeadlineApproaching",
    "rightsledger.domain.requests:DataRightsRequest.DeadlineExtended",
    "rightsledger.domain.requests:DataRightsRequest.Denied",
    "rightsledger.domain.requests:DataRightsRequest.ErasureCarriedOut",
    "rightsledger.domain.requests:DataRightsRequest.Escalated",
    "rightsledger.domain.requests:DataRightsRequest.Expired",
    "rightsledger.domain.requests:DataRightsRequest.ExportPrepared",
    "rightsledger.domain.requests:DataRightsRequest.Fulfilled",
    "rightsledger.domain.requests:DataRightsRequest.IdentityVerified",
    "rightsledger.domain.requests:DataRightsRequest.Overdue",
    "rightsledger.domain.requests:DataRightsRequest.PartnerAcknowledged",
    "rightsledger.domain.requests:DataRightsRequest.PartnersNotified",
    "rightsledger.domain.requests:DataRightsRequest.Revoked",
    "rightsledger.domain.requests:DataRightsRequest.Submitted",
    "rightsledger.domain.requests:DataRightsRequest.WorkDone",
)
"""The topics stored before stable names (module path and class): frozen, never extended."""


class EventNameError(Exception):
    """Two classes would be stored under one name, or a name is not a stable name."""


def _modules(package: str = "rightsledger.domain") -> Iterator[ModuleType]:
    root = importlib.import_module(package)
    for info in pkgutil.iter_modules(root.__path__):
        yield importlib.import_module(f"{package}.{info.name}")


def aggregate_classes() -> list[type[Aggregate]]:
    """Every aggregate class defined in the domain's modules."""
    found: list[type[Aggregate]] = []
    for module in _modules():
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Aggregate)
                and value is not Aggregate
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return found


def event_classes(aggregate: type[Aggregate]) -> list[type[CanMutateAggregate[Any]]]:
    """The events an aggregate records: its nested event classes, except the bases
    (``Event``, and ``Created`` when the aggregate has a creation event of its own)."""
    nested = [
        v
        for v in vars(aggregate).values()
        if isinstance(v, type) and issubclass(v, CanMutateAggregate)
    ]
    created = [v for v in nested if issubclass(v, Aggregate.Created) and v.__name__ != "Created"]
    return [
        v for v in nested if v.__name__ != "Event" and not (v.__name__ == "Created" and created)
    ]


def domain_event_classes() -> list[type[CanMutateAggregate[Any]]]:
    """Every event class of the domain, aggregate by aggregate."""
    return [event for agg in aggregate_classes() for event in event_classes(agg)]


def class_version(cls: type) -> int:
    """eventsourcing's class version of an event (1 unless the class sets it)."""
    return int(getattr(cls, "class_version", 1))


def base_name(cls: type) -> str:
    """A class's stable name without version: its own ``event_name`` / ``aggregate_name``
    when it says one (not inherited), else its qualified name (``Customer.Registered``)."""
    attribute = "aggregate_name" if issubclass(cls, Aggregate) else "event_name"
    # eventsourcing may redefine a nested event as a subclass of the class written in the
    # source, under the same qualified name: the attribute is on one of those.
    own = next(
        (
            vars(c)[attribute]
            for c in cls.__mro__
            if c.__qualname__ == cls.__qualname__ and attribute in vars(c)
        ),
        None,
    )
    name = own if isinstance(own, str) else cls.__qualname__
    if not STABLE_NAME.match(name):
        msg = f"{cls.__qualname__}: {name!r} is not a stable name (dotted class names)"
        raise EventNameError(msg)
    return name


_stable: dict[type, str] = {}


def stable_name(cls: type) -> str:
    """What the store writes for new events of this class (or new aggregates of it)."""
    name = _stable.get(cls)
    if name is None:
        name = base_name(cls)
        if not issubclass(cls, Aggregate):
            name = f"{name}.v{class_version(cls)}"
        _stable[cls] = name
    return name


def stored_names(cls: type) -> tuple[str, ...]:
    """Every name this class's events (or aggregates) may be stored under: its stable
    name, at each class version so far, and the module path it had before stable names."""
    base = base_name(cls)
    if issubclass(cls, Aggregate):
        names = [base]
    else:
        names = [f"{base}.v{n}" for n in range(1, class_version(cls) + 1)]
    names += [t for t in MODULE_TOPICS if t.partition(":")[2] == base]
    return tuple(names)


def names_table(classes: Iterable[type]) -> dict[str, type]:
    """Each stored name of these classes and the class it resolves to; ``EventNameError``
    when two classes would share one."""
    table: dict[str, type] = {}
    for cls in classes:
        for name in stored_names(cls):
            other = table.setdefault(name, cls)
            if other is not cls:
                msg = (
                    f"{other.__module__}:{other.__qualname__} and "
                    f"{cls.__module__}:{cls.__qualname__} would both be stored as {name!r};"
                    " give one an explicit event_name"
                )
                raise EventNameError(msg)
    return table


def all_classes() -> list[type]:
    """The aggregates and events whose names are stored."""
    return [c for agg in aggregate_classes() for c in (agg, *event_classes(agg))]


@functools.cache
def aggregate_name(topic: str) -> str:
    """The stable name of the aggregate class a creation event's ``originator_topic`` names."""
    return stable_name(resolve_topic(topic))


@functools.cache
def register_names() -> dict[str, type]:
    """Make every stored name resolve (``eventsourcing.utils.resolve_topic``) to its class:
    the stable names and the module paths stored before them. Once per process (a repeat
    returns the same table); the store's mapper calls it before reading or writing."""
    table = names_table(all_classes())
    for name, cls in table.items():
        register_topic(name, cls)
    return table
