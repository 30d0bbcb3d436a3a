"""The event log: events and stream states, and the queries of the event routes
(listing, one stream, stream state, the live event stream).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from services.api.schemas.fields import (
    LogPosition,
)
from services.api.schemas.parameters import (
    EVENTS_PAGE,
)


class EventResource(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the log, decoded."""

    global_position: int
    stream_id: str
    stream_version: int
    event_id: str
    event_type: str
    schema_version: int
    recorded_at: datetime
    data: dict[str, Any]
    metadata: dict[str, Any]


class EventList(msgspec.Struct, frozen=True, kw_only=True):
    """Events in log order; `next_cursor` continues a tail in commit order."""

    items: list[EventResource]
    next_cursor: Annotated[
        str | None,
        Meta(description="Pass as `after` to get the events committed after these."),
    ] = None


class StreamState(msgspec.Struct, frozen=True, kw_only=True):
    """A stream's state as of a log position and/or a time: its events folded up to there."""

    stream_id: str
    as_of_position: int | None
    as_of_time: datetime | None
    events: Annotated[int, Meta(description="How many of its events count.")]
    version: Annotated[int, Meta(description="The stream version of the last one; -1: none.")]
    kind: Annotated[
        str,
        Meta(
            description="`deployment`, `application` or `apikey` (a folded state), else "
            "`generic` (the last event's data)."
        ),
    ]
    state: dict[str, Any] | None


class ListEventsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The filters of `GET /events`."""

    from_position: Annotated[LogPosition | None, Meta(description="The first position.")] = None
    to_position: Annotated[LogPosition | None, Meta(description="The last position.")] = None
    after: Annotated[
        Annotated[str, Meta(pattern="^(head|[0-9]{1,18}:[0-9]{1,18})$")] | None,
        Meta(description="`<tx_id>:<position>` from `next_cursor`, or `head`."),
    ] = None
    category: Annotated[
        Annotated[str, Meta(max_length=64)] | None,
        Meta(description="Only streams of this category (`deployment`, …)."),
    ] = None
    limit: Annotated[int, Meta(ge=1, le=EVENTS_PAGE.maximum, description="At most this many.")] = (
        EVENTS_PAGE.default
    )


class StreamEventsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of `GET /events/streams/{stream}`."""

    from_version: Annotated[LogPosition | None, Meta(description="The first version.")] = None
    after: Annotated[
        Annotated[int, Meta(ge=-1, le=2**63 - 2)] | None,
        Meta(
            description="Continue after this version (a page's `next_cursor`); "
            "not with `from_version`."
        ),
    ] = None
    limit: Annotated[int, Meta(ge=1, le=EVENTS_PAGE.maximum, description="At most this many.")] = (
        EVENTS_PAGE.default
    )


class StreamStateQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of `GET /events/streams/{stream}/state`: now, or as of a position or time."""

    position: Annotated[LogPosition | None, Meta(description="A global log position.")] = None
    at: Annotated[
        Annotated[str, Meta(extra_json_schema={"format": "date-time"})] | None,
        Meta(description="An ISO 8601 time with a zone."),
    ] = None


class EventStreamQuery(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /events/stream`'s parameters (docs/events.md); `Last-Event-ID` is a header."""

    after: Annotated[
        Annotated[str, Meta(pattern="^(head|[0-9]{1,18}:[0-9]{1,18})$")] | None,
        Meta(description="An event's cursor `<tx_id>:<position>`, or `head`; default: the start."),
    ] = None
    category: Annotated[
        Annotated[str, Meta(max_length=2048)] | None,
        Meta(description="Only these stream categories (comma-separated)."),
    ] = None
    type: Annotated[
        Annotated[str, Meta(max_length=2048)] | None,
        Meta(description="Only these event types (comma-separated)."),
    ] = None
    application: Annotated[
        Annotated[str, Meta(max_length=128)] | None,
        Meta(description="Only events about this application (its id)."),
    ] = None
    format: Annotated[
        Literal["native", "cloudevents", "cdevents"],
        Meta(description="How each event is sent (docs/events.md)."),
    ] = "native"
