"""`/deployments`: the route table (list, get with stages, logs, rejudge, commands) and the
commands themselves (cancel, approve, skip: fold, decide, append).

The reads are in `deployment_reads.py`, the logs (and their live follow) in
`deployment_logs.py`, finding and loading the deployment in `deployment_lookup.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from services.api import deployments as model
from services.api.auth import Access, actor_of, is_admin
from services.api.deps import deps
from services.api.routes import Answer, Route
from services.api.routes.applications import metadata_of
from services.api.routes.deployment_logs import logs
from services.api.routes.deployment_lookup import (
    deployment_stream_of,
    resolve_deployment,
)
from services.api.routes.deployment_reads import get, list_, rejudge
from services.api.schemas import (
    CancelDeploymentRequest,
    CommandAccepted,
    DeploymentList,
    DeploymentLogsQuery,
    ListDeploymentsQuery,
    LogList,
    RejudgeQuery,
)
from services.api.wire import json_response, read_body
from shared.analysis.rejudging import RejudgeReport
from shared.decider import Functions
from shared.deployments import evolve_stream, find_stage
from shared.errors import Rejected
from shared.eventlog.execute import Folded, execute
from shared.events.base import Event
from shared.logs import bind, get_logger
from shared.snapshots import read_state
from shared.stream_folds import DEPLOYMENT

__all__ = ["ROUTES", "cancel_deployment"]

log = get_logger(__name__)

_ATTEMPTS: Final = 5


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


async def _command(
    request: web.Request,
    command: Literal["cancel", "approve", "skip"],
    stage_id: str | None,
    decide: Callable[[model.DeploymentView | None, str], Sequence[Event]],
) -> web.Response:
    """Fold the deployment, decide, append after the version read (`shared.eventlog.execute`)."""
    api = deps(request)
    deployment_id = await resolve_deployment(api, request.match_info["deployment"])
    stream = deployment_stream_of(deployment_id)
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


def _stage_id(view: model.DeploymentView, ref: str | None) -> str | None:
    """The id of the stage a command named by id or name (the decider found it already)."""
    if ref is None:
        return None
    try:
        return find_stage(view, ref).id
    except Rejected:
        return ref


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
