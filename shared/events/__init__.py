"""Events: the tagged, frozen msgspec Structs Slipway records, and their codec."""

from shared.events.base import Event, Metadata, NewEvent, RecordedEnvelope, RecordedEvent
from shared.events.codec import EventRegistry, Upcaster

__all__ = [
    "Event",
    "EventRegistry",
    "Metadata",
    "NewEvent",
    "RecordedEnvelope",
    "RecordedEvent",
    "Upcaster",
]
