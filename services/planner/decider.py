"""The planner's pure core: who goes next, and the events a plan (or its failure) becomes.

No I/O, clock, ids or logging here: the shell loads the state, passes the
time in, and appends what these functions return.

One active deployment per application; the others wait, first come first
served (DESIGN §5). A deployment is *waiting* until it is planned (also while
its planning is retried after a git outage, so a later trigger cannot
overtake it), *active* from its plan to its completion, then *done*.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.applications import Application
from shared.events.catalog import (
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentQueued,
    DeploymentTriggered,
)
from shared.planning import Plan, TriggerInfo
from shared.redaction import REASON_CHARS, clip

__all__ = [
    "AppQueue",
    "Ignore",
    "PlanNow",
    "QueueBehind",
    "gave_up",
    "next_to_plan",
    "on_triggered",
    "plan_failed",
    "planned",
    "queued",
    "trigger_info",
]


@dataclass(frozen=True)
class AppQueue:
    """One application's deployments as the planner tracks them."""

    application_id: str
    active: str | None = None
    """The planned deployment that has not completed yet."""
    waiting: tuple[str, ...] = ()
    """Deployments not planned yet, oldest first."""


@dataclass(frozen=True)
class PlanNow:
    deployment_id: str


@dataclass(frozen=True)
class QueueBehind:
    deployment_id: str
    behind: str


@dataclass(frozen=True)
class Ignore:
    reason: str


def on_triggered(queue: AppQueue, deployment_id: str) -> PlanNow | QueueBehind | Ignore:
    """What to do with a trigger, once it has taken its place in `queue.waiting`."""
    if deployment_id not in queue.waiting:
        return Ignore("already planned, failed or completed")
    position = queue.waiting.index(deployment_id)
    if position == 0 and queue.active is None:
        return PlanNow(deployment_id)
    ahead = queue.waiting[position - 1] if position > 0 else queue.active
    assert ahead is not None
    return QueueBehind(deployment_id, ahead)


def next_to_plan(queue: AppQueue) -> str | None:
    """The deployment to plan now: the oldest waiting one, if none is active."""
    if queue.active is None and queue.waiting:
        return queue.waiting[0]
    return None


def gave_up(planning_since: datetime | None, now: datetime, give_up_after_s: float) -> bool:
    """Whether a plan retried since `planning_since` has been retried long enough."""
    return planning_since is not None and (now - planning_since).total_seconds() >= give_up_after_s


# Events ------------------------------------------------------------------------------


def trigger_info(trigger: DeploymentTriggered) -> TriggerInfo:
    return TriggerInfo(
        strategy=trigger.strategy,
        commit_message=trigger.commit_message,
        commander=trigger.commander,
        kind=trigger.trigger,
    )


def queued(trigger: DeploymentTriggered, behind: str) -> DeploymentQueued:
    return DeploymentQueued(
        deployment_id=trigger.deployment_id,
        application_id=trigger.application_id,
        behind_deployment_id=behind,
    )


def planned(
    trigger: DeploymentTriggered,
    app: Application,
    plan: Plan,
    *,
    repository_id: str,
    running_commit: str,
) -> DeploymentPlanned:
    return DeploymentPlanned(
        deployment_id=trigger.deployment_id,
        application_id=trigger.application_id,
        commit_hash=trigger.commit_hash,
        strategy=plan.decision.strategy,
        summary=plan.decision.summary,
        reason=plan.decision.reason,
        stages=plan.stages,
        running_commit_hash=running_commit,
        config_filename=app.config_filename,
        path=app.path,
        repository_id=repository_id,
    )


def plan_failed(trigger: DeploymentTriggered, reason: str) -> DeploymentPlanFailed:
    return DeploymentPlanFailed(
        deployment_id=trigger.deployment_id,
        application_id=trigger.application_id,
        reason=clip(reason, REASON_CHARS),
    )
