"""Documents as the sources receive them → `Received`, with the catalog's types decoded."""

from __future__ import annotations

import json
from typing import Any

from shared.errors import MessageError, UnknownEventType
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import default_registry
from shared.events.feed import Feed
from shared.events.outbound import Format, native_document
from slipway_subscriber.checkpoint import LAST_PART, Position
from slipway_subscriber.received import Received

__all__ = ["from_http", "from_recorded"]

_registry = default_registry()
_CE_PREFIX = "dev.slipway."


def from_http(cursor: str, fmt: Format, document: dict[str, Any]) -> Received:
    """One SSE message's (or webhook's) document; ValueError when it is not one of `fmt`."""
    position = Position.parse(cursor)
    if fmt == "native":
        event_type = _text(document, "event_type")
        return Received(
            position=position,
            id=_text(document, "event_id"),
            type=event_type,
            document=document,
            event=_decode(event_type, document.get("data")),
        )
    if fmt == "cloudevents":
        kind = _text(document, "type")
        event_type = kind.removeprefix(_CE_PREFIX).rsplit(".v", 1)[0]
        return Received(
            position=position,
            id=_text(document, "id"),
            type=event_type,
            document=document,
            event=_decode(event_type, document.get("data")),
        )
    return Received(
        position=position, id=_text(document, "id"), type=_text(document, "type"), document=document
    )


async def from_recorded(
    recorded: RecordedEvent, fmt: Format, feed: Feed, stream_sequence: int
) -> list[Received]:
    """An event read from NATS, as the documents of `fmt` (rendered here, as the server
    renders for SSE and webhooks)."""
    if fmt == "native":
        position = Position(recorded.tx_id, recorded.global_position)
        return [
            Received(
                position=position,
                id=str(recorded.event_id),
                type=recorded.event_type,
                document=native_document(recorded),
                event=recorded.event,
                stream_sequence=stream_sequence,
            )
        ]
    documents = await feed.documents(recorded)
    out = []
    for part, document in enumerate(documents):
        last = part == len(documents) - 1
        position = Position(recorded.tx_id, recorded.global_position, LAST_PART if last else part)
        parsed = json.loads(document.body)
        out.append(
            Received(
                position=position,
                id=str(parsed["id"]),
                type=document.type if fmt == "cdevents" else recorded.event_type,
                document=parsed,
                event=recorded.event if fmt == "cloudevents" else None,
                # Until its last document is handled, the event is not: a restart reads it
                # again (from the sequence before) and skips the parts handled by position.
                stream_sequence=stream_sequence if last else stream_sequence - 1,
            )
        )
    return out


def _decode(event_type: str, data: object) -> Event | None:
    """The catalog Struct of `data` (the latest version); None for a type this build does not
    know, or data without the fields it needs (a field the server never sends, like a hash)."""
    if not isinstance(data, dict) or event_type not in _registry:
        return None
    payload = json.dumps({**data, "type": event_type}).encode()
    try:
        return _registry.decode(event_type, _registry.current_version(event_type), payload)
    except (MessageError, UnknownEventType):
        return None


def _text(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"document has no {key!r}: {json.dumps(document)[:120]}")
    return value
