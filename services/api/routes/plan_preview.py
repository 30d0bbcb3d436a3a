"""`/plan-preview`: what merging a branch would deploy, planned by the API from its clone.

The same preview as `slipway plan-preview --repo` (`shared.planning.preview`
computes both), but for a repository of the control config, named by its id:
the API clones it into its own cache, so CI needs no clone and no git
credentials of its own (`slipway plan-preview --repository-id` calls this).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from services.api.auth import Access
from services.api.decider import TargetNotFound
from services.api.deps import deps
from services.api.errors import ErrorReply
from services.api.registration import git_failure
from services.api.routes import Answer, Route
from services.api.schemas import PlanPreviewRequest, PlanPreviewResult
from services.api.wire import json_response, read_body
from shared.errors import ConfigError
from shared.git import GitError
from shared.planning.preview import compute_preview

__all__ = ["ROUTES"]


async def preview(request: web.Request) -> web.Response:
    body = await read_body(request, PlanPreviewRequest)
    api = deps(request)
    if api.plan_preview is None:
        raise ErrorReply(
            503,
            "unavailable",
            "plan preview needs the control config: start the API with SLIPWAY_CONTROL_CONFIG",
        )
    repository = api.plan_preview.repositories.get(body.repository_id)
    if repository is None:
        known = ", ".join(sorted(api.plan_preview.repositories)) or "none"
        raise TargetNotFound(
            f"no repository {body.repository_id!r} in the control config (known: {known})"
        )
    remote, default_branch = repository
    if (body.head_branch is None) == (body.head_commit is None):
        raise ErrorReply(
            400,
            "invalid_request",
            "give exactly one of head_branch and head_commit",
            field="head_branch",
        )
    try:
        result = await compute_preview(
            api.plan_preview.cache,
            remote,
            base_branch=body.base_branch or default_branch,
            head_branch=body.head_branch,
            head_commit=body.head_commit,
        )
    except ConfigError as exc:  # a branch or commit that is not there
        raise ErrorReply(400, "invalid_request", str(exc)) from exc
    except GitError as exc:
        raise git_failure(remote, exc) from exc
    return json_response(PlanPreviewResult(**result.to_dict()))


ROUTES: Final = (
    Route(
        "POST",
        "/plan-preview",
        preview,
        "planPreview",
        Access.WRITE,
        summary="What merging a branch would deploy",
        tag="deployments",
        answers=(Answer(200, "The preview.", PlanPreviewResult),),
        errors=(400, 404, 503),
        description="Fetches a control-config repository, finds the applications "
        "the head changes (the gitwatcher's rule) and plans each against the base "
        "branch: strategy, summary, stages and resource diff. Like `slipway "
        "plan-preview`, without a clone of your own. 503 when the API runs without "
        "a control config, or cannot fetch.",
        body=PlanPreviewRequest,
    ),
)
