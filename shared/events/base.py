"""The event base type and the envelope that carries an event through the log and NATS.

An event's own fields say what happened; everything about *how* it was
recorded — ids, causality, trace context, who did it, when — lives in the
envelope (`Metadata` when appending, `RecordedEvent` when reading), so it is
never repeated in each event type.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every domain event. Subclasses set an explicit `tag=` (the wire name)."""


class Metadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Envelope fields chosen by the writer; stored as the `metadata` jsonb column."""

    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    actor: str | None = None
    # When the fact happened in the domain, as the writer's clock saw it; the log's own
    # `recorded_at` is when the database stored it.
    occurred_at: datetime | None = None


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event to append, with the id that makes its append idempotent."""

    event: Event
    event_id: uuid.UUID
    metadata: Metadata = Metadata()


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the log stored it, with its place in the log."""

    global_position: int
    tx_id: int
    stream_id: str
    stream_version: int
    event_id: uuid.UUID
    event_type: str
    schema_version: int
    event: Event
    metadata: Metadata
    recorded_at: datetime
