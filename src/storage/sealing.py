"""Personal values inside stored events, sealed with the subject's key (AES-256-GCM).

``SealingMapper`` is the event store's mapper. Before an event is encoded, each
personal value its class declares (``Personal`` markers, ``rightsledger.domain.personal``;
``RULES`` is derived from them) is replaced by a sealed envelope: the value's
shape (text, mapping of fields, number), the key's id, and nonce + ciphertext,
authenticated with the event's id, version and field name, so a sealed value cannot
be moved to another event. Reading reverses it. When the key has been destroyed, the
value reads as the placeholder ``ERASED`` in the same shape (a mapping keeps its field
names): every event still loads and replays, nothing raises, and nothing personal
is left in the stored bytes.

Activity details are sealed with a key per customer, purpose and month the entry occurred
in (``Rule.period``), so a retention purge destroys one period's key and leaves the rest
readable. An envelope names its key, so events sealed with an earlier key (activity sealed
with the customer's personal key) keep loading as before.

Events are stored under their stable names (``rightsledger.domain.naming``, ``_named``);
every name ever stored, module paths included, resolves when reading.
"""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder

from rightsledger.domain.naming import aggregate_name, register_names, stable_name
from rightsledger.domain.personal import Key, PeriodScope, Personal, declaration, domain_events
from rightsledger.storage.keyvault import (
    PERSONAL,
    RETAINED,
    KeyScope,
    KeyVault,
    NewKey,
    period_key_id,
    retained_key_id,
)

ERASED = "[erased]"
SEALED = "__sealed__"


@dataclass(frozen=True)
class Rule:
    """One personal value of an event: where it is and which key seals it."""

    attribute: str
    item: str | None = None
    kind: Callable[[Any], str] = lambda _event: PERSONAL
    period: Callable[[Any], KeyScope] | None = None
    """A retention period's key (a personal key of the event's customer) instead of the
    subject's own."""


Subject = Callable[[Any, str], tuple[UUID, UUID | None]]
"""The key's id and its customer for an event's value sealed under a kind of key."""


def _customer_subject(event: Any, kind: str) -> tuple[UUID, UUID | None]:
    customer: UUID = event.originator_id
    return (retained_key_id(customer) if kind == RETAINED else customer), customer


def _request_subject(event: Any, _kind: str) -> tuple[UUID, UUID | None]:
    customer = getattr(event, "customer_id", None)
    return event.originator_id, customer


def _kind(choice: Personal | Key) -> Callable[[Any], str]:
    """The vault's kind of key (personal or retained) for a declared key or strategy."""
    if isinstance(choice, Key):
        kind = RETAINED if choice is Key.RETAINED else PERSONAL
        return lambda _event: kind
    return lambda event: RETAINED if choice.key_of(event) is Key.RETAINED else PERSONAL


def _period(strategy: Callable[[Any], PeriodScope]) -> Callable[[Any], KeyScope]:
    def scope(event: Any) -> KeyScope:
        period = strategy(event)
        return KeyScope(period.category, period.purpose, period.period, period.period_end)

    return scope


def rules_of(event_class: type) -> tuple[Subject, list[Rule]] | None:
    """The sealing rules an event class's declaration implies (None: nothing personal).

    A request's values are sealed with the request's key; a customer's with one of the
    customer's keys (personal, retained, or a period's)."""
    declared = declaration(event_class)
    if not declared.personal:
        return None
    keys = declared.keys()
    if Key.REQUEST in keys and keys != {Key.REQUEST}:
        raise TypeError(f"{event_class.__qualname__} mixes the request's key with a customer's")
    subject = _request_subject if Key.REQUEST in keys else _customer_subject
    rules: list[Rule] = []
    for attribute, marker in declared.personal.items():
        if marker.items is not None:
            rules.extend(Rule(attribute, item, _kind(key)) for item, key in marker.items.items())
        elif marker.period is not None:
            rules.append(Rule(attribute, period=_period(marker.period)))
        else:
            rules.append(Rule(attribute, kind=_kind(marker)))
    return subject, rules


def derive_rules(event_classes: Iterable[type]) -> dict[type, tuple[Subject, list[Rule]]]:
    """The rules of every event class that holds a personal value."""
    return {cls: spec for cls in event_classes if (spec := rules_of(cls)) is not None}


RULES: dict[type, tuple[Subject, list[Rule]]] = derive_rules(domain_events())
"""Per event class holding personal values: how to find its key, and each value's rule;
derived from the ``Personal`` markers on the domain's event classes."""


def _shape(value: Any) -> tuple[str, list[str] | None]:
    if isinstance(value, dict):
        return "mapping", sorted(str(k) for k in value)
    if isinstance(value, str):
        return "text", None
    return "other", None


def _placeholder(envelope: dict[str, Any]) -> Any:
    if envelope.get("shape") == "mapping":
        return dict.fromkeys(envelope.get("fields") or [], ERASED)
    return ERASED


def _new(event: Any, key_id: UUID, customer_id: UUID | None) -> bool:
    """Whether the key is most likely not there yet: the first event of a new request (its
    own key) or of a new customer (the customer's keys); there already only when a command
    is retried."""
    return event.originator_version == 1 and event.originator_id in (key_id, customer_id)


class SealingMapper(Mapper[UUID]):
    """Seals personal values on the way in, unseals (or shows ``ERASED``) on the way out."""

    def __init__(
        self,
        vault: KeyVault,
        transcoder: Transcoder,
        compressor: Any = None,
        cipher: Any = None,
    ) -> None:
        super().__init__(transcoder=transcoder, compressor=compressor, cipher=cipher)
        self.vault = vault
        register_names()

    @staticmethod
    def _aad(event: Any, rule: Rule) -> bytes:
        where = f"{event.originator_id}/{event.originator_version}"
        return f"{where}/{rule.attribute}/{rule.item}".encode()

    def _key(
        self, event: Any, rule: Rule, subject: Callable[..., Any]
    ) -> tuple[UUID, bytes | None]:
        """The id of the key a value of ``event`` is sealed under, and the key (created when
        it is the first value under it; None once destroyed)."""
        kind = rule.kind(event)
        if rule.period is not None:
            scope = rule.period(event)
            customer_id = event.originator_id
            key_id = period_key_id(customer_id, scope)
            return key_id, self.vault.key(
                key_id, customer_id=customer_id, kind=PERSONAL, scope=scope
            )
        key_id, customer_id = subject(event, kind)
        return key_id, self.vault.key(
            key_id, customer_id=customer_id, kind=kind, new=_new(event, key_id, customer_id)
        )

    def prepare(self, domain_events: Iterable[Any]) -> list[NewKey]:
        """Fetch now every key these events' values will be sealed under, so that
        ``to_stored_event`` finds them at hand: the group commit's writer then spends no
        round trip on keys, and concurrent commands fetch theirs in their own threads. A new
        customer's or request's own keys are reserved instead (``KeyVault.reserve``): the
        keys returned, to be written in the events' transaction."""
        reserved: list[NewKey] = []
        try:
            self._prepare(domain_events, reserved)
        except BaseException:
            self.vault.settle(reserved, stored=False)  # nothing will be stored under them
            raise
        return reserved

    def _prepare(self, domain_events: Iterable[Any], reserved: list[NewKey]) -> None:
        seen: set[UUID] = set()
        for event in domain_events:
            spec = RULES.get(type(event))
            if spec is None:
                continue
            subject, rules = spec
            for rule in rules:
                value = getattr(event, rule.attribute)
                if rule.item is not None:
                    value = value.get(rule.item) if isinstance(value, dict) else None
                if value is None:
                    continue
                if rule.period is None:
                    kind = rule.kind(event)
                    key_id, customer_id = subject(event, kind)
                    if customer_id is not None and _new(event, key_id, customer_id):
                        if key_id not in seen:
                            seen.add(key_id)
                            new = self.vault.reserve(key_id, customer_id=customer_id, kind=kind)
                            if new is not None:
                                reserved.append(new)
                        continue
                self._key(event, rule, subject)

    def _seal(self, event: Any, rule: Rule, value: Any, subject: Callable[..., Any]) -> Any:
        if value is None:
            return None
        key_id, key = self._key(event, rule, subject)
        if key is None:
            return _placeholder({"shape": _shape(value)[0], "fields": _shape(value)[1]})
        nonce = os.urandom(12)
        plaintext = self.transcoder.encode({"v": value})
        sealed = AESGCM(key).encrypt(nonce, plaintext, self._aad(event, rule))
        shape, fields = _shape(value)
        return {
            SEALED: 1,
            "key": str(key_id),
            "shape": shape,
            "fields": fields,
            "box": base64.b64encode(nonce + sealed).decode(),
        }

    def _cipher(self, name: str) -> AESGCM | None:
        """The cipher of the key an envelope names (None once the key is destroyed)."""
        key = self.vault.key(UUID(name), customer_id=None, kind=PERSONAL)
        return None if key is None else AESGCM(key)

    def _unseal(
        self, cipher: AESGCM | None, where: str, rule: Rule, envelope: dict[str, Any]
    ) -> Any:
        """A sealed value opened with ``cipher`` (its placeholder once the key is gone);
        ``where`` is the event's id and version, as ``_aad`` writes them."""
        if cipher is None:
            return _placeholder(envelope)
        box = base64.b64decode(envelope["box"])
        aad = f"{where}/{rule.attribute}/{rule.item}".encode()
        return self.transcoder.decode(cipher.decrypt(box[:12], box[12:], aad))["v"]

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        spec = RULES.get(type(domain_event))
        if spec is None:
            return self._named(domain_event)
        subject, rules = spec
        sealed = copy.copy(domain_event)
        for rule in rules:
            value = getattr(domain_event, rule.attribute)
            if rule.item is None:
                new = self._seal(domain_event, rule, value, subject)
            else:
                if not isinstance(value, dict) or rule.item not in value:
                    continue
                new = dict(getattr(sealed, rule.attribute))
                new[rule.item] = self._seal(domain_event, rule, value[rule.item], subject)
            object.__setattr__(sealed, rule.attribute, new)
        return self._named(sealed)

    def _named(self, event: Any) -> StoredEvent:
        """Stored under the event's stable name (``rightsledger.domain.naming``), a creation
        event naming its aggregate by its stable name too; module paths only ever resolve."""
        origin = vars(event).get("originator_topic")
        if origin is not None:
            event = copy.copy(event)
            object.__setattr__(event, "originator_topic", aggregate_name(origin))
        stored = super().to_stored_event(event)
        return StoredEvent(
            originator_id=stored.originator_id,
            originator_version=stored.originator_version,
            topic=stable_name(type(event)),
            state=stored.state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        event = super().to_domain_event(stored_event)
        sealed = self._sealed(event)
        if sealed:
            self._open(event, sealed, {name: self._cipher(name) for _, name in sealed})
        return event

    @staticmethod
    def owned_topics() -> set[str]:
        """Every name a stream's creation event is stored under when it names the customer
        who owns the stream (a ``customer_id``: a request, a read)."""
        return {
            name
            for name, cls in register_names().items()
            if isinstance(cls, type)
            and issubclass(cls, Aggregate.Created)
            and "customer_id" in getattr(cls, "__dataclass_fields__", {})
        }

    def owner_of(self, stored_event: StoredEvent) -> UUID | None:
        """The customer a creation event names as its stream's owner, read without opening
        its sealed values (the customer's id is public)."""
        owner = getattr(super().to_domain_event(stored_event), "customer_id", None)
        return owner if isinstance(owner, UUID) else None

    def to_domain_events(self, stored_events: Iterable[StoredEvent]) -> list[Any]:
        """Many events decoded, their keys read first in one go (``KeyVault.prefetch``)
        rather than one round trip per key not at hand, and each key's cipher made once for
        the batch: a follower catching up, a rebuild."""
        decode = super().to_domain_event
        events = [decode(stored) for stored in stored_events]
        found = [(event, sealed) for event in events if (sealed := self._sealed(event))]
        if not found:
            return events
        names = {name for _, sealed in found for _, name in sealed}
        self.vault.prefetch(UUID(name) for name in names)
        ciphers = {name: self._cipher(name) for name in names}
        for event, sealed in found:
            self._open(event, sealed, ciphers)
        return events

    @staticmethod
    def _sealed(event: Any) -> list[tuple[Rule, str]]:
        """The rules of a decoded event whose values are sealed, with the key each names."""
        spec = RULES.get(type(event))
        if spec is None:
            return []
        sealed = []
        for rule in spec[1]:
            value = getattr(event, rule.attribute)
            if rule.item is not None and isinstance(value, dict):
                value = value.get(rule.item)
            if isinstance(value, dict) and value.get(SEALED):
                sealed.append((rule, value["key"]))
        return sealed

    def _open(
        self, event: Any, sealed: list[tuple[Rule, str]], ciphers: dict[str, AESGCM | None]
    ) -> None:
        """The event's sealed values opened in place (or shown ``ERASED``)."""
        where = f"{event.originator_id}/{event.originator_version}"
        for rule, name in sealed:
            value = getattr(event, rule.attribute)
            if rule.item is None:
                opened = self._unseal(ciphers[name], where, rule, value)
            else:
                opened = dict(value)
                opened[rule.item] = self._unseal(ciphers[name], where, rule, value[rule.item])
            object.__setattr__(event, rule.attribute, opened)
