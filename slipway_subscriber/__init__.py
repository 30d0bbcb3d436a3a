"""The subscriber kit: follow Slipway's events without missing or doubling one.

    from slipway_subscriber import FileCheckpoint, NatsSource, subscribe

    source = NatsSource(url, durable="subscriber-1")  # or SseSource(api_url, api_key)
    async for received in subscribe(source, FileCheckpoint("audit.checkpoint")):
        handle(received.event)  # a decoded catalog Struct (native format)

Each `Received` is handed out once per position: what the checkpoint says
was handled is skipped after a restart (by the log's commit order and the
event id), a dropped connection is resumed from the last position, and the
checkpoint moves once the loop asks for the next event (so a crash redelivers
at most the event being handled: make its effect idempotent, e.g. by
`event_id`). Needs only `shared.events` and `shared.messaging`, never a
service. docs/events.md describes the three ways in and the formats.
"""

from slipway_subscriber.checkpoint import Checkpoint, FileCheckpoint, MemoryCheckpoint, Position
from slipway_subscriber.nats import FellBehind, NatsSource, NotPermitted
from slipway_subscriber.received import Received
from slipway_subscriber.sse import SseSource
from slipway_subscriber.subscribe import Source, subscribe

__all__ = [
    "Checkpoint",
    "FellBehind",
    "FileCheckpoint",
    "MemoryCheckpoint",
    "NatsSource",
    "NotPermitted",
    "Position",
    "Received",
    "Source",
    "SseSource",
    "subscribe",
]
