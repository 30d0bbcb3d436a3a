"""The reads of `/deployments`: the list (read model), one deployment (its own stream)
and its analyses rejudged. Their routes are in `routes/deployments.py`.
"""

from __future__ import annotations

from typing import Final

import asyncpg
from aiohttp import web

from services.api import deployments as model
from services.api.decider import TargetNotFound
from services.api.deps import deps
from services.api.errors import ErrorReply
from services.api.reads import application_names, view_query
from services.api.routes.deployment_lookup import (
    load_deployment,
    resolve_deployment,
)
from services.api.schemas import (
    DEPLOYMENTS_PAGE,
    DeploymentList,
    DeploymentSummary,
)
from services.api.wire import json_response, query_int, query_str
from shared.analysis.judges import JUDGE_NAMES
from shared.analysis.rejudging import rejudge_deployment
from shared.errors import Unavailable
from shared.events.vocabulary import DeploymentStatus

_LIST: Final = """
SELECT d.deployment_id, d.application_id, coalesce(a.name, '') AS application_name, d.status,
       d.trigger, d.commit_hash, d.commit_message, d.commander, d.strategy, d.summary, d.reason,
       d.deployed_version, d.queued_behind, d.triggered_at, d.started_at, d.completed_at,
       d.updated_at, d.created_position, d.last_position
FROM deployments d
LEFT JOIN applications a ON a.application_id = d.application_id  -- none once it is deleted
WHERE ($1::text IS NULL OR d.application_id = $1)
  AND ($2::text[] IS NULL OR d.status = ANY($2::text[]))
  AND ($3::bigint IS NULL OR d.created_position < $3)
ORDER BY d.created_position DESC
LIMIT $4
"""
_APP_BY_NAME: Final = "SELECT application_id FROM applications WHERE name = $1"
_STATUSES: Final = frozenset(DeploymentStatus)


async def list_(request: web.Request) -> web.Response:
    """`GET /deployments`: a keyset page, filtered by application and status."""
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
    """`GET /deployments/{id}`: the deployment with its stages, as folded from its stream."""
    api = deps(request)
    deployment_id = await resolve_deployment(api, request.match_info["deployment"])
    view = await load_deployment(api, deployment_id)
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


async def rejudge(request: web.Request) -> web.Response:
    """Its analyses' tick verdicts recomputed from the recorded samples (`slipway analysis
    rejudge`): a read, so a read-only key may; CPU-bound but short (ticks are few)."""
    api = deps(request)
    deployment_id = await resolve_deployment(api, request.match_info["deployment"])
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
        deployed_version=row["deployed_version"],
        queued_behind=row["queued_behind"],
        triggered_at=row["triggered_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        updated_at=row["updated_at"],
        position=row["last_position"],
    )
