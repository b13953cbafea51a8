"""The event store's transcoder: the stored JSON format unchanged, decoded with msgspec.

Stored event state is JSON written by eventsourcing's ``JSONTranscoder``: plain JSON,
with values of registered types (UUID, Decimal, datetime) written as
``{"_type_": NAME, "_data_": ...}``. The hash chain (``storage/chain.py``) covers those
stored bytes, so the format must never change.

``FastJSONTranscoder`` keeps it: encoding is ``JSONTranscoder``'s own (same encoder,
same separators, same bytes), so new events are stored exactly as before. Decoding
parses with msgspec's JSON decoder (several times faster than the standard library's
parser with an ``object_hook``, and like it reading integers of any size exactly), then
replaces each tagged mapping by its value, bottom up, as ``JSONTranscoder``'s
``object_hook`` does, visiting nested values only when the bytes hold tags there. Bytes
msgspec refuses (lone surrogates, ``NaN``, numbers beyond a float's range, all of which
the standard encoder can write) are decoded by ``JSONTranscoder`` itself, so every
stored event still decodes as it did.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, SafeUUID

import msgspec
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Transcoding,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)

_parse = msgspec.json.Decoder().decode
"""JSON to Python values as the standard library's parser gives them (integers of any size
included), several times faster."""

_TYPE = "_type_"
_DATA = "_data_"
_TAG = b'"_type_"'
"""How every tagged value's first key is written; counted in the bytes, an upper bound on
the tags (a string holding it is written with escaped quotes)."""


_UNKNOWN = SafeUUID.unknown
"""Read once: an enum member looked up on its class costs a descriptor call each time."""


def _uuid(data: str) -> UUID:
    """``UUID(data)`` for the 32 hex digits ``UUIDAsHex`` writes, without ``UUID.__init__``'s
    parsing of other spellings (the same ``int(data, 16)`` at its heart)."""
    if type(data) is not str or len(data) != 32:
        return UUID(data)
    value = object.__new__(UUID)
    object.__setattr__(value, "int", int(data, 16))
    object.__setattr__(value, "is_safe", _UNKNOWN)
    return value


def _datetime(data: str) -> datetime:
    if type(data) is not str:
        msg = f"a datetime is stored as ISO text, not {type(data).__name__}"
        raise TypeError(msg)
    return datetime.fromisoformat(data)


_FASTER: dict[type[Transcoding], Callable[[Any], Any]] = {
    UUIDAsHex: _uuid,
    DatetimeAsISO: _datetime,
    DecimalAsStr: Decimal,
}
"""Same results as eventsourcing's stock transcodings' ``decode``, with less Python."""


class FastJSONTranscoder(JSONTranscoder):
    """``JSONTranscoder``'s format and encoder, with a msgspec decoder."""

    def __init__(self) -> None:
        super().__init__()
        self._decoders: dict[str, Callable[[Any], Any]] = {}

    def register(self, transcoding: Transcoding) -> None:
        super().register(transcoding)
        self._decoders[transcoding.name] = _FASTER.get(type(transcoding), transcoding.decode)

    def decode(self, data: bytes) -> Any:
        if type(data) is not bytes:
            data = bytes(data)
        try:
            value = _parse(data)
        except msgspec.MsgspecError:
            return super().decode(data)
        tags = data.count(_TAG)
        if not tags:
            return value
        if type(value) is dict:
            return self._state(value, tags)
        return self._value(value)

    def _state(self, state: dict[str, Any], tags: int) -> Any:
        """The event's state with its tagged values decoded. Most tags are attributes of
        the event itself (its time, ids): when the bytes hold no more tags than those,
        the nested mappings and lists are left as they are, unvisited."""
        decoders = self._decoders
        nested: list[str] = []
        for key, item in state.items():
            kind = type(item)
            if kind is dict:
                if len(item) == 2 and _TYPE in item and _DATA in item:
                    data = item[_DATA]
                    if type(data) is str:
                        state[key] = self._tagged(decoders, item[_TYPE], data)
                        tags -= 1
                        continue
                nested.append(key)
            elif kind is list:
                nested.append(key)
        if tags > 0:
            for key in nested:
                item = state[key]
                if type(item) is dict:
                    state[key] = self._mapping(item)
                else:
                    self._items(item)
        if len(state) == 2 and _TYPE in state and _DATA in state:
            return self._tagged(decoders, state[_TYPE], state[_DATA])
        return state

    @staticmethod
    def _tagged(decoders: dict[str, Callable[[Any], Any]], name: Any, data: Any) -> Any:
        try:
            decode = decoders[name]
        except (KeyError, TypeError):
            msg = (
                f"Data serialized with name '{name}' is not deserializable. "
                "Please register a custom transcoding for this type."
            )
            raise TranscodingNotRegisteredError(msg) from None
        return decode(data)

    def _mapping(self, mapping: dict[str, Any]) -> Any:
        """The mapping with its tagged values decoded; a tagged mapping's own value."""
        for key, item in mapping.items():
            kind = type(item)
            if kind is dict:
                mapping[key] = self._mapping(item)
            elif kind is list:
                self._items(item)
        if len(mapping) == 2 and _TYPE in mapping and _DATA in mapping:
            return self._tagged(self._decoders, mapping[_TYPE], mapping[_DATA])
        return mapping

    def _items(self, items: list[Any]) -> None:
        for index, item in enumerate(items):
            kind = type(item)
            if kind is dict:
                items[index] = self._mapping(item)
            elif kind is list:
                self._items(item)

    def _value(self, value: Any) -> Any:
        if type(value) is list:
            self._items(value)
        return value
