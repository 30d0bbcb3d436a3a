"""A deployment's logs: the stored lines, or followed live as server-sent events through
the process's shared `FollowHub`. Its route is in `routes/deployments.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Final

import msgspec
from aiohttp import web
from nats.errors import Error as NatsError

from services.api import deployments as model
from services.api.auth import PRINCIPAL, key_still_live
from services.api.decider import TargetNotFound
from services.api.deps import Deps, deps
from services.api.errors import ErrorReply
from services.api.follow_hub import FOLLOW_HUB, FollowHub, Unsubscribe
from services.api.limits import TooManyStreams
from services.api.routes.deployment_lookup import (
    load_deployment,
    resolve_deployment,
)
from services.api.schemas import (
    LogLine,
    LogList,
)
from services.api.wire import json_response, query_bool, query_str
from shared.db import unavailable_on_disconnect
from shared.deployments import AmbiguousStage, find_stage
from shared.errors import Rejected
from shared.logs import get_logger

log = get_logger(__name__)

_FOLLOW_POLL_S: Final = 0.5
"""How often a deployment's feed reads its lines and whether it completed (sooner on a NATS
hint), and how often a follow checks its key."""

_HEARTBEAT_S: Final = 10.0
"""A quiet follow sends a comment this often, well within clients' 30 s read timeout."""
_LOGS: Final = """
SELECT id, deployment_id, stage_id, severity, message, recorded_at FROM stage_logs
WHERE deployment_id = $1 AND ($2::text IS NULL OR stage_id = $2) AND id > $3
ORDER BY id LIMIT $4
"""
_LOG_PAGE: Final = 10_000

_encoder: Final = msgspec.json.Encoder()


async def logs(request: web.Request) -> web.StreamResponse:
    """`GET /deployments/{id}/logs`: its stage log lines, or with `follow` a live stream of them."""
    api = deps(request)
    deployment_id = await resolve_deployment(api, request.match_info["deployment"])
    stage_id = query_str(request, "stage_id")
    follow = query_bool(request, "follow") or False
    view = await load_deployment(api, deployment_id)
    if view is None:
        raise TargetNotFound(f"no deployment {deployment_id!r}")
    if stage_id is not None:
        stage_id = _log_stage(view, stage_id)
    if not follow:
        return json_response(LogList(items=await _lines(api, deployment_id, stage_id, 0)))
    principal = request.get(PRINCIPAL)
    try:
        with api.log_streams.hold(principal.key_id if principal else ""):
            return await _follow(request, api, deployment_id, stage_id)
    except TooManyStreams:
        raise ErrorReply(
            429,
            "too_many_streams",
            f"this API key follows {api.log_streams.per_key} logs already; "
            "close one (or wait for its deployment to end) first",
            headers={"Retry-After": "5"},
        ) from None


def _log_stage(view: model.DeploymentView, ref: str) -> str:
    """The stage id whose lines are wanted: `ref` is an id, or a stage's unique name.

    A `ref` the plan does not know is kept as is: lines may carry ids of their
    own (written before or outside the plan's stages).
    """
    try:
        return find_stage(view, ref).id
    except AmbiguousStage as exc:
        raise ErrorReply(400, "invalid_request", str(exc), field="stage_id") from exc
    except Rejected:
        return ref


async def _lines(api: Deps, deployment_id: str, stage_id: str | None, after: int) -> list[LogLine]:
    async with unavailable_on_disconnect("read stage logs"):
        rows = await api.pool.fetch(_LOGS, deployment_id, stage_id, after, _LOG_PAGE)
    return [
        LogLine(
            id=r["id"],
            deployment_id=r["deployment_id"],
            stage_id=r["stage_id"],
            severity=r["severity"],
            message=r["message"],
            recorded_at=r["recorded_at"],
        )
        for r in rows
    ]


def _sse(event: str, data: bytes, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + data + b"\n\n"


def follow_hub(api: Deps, *, poll_s: float = _FOLLOW_POLL_S) -> FollowHub:
    """The hub the follows of this API process share (services/api/follow_hub.py), reading
    the `stage_logs` table and the deployment's stream, hinted by the live NATS subject."""

    async def read_lines(deployment_id: str, after: int) -> list[LogLine]:
        return await _lines(api, deployment_id, None, after)

    async def read_end(deployment_id: str) -> str | None:
        view = await load_deployment(api, deployment_id)
        if view is None:
            return ""
        return view.status if view.completed else None

    async def subscribe(deployment_id: str, poke: Callable[[], None]) -> Unsubscribe | None:
        if api.nc is None or not api.nc.is_connected:
            return None

        async def on_line(_msg: object) -> None:
            poke()  # the line itself is read from the table, in order, with the others

        try:
            subscription = await api.nc.subscribe(api.subjects.stage_log(deployment_id), cb=on_line)
        except NatsError as exc:
            log.warning("log_follow_without_nats", error=str(exc))
            return None

        async def unsubscribe() -> None:
            with contextlib.suppress(NatsError):
                await subscription.unsubscribe()

        return unsubscribe

    return FollowHub(read_lines=read_lines, read_end=read_end, subscribe=subscribe, poll_s=poll_s)


async def _follow(
    request: web.Request, api: Deps, deployment_id: str, stage_id: str | None
) -> web.StreamResponse:
    """Server-sent events: the stored lines, then live ones, then `end` when it completes.

    Every follow of a deployment in this process shares one feed (`FollowHub`): one
    NATS subscription and one poll of the table and of the deployment's stream every
    `_FOLLOW_POLL_S` (sooner when NATS hints at a new line), however many follow it.
    A follow sends the feed's lines after the last one it went through; one too slow
    for the feed's window reads what it missed from the table itself, alone. The key
    is checked again as often (through the auth cache): once it is revoked the stream
    sends `revoked` and ends, within the cache's TTL.
    """
    hub = request.app[FOLLOW_HUB]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    cursor = 0  # the last line id this follow went through (sent, or of another stage)
    loop = asyncio.get_running_loop()
    written = loop.time()
    async with hub.follow(deployment_id) as feed:
        try:
            while True:
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away: free its slot now, not at the next write
                if not await key_still_live(request):
                    # A revoked key stops reading now, not when the deployment ends.
                    revoked = {"error": "the API key was revoked"}
                    await response.write(_sse("revoked", _encoder.encode(revoked)))
                    break
                version = feed.version
                lines = feed.since(cursor)
                if lines is None:  # fallen behind the feed's window: catch up alone
                    lines = await _lines(api, deployment_id, None, cursor)
                for line in lines:
                    cursor = line.id
                    if stage_id is None or line.stage_id == stage_id:
                        await response.write(_sse("log", _encoder.encode(line), line.id))
                        written = loop.time()
                if feed.end is not None and feed.caught_up(cursor):
                    end = {"deployment_id": deployment_id, "status": feed.end}
                    await response.write(_sse("end", _encoder.encode(end)))
                    break
                if not lines:
                    await feed.changed(version, _FOLLOW_POLL_S)
                if loop.time() - written >= _HEARTBEAT_S:
                    # A comment line: clients ignore it, and it keeps their read
                    # timeouts (and proxies) from giving up on a quiet stage.
                    await response.write(b": keep-alive\n\n")
                    written = loop.time()
        except ConnectionResetError:
            pass  # the client went away
    return response
