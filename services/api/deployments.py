"""Deployments in the API: their view folded from events, and people's requests as HTTP answers.

A deployment's stream (`deployment-<id>`) is written by the gitwatcher
(triggered), the planner (planned) and the executor (stages, completion).
The API appends three requests to it that the executor consumes:
`DeploymentCancelRequested`, `StageApproved` and `StageSkipRequested`.

The fold and the rules for those requests are `shared.deployments`, the ones
the executor's decider applies, so a request the executor would ignore is
refused here at once. What is the API's own is the answer: a deployment that
does not exist is a 404 (`TargetNotFound`), a refused request a 409
(`StateConflict("refused")`) naming the application.

Nothing here awaits or reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable

from services.api.decider import StateConflict, TargetNotFound
from shared import deployments
from shared.deployments import Deployment
from shared.errors import Rejected
from shared.events.base import Event

__all__ = [
    "DeploymentResource",
    "DeploymentView",
    "approve",
    "cancel",
    "skip",
]

DeploymentView = Deployment
"""The deployment as `shared.deployments` folds it."""


class DeploymentResource(Deployment, frozen=True, kw_only=True):
    """The answer of `GET /deployments/{id}`: the fold, and the application by name."""

    application_name: str = ""
    """"" when the application is unknown (never registered)."""
    application_deleted: bool = False


def resource(view: Deployment, application_name: str, *, deleted: bool) -> DeploymentResource:
    fields = {f: getattr(view, f) for f in view.__struct_fields__}
    return DeploymentResource(
        **fields, application_name=application_name, application_deleted=deleted
    )


def cancel(
    view: Deployment | None, deployment_id: str, *, with_rollback: bool, commander: str
) -> list[Event]:
    """Ask the executor to cancel; [] when a cancel was asked already (the first stands)."""
    return _answer(
        view,
        deployment_id,
        lambda d: deployments.request_cancel(d, with_rollback=with_rollback, commander=commander),
    )


def approve(
    view: Deployment | None, deployment_id: str, stage_id: str, *, approver: str
) -> list[Event]:
    """Approve a running WAIT_APPROVAL stage as `approver`, the API key's name."""
    return _answer(
        view, deployment_id, lambda d: deployments.approve(d, stage_id, approver=approver)
    )


def skip(
    view: Deployment | None, deployment_id: str, stage_id: str, *, commander: str, admin: bool
) -> list[Event]:
    """Ask the executor to skip a WAIT, WAIT_APPROVAL or ANALYSIS stage; [] if asked already.

    A WAIT_APPROVAL stage only for a listed approver or an `admin` key.
    """
    return _answer(
        view,
        deployment_id,
        lambda d: deployments.request_skip(d, stage_id, commander=commander, admin=admin),
    )


def _answer(
    view: Deployment | None, deployment_id: str, request: Callable[[Deployment], list[Event]]
) -> list[Event]:
    """The request's events, with its refusals as the API answers them (404, 409)."""
    if view is None:
        raise TargetNotFound(f"no deployment {deployment_id!r}")
    try:
        return request(view)
    except Rejected as exc:
        raise StateConflict(
            "refused", str(exc), application_id=view.application_id or None
        ) from exc
