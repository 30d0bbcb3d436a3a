"""JetStream layout and the event ⇄ message mapping (DESIGN §4).

A relayed event travels as its stored payload bytes, with the envelope in
headers: `Nats-Msg-Id` (the event id, so JetStream drops a republished
duplicate), W3C `traceparent`/`tracestate`, and `Slipway-*` headers for the
rest, so a consumer can route on headers without decoding the body.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError, NotFoundError

from shared.errors import MessageError
from shared.events.base import Metadata, RecordedEvent
from shared.events.codec import EventRegistry
from shared.events.outbound import with_withheld
from shared.subjects import Subjects

MSG_ID = "Nats-Msg-Id"
EVENT_TYPE = "Slipway-Event-Type"
SCHEMA_VERSION = "Slipway-Schema-Version"
STREAM_ID = "Slipway-Stream-Id"
STREAM_VERSION = "Slipway-Stream-Version"
GLOBAL_POSITION = "Slipway-Global-Position"
TX_ID = "Slipway-Tx-Id"
RECORDED_AT = "Slipway-Recorded-At"
METADATA = "Slipway-Metadata"

_metadata_decoder = msgspec.json.Decoder(Metadata)

DEFAULT_DUPLICATE_WINDOW_S = 120.0
"""How long JetStream remembers event ids; must exceed the worst relay restart."""
DEFAULT_STREAM_MAX_AGE_S = 7 * 24 * 3600.0
"""How long the events stream keeps a message: the replay window of NATS. The log in
PostgreSQL is the source of truth and keeps everything; a consumer that falls further
behind reads the log over HTTP (`GET /events?after=`) instead."""
DEFAULT_STREAM_MAX_BYTES = 1024**3
"""The most the events stream stores (oldest messages go first). NATS reserves it on the
server's `max_file_store` when the stream is made."""


async def ensure_event_stream(
    js: JetStreamContext,
    subjects: Subjects,
    *,
    reconcile: bool = False,
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S,
    max_age_s: float = DEFAULT_STREAM_MAX_AGE_S,
    max_bytes: int = DEFAULT_STREAM_MAX_BYTES,
    replicas: int = 1,
) -> js_api.StreamInfo:
    """Make sure the events stream exists. Safe to call from every replica at start.

    Only its owner, the relay, passes `reconcile=True` to bring an existing
    stream to the given configuration (duplicate window, limits, replicas) at
    every start. Every other service creates it with the given settings only if
    it is missing, so a consumer starting first, or restarting later, never
    undoes the relay's settings (say, 3 replicas on a NATS cluster).

    The stream is bounded (`max_age_s`, `max_bytes`, oldest first): NATS keeps a
    replay window, the log in PostgreSQL keeps everything.
    """
    if max_age_s <= 0 or max_bytes <= 0:
        raise ValueError(
            f"the events stream needs limits: max_age_s {max_age_s} and max_bytes {max_bytes} "
            "must be positive (the log in PostgreSQL is the history, NATS a replay window)"
        )
    config = js_api.StreamConfig(
        name=subjects.events_stream,
        subjects=[subjects.all_events],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        duplicate_window=duplicate_window_s,
        max_age=max_age_s,
        max_bytes=max_bytes,
        discard=js_api.DiscardPolicy.OLD,
        num_replicas=replicas,
        description="Every committed Slipway event, relayed from the PostgreSQL log",
    )
    if not reconcile:
        try:
            return await js.stream_info(subjects.events_stream)
        except NotFoundError:
            pass
        try:
            return await js.add_stream(config)
        except BadRequestError:
            # Another replica created it between our two calls.
            return await js.stream_info(subjects.events_stream)
    try:
        return await js.update_stream(config)
    except NotFoundError:
        pass
    try:
        return await js.add_stream(config)
    except BadRequestError:
        return await js.update_stream(config)


def headers_for(row: Mapping[str, Any]) -> dict[str, str]:
    """Message headers for an `events` row, as the relay publishes it."""
    metadata = row["metadata"]
    stored = _metadata_decoder.decode(metadata) if metadata else Metadata()
    headers = {
        MSG_ID: str(row["event_id"]),
        EVENT_TYPE: row["event_type"],
        SCHEMA_VERSION: str(row["schema_version"]),
        STREAM_ID: row["stream_id"],
        STREAM_VERSION: str(row["stream_version"]),
        GLOBAL_POSITION: str(row["global_position"]),
        TX_ID: str(row["tx_id"]),
        RECORDED_AT: row["recorded_at"].isoformat(),
        METADATA: metadata if isinstance(metadata, str) else str(metadata),
    }
    if stored.traceparent:
        headers["traceparent"] = stored.traceparent
    if stored.tracestate:
        headers["tracestate"] = stored.tracestate
    return headers


def event_from_message(
    headers: Mapping[str, str] | None, data: bytes, registry: EventRegistry
) -> RecordedEvent:
    """Decode a relayed message; `MessageError` for anything that is not one."""
    if not headers:
        raise MessageError("message has no headers: not a relayed Slipway event")
    try:
        event_type = headers[EVENT_TYPE]
        return RecordedEvent(
            global_position=int(headers[GLOBAL_POSITION]),
            tx_id=int(headers[TX_ID]),
            stream_id=headers[STREAM_ID],
            stream_version=int(headers[STREAM_VERSION]),
            event_id=uuid.UUID(headers[MSG_ID]),
            event_type=event_type,
            schema_version=int(headers[SCHEMA_VERSION]),
            # The relay leaves private fields out (a key's hash): "" stands in for them.
            event=registry.decode(
                event_type, int(headers[SCHEMA_VERSION]), with_withheld(event_type, data)
            ),
            metadata=_metadata_decoder.decode(headers.get(METADATA) or "{}"),
            recorded_at=datetime.fromisoformat(headers[RECORDED_AT]),
        )
    except KeyError as exc:
        raise MessageError(f"relayed event is missing header {exc.args[0]}") from None
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MessageError(f"relayed event has a malformed header: {exc}") from exc
