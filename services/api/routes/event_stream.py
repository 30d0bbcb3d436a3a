"""`GET /events/stream`: the event log as Server-Sent Events, in commit order, resumable.

The order is the `after=` tail's (commit order below the snapshot horizon),
so a follower never misses an event that committed late. Each SSE message's
`id` is the event's cursor `<tx_id>:<global_position>`; a client that
reconnects with `Last-Event-ID` (browsers do it by themselves) continues
right after the last event it got. `after` (a cursor, or `head`) says where
a first connection starts; with neither it starts at the beginning of the log.

The `event` field is the event type (native, CloudEvents) or the CDEvent type;
`data` is one JSON document (`shared.events.outbound`). An event that maps to
several CDEvents sends each with the id `<cursor>/<part>`, the last with
plain `<cursor>`, so a reconnect resumes inside the event. Filters and format
parse into a `shared.events.feed.Selection`, as a raw-event webhook's do. A
comment line (`: heartbeat <cursor>`) every `HEARTBEAT_S` without an event
keeps proxies and read timeouts from closing a quiet stream; its cursor is
where the stream has read to, including events the filters dropped.

Where the events come from is the API process's one shared reader of the
log's tail (`services.api.log_tail`): a thousand open streams cost one poll,
and only a follower behind the live window reads the table for itself.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from services.api.auth import PRINCIPAL, Access, key_still_live
from services.api.deps import Deps, deps
from services.api.errors import ErrorReply
from services.api.limits import TooManyStreams
from services.api.log_tail import LOG_TAIL, LogTail
from services.api.routes import Answer, Route
from services.api.routes.events import parse_cursor
from services.api.schemas import EventStreamQuery
from services.api.wire import query_str
from shared.db import unavailable_on_disconnect
from shared.eventlog.position import LogPosition
from shared.eventlog.store import EventStore
from shared.events.base import RecordedEvent
from shared.events.feed import Feed, Selection, SelectionError, selection_of
from shared.events.outbound import cursor_of

__all__ = ["HEARTBEAT_S", "ROUTES", "head_position", "log_tail"]

HEARTBEAT_S: Final = 10.0
_MAX_PARTS: Final = 64
_HEAD: Final = """
SELECT tx_id, global_position FROM events
WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx_id DESC, global_position DESC LIMIT 1
"""


async def head_position(store: EventStore) -> LogPosition:
    """The newest event below the snapshot horizon (the beginning of an empty log)."""
    async with unavailable_on_disconnect("read the event log"):
        row = await store.pool.fetchrow(_HEAD)
    return LogPosition(row["tx_id"], row["global_position"]) if row else LogPosition(0, 0)


def log_tail(store: EventStore, *, poll_s: float = 0.05) -> LogTail:
    """This API process's shared reader of the log's tail."""

    async def read(after: LogPosition, limit: int) -> list[RecordedEvent]:
        return await store.read_all(after, limit=limit)

    return LogTail(read=read, head=lambda: head_position(store), poll_s=poll_s)


async def stream(request: web.Request) -> web.StreamResponse:
    api = deps(request)
    selection = _selection(request)
    after, skip = await _start(request, api)
    principal = request.get(PRINCIPAL)
    try:
        with api.log_streams.hold(principal.key_id if principal else ""):
            return await _follow(request, api, selection, after, skip)
    except TooManyStreams:
        raise ErrorReply(
            429,
            "too_many_streams",
            f"this API key holds {api.log_streams.per_key} streams already; close one first",
            headers={"Retry-After": "5"},
        ) from None


async def _follow(
    request: web.Request,
    api: Deps,
    selection: Selection,
    after: LogPosition,
    skip: tuple[int, int] | None,
) -> web.StreamResponse:
    store = api.store

    async def read_stream(stream_id: str, count: int) -> list[RecordedEvent]:
        return await store.read_stream(stream_id, limit=count)

    feed = Feed(selection, read_stream)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    written = loop.time()
    cursor = f"{after.tx_id}:{after.global_position}"
    tail = request.app[LOG_TAIL].follow(after)
    try:
        async for batch in tail:
            if request.transport is None or request.transport.is_closing():
                break
            for recorded in batch:
                cursor = cursor_of(recorded)
                documents = await feed.documents(recorded)
                for part, document in enumerate(documents):
                    if skip is not None and (recorded.global_position, part) <= skip:
                        continue  # sent before the reconnect
                    # Several documents of one event (CDEvents): all but the last are
                    # `<cursor>/<part>`, so a reconnect resumes within the event.
                    last = part == len(documents) - 1
                    event_id = cursor if last else f"{cursor}/{part}"
                    await response.write(_message(event_id, document.type, document.body))
                    written = loop.time()
                skip = None
            if not batch:
                if not await key_still_live(request):
                    await response.write(b'event: revoked\ndata: {"error":"key revoked"}\n\n')
                    break
                if loop.time() - written >= HEARTBEAT_S:
                    await response.write(f": heartbeat {cursor}\n\n".encode())
                    written = loop.time()
    except ConnectionResetError:
        pass  # the client went away
    finally:
        await tail.aclose()  # leave the shared tail now, not when the generator is collected
    return response


def _message(cursor: str, event: str, data: bytes) -> bytes:
    # JSON documents are one line (no raw newlines), so one `data:` field carries each.
    return f"id: {cursor}\nevent: {event}\n".encode() + b"data: " + data + b"\n\n"


def _selection(request: web.Request) -> Selection:
    def listed(name: str) -> list[str]:
        raw = query_str(request, name, max_length=2048)
        return [] if raw is None else [part.strip() for part in raw.split(",")]

    try:
        return selection_of(
            categories=listed("category"),
            types=listed("type"),
            application=query_str(request, "application", max_length=128),
            fmt=query_str(request, "format", max_length=32),
        )
    except SelectionError as exc:
        raise ErrorReply(400, "invalid_request", str(exc), field=exc.field) from None


async def _start(request: web.Request, api: Deps) -> tuple[LogPosition, tuple[int, int] | None]:
    """Where to read from: `Last-Event-ID` (a reconnect), else `after`, else the beginning;
    and, when the last id named a part of an event (`<tx>:<pos>/<part>`: one of the
    CDEvents it maps to), that event's position and the part to go on after."""
    resume = request.headers.get("Last-Event-ID", "").strip()
    if resume:
        head, _, part = resume.partition("/")
        position = parse_cursor(head, field="Last-Event-ID")
        if not part:
            return position, None
        if not part.isdigit() or int(part) > _MAX_PARTS or position.global_position < 1:
            raise ErrorReply(
                400,
                "invalid_request",
                "Last-Event-ID must look like <tx_id>:<position>[/<part>]",
                field="Last-Event-ID",
            )
        # The event itself again (nothing sorts between (tx, pos - 1) and (tx, pos)),
        # without the parts already received.
        before = LogPosition(position.tx_id, position.global_position - 1)
        return before, (position.global_position, int(part))
    after = query_str(request, "after", max_length=64)
    if after is None:
        return LogPosition(0, 0), None
    if after == "head":
        return await head_position(api.store), None
    return parse_cursor(after, field="after"), None


ROUTES: Final = (
    Route(
        "GET",
        "/events/stream",
        stream,
        "streamEvents",
        Access.READ,
        summary="Follow the event log as server-sent events",
        tag="events",
        answers=(
            Answer(
                200,
                "`text/event-stream`: one message per document, `id` the event's cursor, "
                "`event` its type; `: heartbeat <cursor>` comments while quiet.",
                None,
                event_stream=True,
            ),
        ),
        errors=(400, 429, 503),
        description="In commit order (the `after` tail's), from the beginning of the log, "
        "`after`, or the `Last-Event-ID` header of a reconnect (`<tx_id>:<position>`, or "
        "`<tx_id>:<position>/<part>` inside an event sent as several CDEvents). `format` "
        "`native` (the event resource with its `cursor`), `cloudevents` (CloudEvents 1.0 "
        "structured JSON) or `cdevents` (the CDEvents it maps to). Counts against the key's "
        "open streams, as log follows do.",
        query=EventStreamQuery,
    ),
)
