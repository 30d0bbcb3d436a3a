"""`/deployments`: list, get with stages, logs (live as server-sent events), commands."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Final, Literal

import asyncpg
import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler
from nats.errors import Error as NatsError

from services.api import deployments as model
from services.api.auth import PRINCIPAL, Access, actor_of, is_admin, key_still_live
from services.api.decider import TargetNotFound
from services.api.deps import Deps, deps
from services.api.errors import ErrorReply
from services.api.follow_hub import FOLLOW_HUB, FollowHub, Unsubscribe
from services.api.limits import TooManyStreams
from services.api.reads import application_names, view_query
from services.api.routes import Answer, Route
from services.api.routes.applications import metadata_of
from services.api.schemas import (
    DEPLOYMENTS_PAGE,
    CancelDeploymentRequest,
    CommandAccepted,
    DeploymentList,
    DeploymentLogsQuery,
    DeploymentSummary,
    ListDeploymentsQuery,
    LogLine,
    LogList,
    RejudgeQuery,
)
from services.api.wire import json_response, query_bool, query_int, query_str, read_body
from shared.analysis.judges import JUDGE_NAMES
from shared.analysis.rejudging import RejudgeReport, rejudge_deployment
from shared.db import unavailable_on_disconnect
from shared.decider import Functions
from shared.deployments import AmbiguousStage, evolve_stream, find_stage
from shared.errors import Rejected, Unavailable
from shared.eventlog.execute import Folded, execute
from shared.events.base import Event
from shared.events.streams import deployment_stream
from shared.events.vocabulary import DeploymentStatus
from shared.logs import bind, get_logger
from shared.snapshots import read_state
from shared.stream_folds import DEPLOYMENT

__all__ = ["ROUTES", "cancel_deployment"]

log = get_logger(__name__)

_ATTEMPTS: Final = 5
_FOLLOW_POLL_S: Final = 0.5
"""How often a deployment's feed reads its lines and whether it completed (sooner on a NATS
hint), and how often a follow checks its key."""

_HEARTBEAT_S: Final = 10.0
"""A quiet follow sends a comment this often, well within clients' 30 s read timeout."""

_LIST: Final = """
SELECT d.deployment_id, d.application_id, coalesce(a.name, '') AS application_name, d.status,
       d.trigger, d.commit_hash, d.commit_message, d.commander, d.strategy, d.summary, d.reason,
       d.queued_behind, d.triggered_at, d.started_at, d.completed_at, d.updated_at,
       d.created_position, d.last_position
FROM deployments d
LEFT JOIN applications a ON a.application_id = d.application_id  -- none once it is deleted
WHERE ($1::text IS NULL OR d.application_id = $1)
  AND ($2::text[] IS NULL OR d.status = ANY($2::text[]))
  AND ($3::bigint IS NULL OR d.created_position < $3)
ORDER BY d.created_position DESC
LIMIT $4
"""
_APP_BY_NAME: Final = "SELECT application_id FROM applications WHERE name = $1"
# Ids are alphanumeric (checked before), so the prefix holds no LIKE wildcard.
_BY_PREFIX: Final = """
SELECT deployment_id FROM deployments WHERE deployment_id LIKE $1 || '%'
ORDER BY deployment_id LIMIT $2
"""
_MIN_PREFIX: Final = 4
"""Shorter prefixes are not looked up (as git): they name too many deployments to be meant."""
_SHOWN_CANDIDATES: Final = 5
_LOGS: Final = """
SELECT id, deployment_id, stage_id, severity, message, recorded_at FROM stage_logs
WHERE deployment_id = $1 AND ($2::text IS NULL OR stage_id = $2) AND id > $3
ORDER BY id LIMIT $4
"""
_STATUSES: Final = frozenset(DeploymentStatus)
_LOG_PAGE: Final = 10_000

_encoder: Final = msgspec.json.Encoder()


async def list_(request: web.Request) -> web.Response:
    api = deps(request)
    application = query_str(request, "application")
    statuses = _statuses(request)
    limit = (
        query_int(request, "limit", ge=1, le=DEPLOYMENTS_PAGE.maximum) or DEPLOYMENTS_PAGE.default
    )
    cursor = query_int(request, "cursor", ge=0)
    async with view_query("list deployments", "read model"):
        application_id = application
        if application is not None:
            # A name is resolved through the applications view; an id is used as is.
            found = await api.pool.fetchval(_APP_BY_NAME, application)
            application_id = found or application
        rows = await api.pool.fetch(_LIST, application_id, statuses, cursor, limit + 1)
    names = await application_names(
        api.pool,
        api.store,
        (r["application_id"] for r in rows[:limit] if not r["application_name"]),
    )
    items = [_summary(row, names) for row in rows[:limit]]
    next_cursor = str(rows[limit - 1]["created_position"]) if len(rows) > limit else None
    return json_response(DeploymentList(items=items, next_cursor=next_cursor))


async def get(request: web.Request) -> web.Response:
    api = deps(request)
    deployment_id = await _resolve(api, request.match_info["deployment"])
    view = await _load(api, deployment_id)
    if view is None:
        raise TargetNotFound(f"no deployment {deployment_id!r}")
    try:
        names = await application_names(api.pool, api.store, [view.application_id])
    except Unavailable:
        # The fold needs no read model; without the applications view (a projector not
        # running yet) the deployment is still answered, only without its name.
        names = {}
    name, deleted = names.get(view.application_id, ("", False))
    return json_response(model.resource(view, name, deleted=deleted))


async def logs(request: web.Request) -> web.StreamResponse:
    api = deps(request)
    deployment_id = await _resolve(api, request.match_info["deployment"])
    stage_id = query_str(request, "stage_id")
    follow = query_bool(request, "follow") or False
    view = await _load(api, deployment_id)
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


async def rejudge(request: web.Request) -> web.Response:
    """Its analyses' tick verdicts recomputed from the recorded samples (`slipway analysis
    rejudge`): a read, so a read-only key may; CPU-bound but short (ticks are few)."""
    api = deps(request)
    deployment_id = await _resolve(api, request.match_info["deployment"])
    judge = query_str(request, "judge")
    if judge is not None and judge not in JUDGE_NAMES:
        raise ErrorReply(
            400,
            "invalid_request",
            f"judge must be one of {', '.join(JUDGE_NAMES)}, not {judge!r}",
            field="judge",
        )
    report = await rejudge_deployment(api.store, deployment_id, judge)
    if report is None:
        raise TargetNotFound(f"no deployment {deployment_id!r}")
    return json_response(report)


async def cancel(request: web.Request) -> web.Response:
    body = await read_body(request, CancelDeploymentRequest, optional=True)
    return await cancel_deployment(request, rollback=body.rollback)


async def cancel_deployment(request: web.Request, *, rollback: bool) -> web.Response:
    """The cancel command itself, whoever read the request (the API's JSON, the console's
    form): one write path."""
    actor = actor_of(request) or ""
    return await _command(
        request,
        "cancel",
        None,
        lambda view, d: model.cancel(view, d, with_rollback=rollback, commander=actor),
    )


async def approve(request: web.Request) -> web.Response:
    stage_id = request.match_info["stage"]
    actor = actor_of(request) or ""
    return await _command(
        request,
        "approve",
        stage_id,
        lambda view, d: model.approve(view, d, stage_id, approver=actor),
    )


async def skip(request: web.Request) -> web.Response:
    stage_id = request.match_info["stage"]
    actor = actor_of(request) or ""
    admin = is_admin(request)
    return await _command(
        request,
        "skip",
        stage_id,
        lambda view, d: model.skip(view, d, stage_id, commander=actor, admin=admin),
    )


# --- helpers --------------------------------------------------------------------------------


def _statuses(request: web.Request) -> list[str] | None:
    raw = request.query.getall("status", [])
    if not raw:
        return None
    statuses = [s.strip().upper() for item in raw for s in item.split(",") if s.strip()]
    unknown = sorted(set(statuses) - _STATUSES)
    if unknown or not statuses:
        raise ErrorReply(
            400,
            "invalid_request",
            f"status must be among {', '.join(sorted(_STATUSES))}, not {', '.join(unknown)}",
            field="status",
        )
    return statuses


def _summary(row: asyncpg.Record, names: dict[str, tuple[str, bool]]) -> DeploymentSummary:
    name, deleted = (row["application_name"], False)
    if not name:
        name, deleted = names.get(row["application_id"], ("", False))
    return DeploymentSummary(
        deployment_id=row["deployment_id"],
        application_id=row["application_id"],
        application_name=name,
        application_deleted=deleted,
        status=row["status"],
        trigger=row["trigger"],
        commit_hash=row["commit_hash"],
        commit_message=row["commit_message"],
        commander=row["commander"],
        strategy=row["strategy"],
        summary=row["summary"],
        reason=row["reason"],
        queued_behind=row["queued_behind"],
        triggered_at=row["triggered_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        updated_at=row["updated_at"],
        position=row["last_position"],
    )


def _stream(deployment_id: str) -> str:
    # Ids are lowercase ULIDs or hex; anything else cannot name a stream (and is no deployment).
    if (
        not deployment_id
        or len(deployment_id) > 64
        or not (deployment_id.isascii() and deployment_id.isalnum())
    ):
        raise TargetNotFound(f"no deployment {deployment_id!r}")
    return deployment_stream(deployment_id.lower())


async def _resolve(api: Deps, ref: str) -> str:
    """The id of the deployment `ref` names: its id, or (as git) a unique prefix of one.

    Its own stream is looked at first, so a deployment just triggered, not yet
    in the read model, is found by its whole id; prefixes go through the
    `deployments` read model. An ambiguous prefix is a 400 naming some of the
    candidates; no match is left to the caller's 404.
    """
    stream = _stream(ref)
    if len(ref) < _MIN_PREFIX or await api.store.read_stream(stream, limit=1):
        return ref.lower()
    try:
        async with view_query("find a deployment by prefix", "deployments read model"):
            rows = await api.pool.fetch(_BY_PREFIX, ref.lower(), _SHOWN_CANDIDATES + 1)
    except Unavailable:
        # No read model yet: whole ids still work (the stream was read above), and an
        # id that is not there yet stays a 404, which `wait-status` waits through.
        return ref.lower()
    if len(rows) == 1:
        return str(rows[0]["deployment_id"])
    if len(rows) > 1:
        shown = ", ".join(r["deployment_id"] for r in rows[:_SHOWN_CANDIDATES])
        more = ", …" if len(rows) > _SHOWN_CANDIDATES else ""
        raise ErrorReply(
            400,
            "ambiguous_id",
            f"deployment id prefix {ref!r} is ambiguous: {shown}{more}",
            field="deployment",
        )
    return ref.lower()


async def _load(api: Deps, deployment_id: str) -> model.DeploymentView | None:
    """The deployment now: its newest snapshot and the events after it (`shared.snapshots`)."""
    return (await read_state(api.store, _stream(deployment_id), DEPLOYMENT)).state


async def _command(
    request: web.Request,
    command: Literal["cancel", "approve", "skip"],
    stage_id: str | None,
    decide: Callable[[model.DeploymentView | None, str], Sequence[Event]],
) -> web.Response:
    """Fold the deployment, decide, append after the version read (`shared.eventlog.execute`)."""
    api = deps(request)
    deployment_id = await _resolve(api, request.match_info["deployment"])
    stream = _stream(deployment_id)
    metadata = metadata_of(request)

    def accepted(view: model.DeploymentView, *, appended: bool, position: int) -> CommandAccepted:
        return CommandAccepted(
            deployment_id=deployment_id,
            command=command,
            stage_id=_stage_id(view, stage_id),
            appended=appended,
            position=position,
        )

    # The command is the deployment id: the request's own arguments are in `decide` already.
    decider = Functions[model.DeploymentView | None, str](None, evolve_stream, decide)
    with bind(deployment_id=deployment_id):
        # Folded once, in time linear in its events (`fold_history`), from its snapshot:
        # `execute` folding the whole stream with `evolve`, which rebuilds the stages for
        # each stage event, would cost stages × events.
        read = await read_state(api.store, stream, DEPLOYMENT)
        start = Folded(read.state, read.version, read.state.position if read.state else 0)
        # The executor may move on between our read and our append: decide again on what it
        # wrote (only those events are folded again, one at a time).
        done = await execute(
            api.store,
            stream,
            decider,
            deployment_id,
            metadata,
            max_attempts=_ATTEMPTS,
            start=start,
        )
        view = done.before.state
        assert view is not None, "decide refuses a deployment that does not exist"
        if not done.events:
            return json_response(accepted(view, appended=False, position=done.before.position))
        log.info("deployment_command_recorded", command=command, stage_id=stage_id)
        return json_response(
            accepted(view, appended=True, position=done.global_positions[-1]), status=202
        )


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


def _stage_id(view: model.DeploymentView, ref: str | None) -> str | None:
    """The id of the stage a command named by id or name (the decider found it already)."""
    if ref is None:
        return None
    try:
        return find_stage(view, ref).id
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
        view = await _load(api, deployment_id)
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


def _stage_command(path: str, handler: Handler, name: str, summary: str, text: str) -> Route:
    """Approve / skip a stage: recorded for the executor to act on."""
    return Route(
        "POST",
        path,
        handler,
        name,
        Access.WRITE,
        summary=summary,
        tag="deployments",
        answers=_recorded("Asked already: nothing new recorded."),
        errors=(400, 404, 409, 503),
        description=text,
    )


def _recorded(already: str) -> tuple[Answer, ...]:
    """A request the executor acts on: 202 when recorded, 200 (`already`) when asked before."""
    return (
        Answer(202, "Recorded; the executor acts on it.", CommandAccepted),
        Answer(200, already, CommandAccepted),
    )


ROUTES: Final = (
    Route(
        "GET",
        "/deployments",
        list_,
        "listDeployments",
        Access.READ,
        summary="List deployments, newest first",
        tag="deployments",
        answers=(Answer(200, "A page of deployments.", DeploymentList),),
        errors=(400, 503),
        description="From the `deployments` read model (eventually consistent).",
        query=ListDeploymentsQuery,
    ),
    Route(
        "GET",
        "/deployments/{deployment}",
        get,
        "getDeployment",
        Access.READ,
        summary="A deployment with its stages",
        tag="deployments",
        answers=(Answer(200, "The deployment.", model.DeploymentResource),),
        errors=(400, 404, 503),
        description="Folded from the deployment's own stream: always current. Its "
        "WAIT_APPROVAL stages say who may approve (`allowed_approvers`, empty: anyone) "
        "and how many approvals they still need (`approvals_needed`).",
    ),
    Route(
        "GET",
        "/deployments/{deployment}/logs",
        logs,
        "getDeploymentLogs",
        Access.READ,
        summary="What its stages wrote",
        tag="deployments",
        answers=(
            Answer(200, "The lines (JSON), or with `follow` an event stream.", LogList, True),
        ),
        errors=(400, 404, 429, 503),
        description="With `follow=true`, server-sent events instead: `log` events "
        "(the stored lines, then live ones; `id` is the line's id), then one `end` "
        "event `{deployment_id, status}` once the deployment has completed; a "
        "`revoked` event ends it early once the key is revoked. A key may hold a "
        "few follows at once (`SLIPWAY_API_MAX_LOG_STREAMS_PER_KEY`): 429 beyond.",
        query=DeploymentLogsQuery,
    ),
    Route(
        "GET",
        "/deployments/{deployment}/rejudge",
        rejudge,
        "rejudgeDeployment",
        Access.READ,
        summary="Its analyses' verdicts recomputed from the recorded samples",
        tag="deployments",
        answers=(Answer(200, "The report.", RejudgeReport),),
        errors=(400, 404, 503),
        description="Every tick verdict of the deployment's ANALYSIS stages recomputed "
        "from the samples in the log, beside the recorded one (`slipway analysis "
        "rejudge`). `identical` is false when one differs (expected with another "
        "`judge`); `analyses` is empty when it has no ANALYSIS stage or was never planned.",
        query=RejudgeQuery,
    ),
    Route(
        "POST",
        "/deployments/{deployment}/cancel",
        cancel,
        "cancelDeployment",
        Access.WRITE,
        summary="Cancel a deployment",
        tag="deployments",
        answers=_recorded("Asked already: the first request stands."),
        errors=(400, 404, 409, 503),
        description="Records `DeploymentCancelRequested`; the executor cancels the "
        "running stage and, with `rollback` (the default), rolls back. 409 when it has "
        "completed or is rolling back.",
        body=CancelDeploymentRequest,
        body_required=False,
    ),
    _stage_command(
        "/deployments/{deployment}/stages/{stage}/approve",
        approve,
        "approveStage",
        "Approve a WAIT_APPROVAL stage",
        "Approves as the API key's name, which must be among the stage's `approvers` "
        "when it lists any. 409 when the stage is not waiting for approval.",
    ),
    _stage_command(
        "/deployments/{deployment}/stages/{stage}/skip",
        skip,
        "skipStage",
        "Skip a WAIT, WAIT_APPROVAL or ANALYSIS stage",
        "Records `StageSkipRequested`; the executor ends the stage as SKIPPED.",
    ),
)
