"""One document a subscriber receives, decoded as far as its format allows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.events.base import Event
from slipway_subscriber.checkpoint import Position

__all__ = ["Received"]


@dataclass(frozen=True)
class Received:
    """A document of the subscription: a native event, a CloudEvent or a CDEvent."""

    position: Position
    id: str
    """The event id (native, CloudEvents) or the CDEvent's `context.id`: deduplicate on it."""
    type: str
    """The Slipway event type, or the CDEvent type (`dev.cdevents.…`)."""
    document: dict[str, Any]
    """The JSON document as the format spells it."""
    event: Event | None = None
    """The catalog Struct (native and CloudEvents formats), at the latest schema version."""
    stream_sequence: int = 0
    """Over NATS: the events stream's sequence (0 over HTTP)."""
