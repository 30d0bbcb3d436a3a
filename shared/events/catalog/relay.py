"""The relay's own events (stream `relay-<relay name>`)."""

from __future__ import annotations

from shared.events.base import Event


class EventPublishFailed(Event, tag="event_publish_failed", frozen=True):
    """The relay could not publish a logged event to NATS and no retry could, so it went on
    without it (consumers never see that event; `slipway` reads it from the log)."""

    event_id: str
    event_type: str
    stream_id: str
    global_position: int
    size_bytes: int
    reason: str
