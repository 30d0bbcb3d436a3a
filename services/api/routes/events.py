"""`/events`: the event log by position range, by stream, and a stream's state as of a point."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, cast

import msgspec
from aiohttp import web

from services.api import resources
from services.api.auth import Access
from services.api.deps import deps
from services.api.errors import ErrorReply
from services.api.routes import Answer, Route
from services.api.schemas import (
    EVENTS_PAGE,
    EventList,
    EventResource,
    ListEventsQuery,
    StreamEventsQuery,
    StreamState,
    StreamStateQuery,
)
from services.api.wire import MAX_INT, json_response, query_int, query_str
from shared.apikeys import fold_key
from shared.db import unavailable_on_disconnect
from shared.eventlog.position import LogPosition
from shared.events.base import RecordedEvent
from shared.events.outbound import public_data
from shared.snapshots import read_state
from shared.stream_folds import APPLICATION, DEPLOYMENT
from shared.streams import category_of, check_stream_id

__all__ = ["ROUTES", "parse_cursor"]


_RANGE: Final = """
SELECT global_position, tx_id, stream_id, stream_version, event_id, event_type,
       schema_version, payload, metadata, recorded_at
FROM events
WHERE global_position >= $1 AND ($2::bigint IS NULL OR global_position <= $2)
  AND ($3::text IS NULL OR stream_id LIKE $3 || '-%')
ORDER BY global_position
LIMIT $4
"""

_HEAD: Final = """
SELECT tx_id, global_position FROM events
WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx_id DESC, global_position DESC LIMIT 1
"""


_state_encoder: Final = msgspec.json.Encoder()


def _resource(recorded: RecordedEvent) -> EventResource:
    data = msgspec.to_builtins(recorded.event)
    data.pop("type", None)  # the tag: already `event_type`
    data = public_data(recorded.event_type, data)  # e.g. a key's hash: no reader needs it
    return EventResource(
        global_position=recorded.global_position,
        stream_id=recorded.stream_id,
        stream_version=recorded.stream_version,
        event_id=str(recorded.event_id),
        event_type=recorded.event_type,
        schema_version=recorded.schema_version,
        recorded_at=recorded.recorded_at,
        data=data,
        metadata=msgspec.to_builtins(recorded.metadata),
    )


def _cursor(recorded: RecordedEvent) -> str:
    return f"{recorded.tx_id}:{recorded.global_position}"


def parse_cursor(raw: str, *, field: str = "after") -> LogPosition:
    """A cursor `<tx_id>:<global_position>` (the tail's `next_cursor`, an SSE event id)."""
    tx, sep, position = raw.partition(":")
    if (
        not sep
        or not tx.isdigit()
        or not position.isdigit()
        or max(int(tx), int(position)) > MAX_INT
    ):
        raise ErrorReply(
            400, "invalid_request", f"{field} must look like <tx_id>:<position>", field=field
        )
    return LogPosition(int(tx), int(position))


async def list_(request: web.Request) -> web.Response:
    """A position range (`from_position`..`to_position`), or a tail in commit order (`after`)."""
    store = deps(request).store
    limit = query_int(request, "limit", ge=1, le=EVENTS_PAGE.maximum) or EVENTS_PAGE.default
    after = query_str(request, "after")
    from_position = query_int(request, "from_position", ge=0)
    to_position = query_int(request, "to_position", ge=0)
    category = query_str(request, "category", max_length=64)
    if after is not None:
        if from_position is not None or to_position is not None:
            raise ErrorReply(
                400,
                "invalid_request",
                "after (a tail in commit order) cannot be combined with a position range",
                field="after",
            )
        if after == "head":
            # Where a tail of what happens from now on starts: the newest event.
            async with unavailable_on_disconnect("read the event log"):
                row = await store.pool.fetchrow(_HEAD)
            head = f"{row['tx_id']}:{row['global_position']}" if row else "0:0"
            return json_response(EventList(items=[], next_cursor=head))
        # Commit order, below the horizon: a tail that follows `next_cursor` misses
        # nothing, even events whose positions committed out of order.
        position = parse_cursor(after)
        batch = await store.read_all(position, limit=limit)
        items = [e for e in batch if category is None or category_of(e.stream_id) == category]
        cursor = _cursor(batch[-1]) if batch else after
        return json_response(EventList(items=[_resource(e) for e in items], next_cursor=cursor))
    async with unavailable_on_disconnect("read the event log"):
        rows = await store.pool.fetch(_RANGE, from_position or 0, to_position, category, limit)
    events = [store.decode_row(row) for row in rows]
    return json_response(
        EventList(
            items=[_resource(e) for e in events],
            next_cursor=_cursor(events[-1]) if events else None,
        )
    )


async def stream(request: web.Request) -> web.Response:
    """A page of the stream, read as a page in SQL: a long stream is never loaded whole."""
    stream_id = _stream_id(request)
    from_version = query_int(request, "from_version", ge=0)
    after = query_int(request, "after", ge=-1, le=MAX_INT - 1)
    if from_version is not None and after is not None:
        raise ErrorReply(
            400, "invalid_request", "give from_version or after, not both", field="after"
        )
    first = after + 1 if after is not None else from_version or 0
    limit = query_int(request, "limit", ge=1, le=EVENTS_PAGE.maximum) or EVENTS_PAGE.default
    # One more than the page, to know whether there is a next one.
    history = await deps(request).store.read_stream(stream_id, from_version=first, limit=limit + 1)
    page = history[:limit]
    more = len(history) > limit
    return json_response(
        EventList(
            items=[_resource(e) for e in page],
            next_cursor=str(page[-1].stream_version) if more else None,
        )
    )


async def state(request: web.Request) -> web.Response:
    stream_id = _stream_id(request)
    position = query_int(request, "position", ge=0)
    at = _time(request)
    store = deps(request).store
    category = category_of(stream_id)
    kind: str = category
    value: object
    if category == DEPLOYMENT.kind:
        # A long stream: its newest snapshot at or before the point, and the events after it.
        deployment = await read_state(
            store, stream_id, DEPLOYMENT, up_to_position=position, up_to_time=at
        )
        value, events, version = deployment.state, deployment.events, deployment.version
    elif category == APPLICATION.kind:
        application = await read_state(
            store, stream_id, APPLICATION, up_to_position=position, up_to_time=at
        )
        value = resources.from_record(application.state)
        events, version = application.events, application.version
    else:
        history = await store.read_stream(stream_id, up_to_position=position, up_to_time=at)
        kind, value = _fold(stream_id, history)
        events, version = len(history), history[-1].stream_version if history else -1
    return json_response(
        StreamState(
            stream_id=stream_id,
            as_of_position=position,
            as_of_time=at,
            events=events,
            version=version,
            kind=kind,
            state=_builtins(value),
        )
    )


def _fold(stream_id: str, history: list[RecordedEvent]) -> tuple[str, object]:
    """The state an API key's stream folds to; the last event's data for other streams
    (deployments and applications are read with their snapshots, above)."""
    if category_of(stream_id) == "apikey":
        value, _ = fold_key(history)  # the key without its hash
        return "apikey", value
    return "generic", _resource(history[-1]).data if history else None


def _builtins(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, msgspec.Struct):
        # The same JSON, encoded once straight from the Struct: `to_builtins` of a long
        # deployment (thousands of stages) costs more than reading it from its snapshot.
        return cast(dict[str, Any], msgspec.Raw(_state_encoder.encode(value)))
    built = msgspec.to_builtins(value)
    return built if isinstance(built, dict) else {"value": built}


def _stream_id(request: web.Request) -> str:
    raw = request.match_info["stream_id"]
    try:
        return check_stream_id(raw)
    except ValueError as exc:
        raise ErrorReply(400, "invalid_request", str(exc), field="stream_id") from exc


def _time(request: web.Request) -> datetime | None:
    raw = query_str(request, "at", max_length=64)
    if raw is None:
        return None
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ErrorReply(
            400,
            "invalid_request",
            "at must be an ISO 8601 time with a zone, e.g. 2026-01-31T12:00:00Z",
            field="at",
        )
    return at


ROUTES: Final = (
    Route(
        "GET",
        "/events",
        list_,
        "listEvents",
        Access.READ,
        summary="Events by position range, or a tail in commit order",
        tag="events",
        answers=(Answer(200, "Events.", EventList),),
        errors=(400, 503),
        description="`from_position`/`to_position` (inclusive) read a range by "
        "position; `after` (a `next_cursor`, or `head` for the newest) tails in commit "
        "order, missing nothing.",
        query=ListEventsQuery,
    ),
    Route(
        "GET",
        "/events/streams/{stream_id}",
        stream,
        "getStreamEvents",
        Access.READ,
        summary="A stream's events in version order",
        tag="events",
        answers=(Answer(200, "Its events.", EventList),),
        errors=(400, 503),
        query=StreamEventsQuery,
    ),
    Route(
        "GET",
        "/events/streams/{stream_id}/state",
        state,
        "getStreamState",
        Access.READ,
        summary="Time travel: a stream's state as of a position or a time",
        tag="events",
        answers=(Answer(200, "The state.", StreamState),),
        errors=(400, 503),
        description="Folds the stream's events at or before `position` and at or "
        "before `at` (both when both are given; neither: now).",
        query=StreamStateQuery,
    ),
)
