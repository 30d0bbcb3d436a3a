"""Encoding events for storage and the wire, and decoding them across schema versions.

Payloads are msgspec JSON: compact and fast, yet readable with
`convert_from(payload, 'UTF8')` in psql and on `nats sub`, which matters more
to an operator at 3 a.m. than the bytes MessagePack would save.

Schema evolution: adding a field with a default needs nothing. A breaking
change bumps the type's `version` and registers an upcaster from the previous
version; stored payloads are never rewritten, they are upcast on read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from shared.errors import MessageError, UnknownEventType
from shared.events.base import Event

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns a payload of version N (as a dict) into version N + 1."""


class _Registration(msgspec.Struct, frozen=True):
    type: type[Event]
    version: int
    decoder: msgspec.json.Decoder[Any]
    upcasters: dict[int, Upcaster]


class EventRegistry:
    """Which Struct each event tag decodes to, at which schema version."""

    def __init__(self, types: Iterable[type[Event]] = ()) -> None:
        self._by_tag: dict[str, _Registration] = {}
        self._encoder = msgspec.json.Encoder()
        for event_type in types:
            self.register(event_type)

    def register(
        self,
        event_type: type[Event],
        *,
        version: int = 1,
        upcasters: dict[int, Upcaster] | None = None,
    ) -> type[Event]:
        """Register `event_type`; `upcasters[n]` lifts a version-n payload to n + 1."""
        tag = tag_of(event_type)
        missing = [n for n in range(1, version) if n not in (upcasters or {})]
        if missing:
            raise ValueError(f"{tag}: version {version} needs upcasters from versions {missing}")
        if tag in self._by_tag and self._by_tag[tag].type is not event_type:
            raise ValueError(f"event tag {tag!r} is already registered to another type")
        self._by_tag[tag] = _Registration(
            event_type, version, msgspec.json.Decoder(event_type), dict(upcasters or {})
        )
        return event_type

    def __contains__(self, tag: str) -> bool:
        return tag in self._by_tag

    def tags(self) -> list[str]:
        """Every registered event type, sorted."""
        return sorted(self._by_tag)

    def current_version(self, tag: str) -> int:
        """The schema version new events of `tag` are written with."""
        return self._registration(tag).version

    def encode(self, event: Event) -> tuple[str, int, bytes]:
        """(event_type, schema_version, payload) for storing `event`."""
        tag = tag_of(type(event))
        registration = self._registration(tag)
        if not isinstance(event, registration.type):
            raise TypeError(f"{type(event).__name__} is not the registered type for {tag!r}")
        return tag, registration.version, self._encoder.encode(event)

    def decode(self, event_type: str, schema_version: int, payload: bytes) -> Event:
        """The current-version Struct for a stored payload of any registered version."""
        registration = self._registration(event_type)
        try:
            if schema_version == registration.version:
                event: Event = registration.decoder.decode(payload)
                return event
            if not 1 <= schema_version < registration.version:
                raise MessageError(
                    f"{event_type}: schema version {schema_version} is not one this "
                    f"build knows (1..{registration.version})"
                )
            data = msgspec.json.decode(payload)
            if not isinstance(data, dict):
                raise MessageError(f"{event_type}: payload is not a JSON object")
            for version in range(schema_version, registration.version):
                try:
                    data = registration.upcasters[version](data)
                except (LookupError, TypeError, ValueError, AttributeError) as exc:
                    # An old payload without the shape its upcaster reads fails the same
                    # way on every redelivery: a dead letter, not a crash loop.
                    raise MessageError(
                        f"{event_type} v{schema_version}: upcasting v{version} to "
                        f"v{version + 1} failed: {exc!r}"
                    ) from exc
            upcast: Event = msgspec.convert(data, registration.type)
            return upcast
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise MessageError(f"{event_type} v{schema_version}: {exc}") from exc

    def _registration(self, tag: str) -> _Registration:
        try:
            return self._by_tag[tag]
        except KeyError:
            raise UnknownEventType(f"unknown event type {tag!r}") from None


def tag_of(event_type: type[Event]) -> str:
    """The wire name of an event type: its explicit msgspec tag."""
    tag = event_type.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{event_type.__name__} needs an explicit string tag= (its wire name)")
    return tag
