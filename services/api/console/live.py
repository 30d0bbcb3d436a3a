"""`GET /console/live`: one server-sent event stream per page, saying "what you show changed".

A page opens it (htmx's SSE extension) with its scope: every application
(the applications page), one application, or one deployment. It follows the
event log from its head through the API process's one shared reader of the
tail (`log_tail.LOG_TAIL`, as `GET /events/stream` does) and sends
`event: changed` once per batch that touches the scope; the page then
fetches its live part again. Pages built from the read models must not fetch
before the projector has applied the event, so the message waits (briefly)
until the applications and deployments views have passed it. A deployment's
scope also covers its analyses' streams and its stage log lines (a table,
not events), checked with each batch and at least once a second.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from services.api.auth import PRINCIPAL, key_still_live
from services.api.console.state import CONSOLE
from services.api.deps import deps
from services.api.errors import ErrorReply
from services.api.limits import TooManyStreams
from services.api.log_tail import LOG_TAIL
from services.api.routes.event_stream import head_position
from services.api.routes.events import parse_cursor
from services.api.wire import query_str
from shared.db import unavailable_on_disconnect
from shared.errors import Unavailable
from shared.eventlog.store import EventStore
from shared.events.base import RecordedEvent
from shared.events.ids import analysis_id_of
from shared.events.streams import analysis_stream, deployment_stream
from shared.snapshots import read_state
from shared.stream_folds import DEPLOYMENT

__all__ = ["HEARTBEAT_S", "live", "page_cursor"]

HEARTBEAT_S: Final = 10.0
_VIEW_WAIT_S: Final = 2.0
_VIEW_POLL_S: Final = 0.02
# Both views the pages read, past the event (in commit order, as projections apply).
_VIEWS_REACHED: Final = """
SELECT count(*) = 2 FROM projection_state p, events e
WHERE p.name IN ('applications', 'deployments') AND e.global_position = $1
  AND (p.tx_id, p.position) >= (e.tx_id, e.global_position)
"""
# The older of the two views' checkpoints: what a page read from them reflects at least.
_VIEWS_AT: Final = """
SELECT tx_id, position FROM projection_state WHERE name IN ('applications', 'deployments')
ORDER BY tx_id, position LIMIT 1
"""
_LAST_LINE: Final = "SELECT coalesce(max(id), 0) FROM stage_logs WHERE deployment_id = $1"


class _Scope:
    """Which events a page shows: all, one application's, or one deployment's."""

    def __init__(self, application: str | None, deployment: str | None) -> None:
        self.application = application
        self.deployment = deployment
        self.streams: set[str] = set()

    async def refresh(self, store: EventStore) -> None:
        """A deployment's streams: its own and its ANALYSIS stages' (known once planned)."""
        if self.deployment is None:
            return
        stream = deployment_stream(self.deployment)
        view = (await read_state(store, stream, DEPLOYMENT)).state
        stages = view.stages if view is not None else ()
        self.streams = {stream} | {
            analysis_stream(analysis_id_of(self.deployment, s.id))
            for s in stages
            if s.name == "ANALYSIS"
        }

    def covers(self, recorded: RecordedEvent) -> bool:
        if self.deployment is not None:
            return recorded.stream_id in self.streams
        if self.application is not None:
            event = recorded.event
            return getattr(
                event, "application_id", None
            ) == self.application or recorded.stream_id.endswith(self.application)
        return True


async def page_cursor(store: EventStore, *, from_views: bool) -> str:
    """Where a page's live stream starts, read *before* the page reads its data: then
    nothing that happens between the render and the stream's connection is missed. A page
    built from the views starts at their checkpoint (they may lag the log), one folded
    from the log at its head."""
    async with unavailable_on_disconnect("read the event log"):
        row = await store.pool.fetchrow(_VIEWS_AT) if from_views else None
    if row is not None:
        return f"{row['tx_id']}:{row['position']}"
    head = await head_position(store)
    return f"{head.tx_id}:{head.global_position}"


async def _views_reached(store: EventStore, position: int) -> None:
    deadline = asyncio.get_running_loop().time() + _VIEW_WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        if await store.pool.fetchval(_VIEWS_REACHED, position):
            return
        await asyncio.sleep(_VIEW_POLL_S)


async def live(request: web.Request) -> web.StreamResponse:
    """The console's live stream (SSE): `changed` whenever an event concerns the page's subject."""
    principal = request.get(PRINCIPAL)
    try:
        with request.app[CONSOLE].live_streams.hold(
            (principal.key_id or principal.name) if principal else ""
        ):
            return await _live(request)
    except TooManyStreams:
        raise ErrorReply(
            429,
            "too_many_streams",
            "this key has too many console pages open; close some",
            headers={"Retry-After": "5"},
        ) from None


async def _live(request: web.Request) -> web.StreamResponse:
    store = deps(request).store
    scope = _Scope(query_str(request, "application"), query_str(request, "deployment"))
    if scope.deployment is not None:
        try:
            await scope.refresh(store)
        except ValueError:
            raise web.HTTPBadRequest(reason="not a deployment id") from None
    cursor = query_str(request, "after", max_length=64)
    after = parse_cursor(cursor) if cursor else await head_position(store)
    async with unavailable_on_disconnect("read the stage logs"):
        last_line = (
            await store.pool.fetchval(_LAST_LINE, scope.deployment) if scope.deployment else 0
        )
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
    tail = request.app[LOG_TAIL].follow(after)
    try:
        async for batch in tail:
            if request.transport is None or request.transport.is_closing():
                break
            changed = [e for e in batch if scope.covers(e)]
            if scope.deployment is not None:
                if any(e.event_type == "deployment_planned" for e in changed):
                    await scope.refresh(store)
                line = await store.pool.fetchval(_LAST_LINE, scope.deployment)
                if line != last_line:
                    last_line = line
                    changed = changed or batch[-1:] or [None]  # type: ignore[list-item]
            if changed:
                last = changed[-1]
                if last is not None and scope.deployment is None:
                    await _views_reached(store, last.global_position)
                await response.write(b"event: changed\ndata: changed\n\n")
                written = loop.time()
            elif not batch:
                if not await key_still_live(request):
                    break
                if loop.time() - written >= HEARTBEAT_S:
                    await response.write(b": heartbeat\n\n")
                    written = loop.time()
    except (ConnectionResetError, Unavailable):
        pass  # the page went away, or the database did: the browser reconnects
    finally:
        await tail.aclose()  # leave the shared tail now
    return response
