"""The pure core of deployments in the API: their view folded from events, and people's requests.

A deployment's stream (`deployment-<id>`) is written by the gitwatcher
(triggered), the planner (planned) and the executor (stages, completion).
The API appends three requests to it that the executor consumes:
`DeploymentCancelRequested`, `StageApproved` and `StageSkipRequested`.
It refuses them by the same rules the executor's decider applies
(`services/executor/decider.py`, `_request_cancel`, `_approve`,
`_request_skip`), so a bad request gets a clear 409 at once instead of an
event the executor would ignore; `tests/test_api_deployments.py` runs the
same histories through both to keep the rules in step. (Services never
import each other, hence the copy of the rules rather than a call.)

Nothing here awaits or reads a clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Final

import msgspec

from services.api.decider import Conflict, NotFound
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    DeploymentCancelRequested,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentQueued,
    DeploymentRollingBack,
    DeploymentStarted,
    DeploymentTriggered,
    StageApproved,
    StageCompleted,
    StageSkipRequested,
    StageStarted,
)

__all__ = [
    "COMPLETED",
    "DeploymentView",
    "StageView",
    "approve",
    "cancel",
    "deployment_stream",
    "fold_deployment",
    "skip",
]

COMPLETED: Final = frozenset({"SUCCESS", "FAILURE", "CANCELLED"})
_COMPLETED_STAGE: Final = frozenset({"SUCCESS", "FAILURE", "CANCELLED", "SKIPPED", "EXITED"})
SKIPPABLE: Final = frozenset({"WAIT", "WAIT_APPROVAL", "ANALYSIS"})
# Forward-only, as in the executor: a status never moves to one of lower rank.
_RANK: Final = {
    "PENDING": 0,
    "PLANNED": 1,
    "RUNNING": 2,
    "ROLLING_BACK": 3,
    "SUCCESS": 4,
    "FAILURE": 4,
    "CANCELLED": 4,
}


class StageView(msgspec.Struct, frozen=True, kw_only=True):
    """One planned stage of a deployment, as its events tell it."""

    stage_id: str
    name: str
    index: int
    description: str = ""
    visible: bool = True
    """False for the hidden ROLLBACK stage, which runs only when rolling back."""
    status: str = "NOT_STARTED_YET"
    started_at: datetime | None = None
    completed_at: datetime | None = None
    reason: str = ""
    approvers: list[str] = msgspec.field(default_factory=list)
    skip_requested_by: str | None = None
    options_json: str = "{}"


class DeploymentView(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment with its stages: the answer of `GET /deployments/{id}`."""

    deployment_id: str
    application_id: str = ""
    status: str = "PENDING"
    trigger: str = ""
    commit_hash: str = ""
    commit_message: str = ""
    commit_author: str = ""
    commander: str = ""
    strategy: str = ""
    summary: str = ""
    reason: str = ""
    """Why it was planned so, or why it completed as it did, once it has."""
    queued_behind: str | None = None
    cancel_requested: bool = False
    cancel_with_rollback: bool | None = None
    triggered_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    stages: list[StageView] = msgspec.field(default_factory=list)
    position: int = 0
    """The log position of the last event folded in."""
    version: int = -1
    """The stream version of the last event folded in: a request appends after it."""

    @property
    def completed(self) -> bool:
        return self.status in COMPLETED

    def stage(self, stage_id: str) -> StageView | None:
        return next((s for s in self.stages if s.stage_id == stage_id), None)


def deployment_stream(deployment_id: str) -> str:
    return f"deployment-{deployment_id}"


def _forward(current: str, new: str) -> str:
    if current in COMPLETED or _RANK.get(new, 0) < _RANK.get(current, 0):
        return current
    return new


def _stage(view: DeploymentView, stage_id: str, **changes: object) -> DeploymentView:
    stages = [
        msgspec.structs.replace(s, **changes) if s.stage_id == stage_id else s for s in view.stages
    ]
    return msgspec.structs.replace(view, stages=stages)


def evolve(view: DeploymentView, event: Event, recorded_at: datetime) -> DeploymentView:
    """The deployment after `event`, recorded at `recorded_at`."""
    r = msgspec.structs.replace
    match event:
        case DeploymentTriggered():
            return r(
                view,
                application_id=event.application_id,
                trigger=event.trigger,
                commit_hash=event.commit_hash,
                commit_message=event.commit_message,
                commit_author=event.commit_author,
                commander=event.commander,
                strategy=view.strategy or event.strategy,
                triggered_at=view.triggered_at or recorded_at,
            )
        case DeploymentQueued():
            return r(view, queued_behind=event.behind_deployment_id)
        case DeploymentPlanned():
            if view.stages:
                return view
            return r(
                view,
                application_id=event.application_id,
                status=_forward(view.status, "PLANNED"),
                commit_hash=event.commit_hash,
                strategy=event.strategy,
                summary=event.summary,
                reason=view.reason or event.reason,
                queued_behind=None,
                stages=[
                    StageView(
                        stage_id=s.id,
                        name=s.name,
                        index=s.index,
                        description=s.desc,
                        visible=s.visible,
                        options_json=s.options_json,
                    )
                    for s in event.stages
                ],
            )
        case DeploymentPlanFailed():
            return r(
                view,
                status=_forward(view.status, "FAILURE"),
                reason=event.reason,
                completed_at=view.completed_at or recorded_at,
            )
        case DeploymentStarted():
            return r(
                view,
                status=_forward(view.status, "RUNNING"),
                started_at=view.started_at or event.started_at,
            )
        case StageStarted():
            stage = view.stage(event.stage_id)
            if stage is None or stage.status != "NOT_STARTED_YET":
                return view
            return _stage(view, event.stage_id, status="RUNNING", started_at=event.started_at)
        case StageCompleted():
            stage = view.stage(event.stage_id)
            if stage is None or stage.status in _COMPLETED_STAGE:
                return view
            return _stage(
                view,
                event.stage_id,
                status=event.status,
                reason=event.reason,
                completed_at=event.completed_at or recorded_at,
            )
        case DeploymentRollingBack():
            return r(view, status=_forward(view.status, "ROLLING_BACK"))
        case DeploymentCompleted():
            if view.completed:
                return view
            return r(
                view,
                status=event.status,
                reason=event.reason or view.reason,
                completed_at=recorded_at,
            )
        case DeploymentCancelRequested():
            if view.cancel_requested:
                return view
            return r(view, cancel_requested=True, cancel_with_rollback=event.with_rollback)
        case StageApproved():
            stage = view.stage(event.stage_id)
            if stage is None or event.approver in stage.approvers:
                return view
            return _stage(view, event.stage_id, approvers=[*stage.approvers, event.approver])
        case StageSkipRequested():
            stage = view.stage(event.stage_id)
            if stage is None or stage.skip_requested_by is not None:
                return view
            return _stage(view, event.stage_id, skip_requested_by=event.commander)
        case _:
            return view


def fold_deployment(deployment_id: str, history: Iterable[RecordedEvent]) -> DeploymentView | None:
    """The deployment after its stream's events; None when the stream is empty."""
    view: DeploymentView | None = None
    for recorded in history:
        view = view or DeploymentView(deployment_id=deployment_id)
        view = msgspec.structs.replace(
            evolve(view, recorded.event, recorded.recorded_at),
            position=recorded.global_position,
            version=recorded.stream_version,
            updated_at=recorded.recorded_at,
        )
    return view


# People's requests: the executor's rules ------------------------------------------------


def _refuse(message: str, view: DeploymentView) -> Conflict:
    return Conflict("refused", message, application_id=view.application_id or None)


def cancel(
    view: DeploymentView | None, deployment_id: str, *, with_rollback: bool, commander: str
) -> list[Event]:
    """Ask the executor to cancel; [] when a cancel was asked already (the first stands)."""
    if view is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    if view.completed:
        raise _refuse(f"deployment {deployment_id} has already completed ({view.status})", view)
    if view.status == "ROLLING_BACK":
        raise _refuse(f"deployment {deployment_id} is rolling back; it cannot be cancelled", view)
    if view.cancel_requested:
        return []
    return [
        DeploymentCancelRequested(
            deployment_id=deployment_id, with_rollback=with_rollback, commander=commander
        )
    ]


def approve(
    view: DeploymentView | None, deployment_id: str, stage_id: str, *, approver: str
) -> list[Event]:
    """Approve a running WAIT_APPROVAL stage as `approver` (only listed approvers may)."""
    if view is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    stage = view.stage(stage_id)
    if stage is None or stage.name != "WAIT_APPROVAL":
        raise _refuse(f"deployment {deployment_id} has no WAIT_APPROVAL stage {stage_id!r}", view)
    if view.status != "RUNNING" or stage.status != "RUNNING":
        raise _refuse(f"stage {stage_id} is not waiting for approval ({stage.status})", view)
    approvers = _approvers(stage.options_json)
    if approvers and approver not in approvers:
        raise _refuse(
            f"{approver} may not approve stage {stage_id} (approvers: {', '.join(approvers)}); "
            "the approver is the API key's name",
            view,
        )
    if approver in stage.approvers:
        raise _refuse(f"{approver} has already approved stage {stage_id}", view)
    return [StageApproved(deployment_id=deployment_id, stage_id=stage_id, approver=approver)]


def skip(
    view: DeploymentView | None, deployment_id: str, stage_id: str, *, commander: str
) -> list[Event]:
    """Ask the executor to skip a WAIT, WAIT_APPROVAL or ANALYSIS stage; [] if asked already."""
    if view is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    stage = view.stage(stage_id)
    if stage is None or not stage.visible:
        raise _refuse(f"deployment {deployment_id} has no stage {stage_id!r}", view)
    if stage.name not in SKIPPABLE:
        raise _refuse(
            f"stage {stage_id} ({stage.name}) cannot be skipped; only "
            f"{', '.join(sorted(SKIPPABLE))} stages can",
            view,
        )
    if view.completed or view.status == "ROLLING_BACK" or stage.status in _COMPLETED_STAGE:
        raise _refuse(f"stage {stage_id} has already ended ({stage.status})", view)
    if stage.skip_requested_by is not None:
        return []
    return [StageSkipRequested(deployment_id=deployment_id, stage_id=stage_id, commander=commander)]


def _approvers(options_json: str) -> list[str]:
    """The stage's listed approvers (`with.approvers`); [] when any approver will do."""
    try:
        value = json.loads(options_json).get("approvers", [])
    except (ValueError, AttributeError):
        return []
    return [a for a in value if isinstance(a, str)] if isinstance(value, list) else []
