"""The planner's pure core: who goes next, and the events a plan (or its failure) becomes.

No I/O, clock, ids or logging here: the shell loads the state, passes the
time in, and appends what these functions return.

The queue's transitions are the events', folded by `evolve_queue`: a trigger
joins the waiting line, a plan makes its deployment the active one, a failed
plan or a completion ends it (`row_state` says where each event leaves its
deployment). The `planner_deployments` table is a cache of that fold, kept in
the transaction of the planner's appends so that "the oldest waiting
deployment" is answered under a lock; the shell writes it from these
functions and never decides a transition itself. `PLANNING` is the decider of
the deployment's own stream: a plan, a failure or a place in the queue is
recorded while the deployment is still pending, once.

One active deployment per application; the others wait, first come first
served (DESIGN §5). A deployment is *waiting* until it is planned (also while
its planning is retried after a git outage, so a later trigger cannot
overtake it), *active* from its plan to its completion, then *done*.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from shared.applications import Application
from shared.decider import Functions
from shared.deployments import Deployment, DeploymentStatus, evolve_stream
from shared.events.base import Event
from shared.events.catalog import (
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentQueued,
    DeploymentTriggered,
)
from shared.planning import Plan, TriggerInfo
from shared.redaction import CONFIG_CHARS, DIFF_CHARS, REASON_CHARS, clip

__all__ = [
    "PLANNING",
    "AppQueue",
    "Ignore",
    "PlanNow",
    "PlannerDecision",
    "QueueBehind",
    "RowState",
    "evolve_queue",
    "gave_up",
    "next_to_plan",
    "on_triggered",
    "plan_failed",
    "planned",
    "queued",
    "row_state",
    "running_commit_of",
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
    """The decision: plan this deployment now."""

    deployment_id: str


@dataclass(frozen=True)
class QueueBehind:
    """The decision: queue this deployment behind the application's active one."""

    deployment_id: str
    behind: str


@dataclass(frozen=True)
class Ignore:
    """The decision: nothing to do, and why."""

    reason: str


class RowState(enum.StrEnum):
    """Where a deployment stands in its application's queue (`planner_deployments.state`)."""

    WAITING = "waiting"
    """Not planned yet: queued, or its planning is being retried."""
    ACTIVE = "active"
    """Planned, not completed."""
    DONE = "done"
    """Completed, or its plan failed."""


def row_state(event: Event) -> tuple[str, RowState] | None:
    """(deployment, where `event` leaves it in the queue), for the events that move one."""
    match event:
        case DeploymentTriggered(deployment_id=deployment_id):
            return deployment_id, RowState.WAITING
        case DeploymentPlanned(deployment_id=deployment_id):
            return deployment_id, RowState.ACTIVE
        case (
            DeploymentPlanFailed(deployment_id=deployment_id)
            | DeploymentCompleted(deployment_id=deployment_id)
        ):
            return deployment_id, RowState.DONE
    return None


def evolve_queue(queue: AppQueue, event: Event) -> AppQueue:
    """The application's queue after `event` (events of other applications leave it alone)."""
    if getattr(event, "application_id", None) != queue.application_id:
        return queue
    moved = row_state(event)
    if moved is None:
        return queue
    deployment_id, state = moved
    waiting = tuple(d for d in queue.waiting if d != deployment_id)
    active = None if queue.active == deployment_id else queue.active
    match state:
        case RowState.WAITING:
            # A trigger delivered again keeps the place its first delivery took.
            if deployment_id in queue.waiting or deployment_id == queue.active:
                return queue
            return replace(queue, waiting=(*waiting, deployment_id))
        case RowState.ACTIVE:
            return replace(queue, active=deployment_id, waiting=waiting)
        case RowState.DONE:
            return replace(queue, active=active, waiting=waiting)


def running_commit_of(completed: DeploymentCompleted, triggered_commit: str) -> str:
    """The application's running commit after `completed` ("" when it does not change it):
    a success's commit (or, from executors that did not name it, the trigger's)."""
    if completed.status != DeploymentStatus.SUCCESS:
        return ""
    return completed.commit_hash or triggered_commit


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
    """What of the trigger the planner passes on to the plan."""
    return TriggerInfo(
        strategy=trigger.strategy,
        commit_message=trigger.commit_message,
        commander=trigger.commander,
        kind=trigger.trigger,
    )


def queued(trigger: DeploymentTriggered, behind: str) -> DeploymentQueued:
    """The event that records a deployment waiting behind another."""
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
    diff: str = "",
    config_text: str = "",
) -> DeploymentPlanned:
    """The plan as recorded; `diff` is the rendered manifest diff (`ManifestDiff.render`,
    which masks Secret values and redacts the rest), clipped to `DIFF_CHARS`; `config_text`
    the application's config file, already redacted, clipped to `CONFIG_CHARS`."""
    return DeploymentPlanned(
        deployment_id=trigger.deployment_id,
        application_id=trigger.application_id,
        commit_hash=trigger.commit_hash,
        strategy=plan.decision.strategy,
        summary=plan.decision.summary,
        reason=plan.decision.reason,
        stages=plan.stages,
        skipped=dict(plan.skipped),
        version=plan.version,
        running_commit_hash=running_commit,
        config_filename=app.config_filename,
        path=app.path,
        repository_id=repository_id,
        diff=clip(diff, DIFF_CHARS),
        config_text=clip(config_text, CONFIG_CHARS),
    )


def plan_failed(trigger: DeploymentTriggered, reason: str) -> DeploymentPlanFailed:
    """The event that records why a deployment could not be planned."""
    return DeploymentPlanFailed(
        deployment_id=trigger.deployment_id,
        application_id=trigger.application_id,
        reason=clip(reason, REASON_CHARS),
    )


# The deployment's stream ------------------------------------------------------------

PlannerDecision = DeploymentPlanned | DeploymentPlanFailed | DeploymentQueued
"""What the planner records on `deployment-<id>` (built by `planned`, `plan_failed`, `queued`)."""


def decide_planning(state: Deployment | None, decision: PlannerDecision) -> Sequence[Event]:
    """Record `decision` while the deployment is pending (planned or failed only once, queued
    only once); nothing when it was recorded already (a redelivered trigger)."""
    if state is None:
        # Only a trigger puts a deployment in the queue; its stream must start with it.
        raise RuntimeError(f"deployment {decision.deployment_id} has no DeploymentTriggered")
    if state.status is not DeploymentStatus.PENDING:
        return []
    if isinstance(decision, DeploymentQueued) and state.queued_behind is not None:
        return []
    return [decision]


PLANNING: Final = Functions[Deployment | None, PlannerDecision](
    None, evolve_stream, decide_planning
)
"""`deployment-<id>` as the planner writes it: its plan, its failure or its place in line."""
