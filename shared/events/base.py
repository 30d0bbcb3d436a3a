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


# Events and their envelopes are immutable values that never hold a reference back to
# themselves, so they cannot be part of a reference cycle: `gc=False` keeps them out of
# the cycle collector, whose passes over every event of a batch were a quarter of a
# replay's decoding time. (A new event field must not be a container that could come
# to hold the event itself.)
class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Base of every domain event. Subclasses set an explicit `tag=` (the wire name)."""


class Metadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
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


class RecordedEnvelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the log says about a stored event besides its payload and metadata: its place
    in the log, its type and when it was stored. Read alone for folds that need no more
    (see `EnvelopeProjection`): decoding the payload and metadata is most of reading one."""

    global_position: int
    tx_id: int
    stream_id: str
    stream_version: int
    event_id: uuid.UUID
    event_type: str
    schema_version: int
    recorded_at: datetime


class RecordedEvent(RecordedEnvelope, frozen=True, kw_only=True, gc=False):
    """An event as the log stored it, with its place in the log."""

    event: Event
    metadata: Metadata
