"""`/chains`: deployment chains, folded from their streams; cancelling one and what it runs.

A chain is `shared.chains`' fold of `chain-<id>`: exact and current, like a
deployment's own stream. The list takes the newest chain streams from the
`stream_stats` view (category `chain`) and folds each.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from aiohttp import web

from services.api.auth import Access, actor_of
from services.api.decider import StateConflict, TargetNotFound
from services.api.deps import Deps, deps
from services.api.reads import view_query
from services.api.routes import Answer, Route
from services.api.routes.applications import metadata_of
from services.api.schemas import (
    ChainBlockResource,
    ChainCancelled,
    ChainDeploymentResource,
    ChainList,
    ChainResource,
    ListChainsQuery,
)
from services.api.wire import json_response, query_int
from shared.chains import CHAIN, CancelChain, ChainState
from shared.decider import Functions, fold
from shared.deployments import Deployment, evolve_stream, request_cancel
from shared.errors import Rejected
from shared.eventlog.execute import execute
from shared.events.base import Event
from shared.events.streams import chain_stream, deployment_stream
from shared.events.vocabulary import DeploymentStatus
from shared.logs import bind, get_logger

__all__ = ["ROUTES"]

log = get_logger(__name__)

_CHAIN_ID: Final = re.compile(r"[0-9a-f]{32}")
_NEWEST: Final = """
SELECT stream_id FROM stream_stats WHERE category = 'chain'
ORDER BY first_recorded_at DESC, stream_id LIMIT $1
"""


async def list_(request: web.Request) -> web.Response:
    api = deps(request)
    limit = query_int(request, "limit", ge=1, le=100) or 20
    async with view_query("list chains", "stream_stats projection"):
        rows = await api.pool.fetch(_NEWEST, limit)
    items = []
    for row in rows:
        chain = await _load(api, str(row["stream_id"]).removeprefix("chain-"))
        if chain is not None:
            items.append(chain)
    return json_response(ChainList(items=items))


async def get(request: web.Request) -> web.Response:
    chain = await _load(deps(request), _chain_id(request))
    if chain is None:
        raise TargetNotFound(f"no chain {request.match_info['chain']!r}")
    return json_response(chain)


async def cancel(request: web.Request) -> web.Response:
    """End the chain CANCELLED, then ask each of its running deployments to cancel (rolling
    back), as `POST /deployments/{id}/cancel` would."""
    api = deps(request)
    chain_id = _chain_id(request)
    commander = actor_of(request) or ""
    metadata = metadata_of(request)
    with bind(chain_id=chain_id):
        history = await api.store.read_stream(chain_stream(chain_id))
        if not history:
            raise TargetNotFound(f"no chain {chain_id!r}")
        try:
            done = await execute(
                api.store, chain_stream(chain_id), CHAIN, CancelChain(commander), metadata
            )
        except Rejected as exc:
            raise StateConflict("refused", str(exc)) from exc
        cancelled = []
        for node in done.after.state.running_deployments():
            stopped = await execute(
                api.store,
                deployment_stream(node.deployment_id),
                _cancel_if_running(commander),
                node.deployment_id,
                metadata,
            )
            if stopped.events:
                cancelled.append(node.deployment_id)
        log.info("chain_cancelled", appended=bool(done.events), deployments=cancelled)
    answer = ChainCancelled(
        chain_id=chain_id, appended=bool(done.events), cancelled_deployments=cancelled
    )
    return json_response(answer, status=202 if done.events else 200)


def _cancel_if_running(commander: str) -> Functions[Deployment | None, str]:
    """A deployment's cancel that asks nothing of one not opened, ended or rolling back."""

    def decide(view: Deployment | None, _deployment_id: str) -> Sequence[Event]:
        if view is None or view.completed or view.status is DeploymentStatus.ROLLING_BACK:
            return []
        return request_cancel(view, with_rollback=True, commander=commander)

    return Functions[Deployment | None, str](None, evolve_stream, decide)


def _chain_id(request: web.Request) -> str:
    """The path's chain id; an id no chain can have (`shared.events.ids.chain_id_of`) is a 404."""
    chain_id = request.match_info["chain"]
    if not _CHAIN_ID.fullmatch(chain_id):
        raise TargetNotFound(f"no chain {chain_id[:64]!r}")
    return chain_id


async def _load(api: Deps, chain_id: str) -> ChainResource | None:
    history = await api.store.read_stream(chain_stream(chain_id))
    if not history:
        return None
    return resource(fold(CHAIN, [r.event for r in history]), history[0].recorded_at)


def resource(state: ChainState, started_at: object = None) -> ChainResource:
    """The chain as the API answers it: each block with its deployments' statuses."""
    blocks = []
    for block in state.blocks:
        status = state.block_status(block.index)
        deployments = [
            ChainDeploymentResource(
                application_id=node.application_id,
                deployment_id=node.deployment_id,
                status=state.outcomes.get(
                    node.deployment_id, "RUNNING" if block.index < state.started else status
                ),
            )
            for node in block.nodes
        ]
        blocks.append(ChainBlockResource(index=block.index, status=status, deployments=deployments))
    return ChainResource(
        chain_id=state.chain_id,
        status=state.status,
        reason=state.reason,
        origin_application_id=state.origin_application_id,
        origin_deployment_id=state.origin_deployment_id,
        cancelled_by=state.cancelled_by,
        blocks=blocks,
        started_at=started_at,  # type: ignore[arg-type]
    )


ROUTES: Final = (
    Route(
        "GET",
        "/chains",
        list_,
        "listChains",
        Access.READ,
        summary="List deployment chains, newest first",
        tag="chains",
        answers=(Answer(200, "The newest chains, each folded from its stream.", ChainList),),
        errors=(400, 503),
        query=ListChainsQuery,
    ),
    Route(
        "GET",
        "/chains/{chain}",
        get,
        "getChain",
        Access.READ,
        summary="A deployment chain: its blocks, each with its deployments",
        tag="chains",
        answers=(Answer(200, "The chain.", ChainResource),),
        errors=(404, 503),
    ),
    Route(
        "POST",
        "/chains/{chain}/cancel",
        cancel,
        "cancelChain",
        Access.WRITE,
        summary="Cancel a running chain and the deployments it runs",
        tag="chains",
        answers=(
            Answer(202, "Cancelled; its running deployments were asked to cancel.", ChainCancelled),
            Answer(200, "Cancelled already: nothing new recorded.", ChainCancelled),
        ),
        errors=(404, 409, 503),
        description=(
            "Later blocks never start; each running deployment is cancelled with rollback. A "
            "chain that ended SUCCESS or FAILURE is refused (409)."
        ),
    ),
)
