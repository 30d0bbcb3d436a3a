"""The executor's pure core: what happens next to a deployment folded from its events.

No I/O, clock, ids or logging here: the shell folds the stream, passes the time
in, appends what `decide` returns, and runs the stage work that `work_of` names.
The fold itself (`Deployment`, `evolve`, `fold`: forward-only statuses, each
stage run once) and the rules for people's requests are `shared.deployments`,
which the API applies too.

The forward pass runs the visible stages in order. The first stage that fails
(or is cancelled, or times out) ends it: from then on no visible stage
starts. If the deployment failed, or was cancelled with rollback, and the plan
has hidden rollback stages (`ROLLBACK`, and `SCRIPT_RUN_ROLLBACK` for scripts
that ran), the deployment turns ROLLING_BACK and runs them; then it completes
with the status the forward pass decided, whatever the rollback's outcome
(PipeCD's scheduler does the same).

Who does what:

- people (through the API) ask: `RequestCancel`, `Approve`, `RequestSkip` —
  `decide` applies the shared rules: the request event, or `Rejected`;
- the executor acts: `Start`, `Advance` (time passed or a request arrived),
  `StageFinished` (a stage's work returned), `Abort` — `decide` returns the
  events that move the deployment as far as it can go without I/O.

WAIT and WAIT_APPROVAL need no work: a WAIT ends when `now` reaches its
`started_at` plus its duration (so after a restart it waits only the time
left), a WAIT_APPROVAL when enough approvals are folded in or its timeout
passes. Every other stage is work the shell runs (`work_of`), then reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.config.application import WaitOptions
from shared.config.stage_kinds import TIMED
from shared.deployments import (
    COMPLETED_STAGE,
    CancelRequest,
    Deployment,
    DeploymentStatus,
    Stage,
    StageStatus,
    approval_options,
    approve,
    counted_approvals,
    evolve,
    fold,
    missing_approvals,
    request_cancel,
    request_skip,
)
from shared.events.base import Event
from shared.events.catalog import (
    DeploymentCompleted,
    DeploymentRollingBack,
    DeploymentStarted,
    StageCompleted,
    StageStarted,
)
from shared.executor.options import OptionsError, stage_options
from shared.redaction import REASON_CHARS, clip

# `Deployment`, its statuses, `Stage` and `fold` are `shared.deployments`, re-exported
# for the executor's shell, which folds the stream and hands the state to stage work.
__all__ = [
    "Abort",
    "Advance",
    "Approve",
    "Command",
    "Deployment",
    "DeploymentStatus",
    "RequestCancel",
    "RequestSkip",
    "Stage",
    "StageFinished",
    "StageStatus",
    "Start",
    "decide",
    "fold",
    "next_deadline",
    "work_of",
]


# Commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Take a planned deployment up; `timeout_s` is the application's `spec.timeout`."""

    timeout_s: float = 0.0
    executor: str = ""


@dataclass(frozen=True)
class Advance:
    """Time passed, or a request arrived: move on as far as possible without I/O."""


@dataclass(frozen=True)
class StageFinished:
    """A stage's work returned with `status` (SUCCESS, FAILURE or EXITED)."""

    stage_id: str
    status: StageStatus
    reason: str = ""


@dataclass(frozen=True)
class Abort:
    """Nothing can run (the config does not load at the commit): fail what is running."""

    reason: str


@dataclass(frozen=True)
class RequestCancel:
    """Someone asked to cancel the deployment (with or without a rollback)."""

    with_rollback: bool = True
    commander: str = ""


@dataclass(frozen=True)
class Approve:
    """An approver approved a WAIT_APPROVAL stage."""

    stage_id: str
    approver: str


@dataclass(frozen=True)
class RequestSkip:
    """Someone asked to skip a stage."""

    stage_id: str
    commander: str = ""
    admin: bool = False
    """The commander's key is admin (may skip an approval it is not listed for)."""


Command = Start | Advance | StageFinished | Abort | RequestCancel | Approve | RequestSkip


def decide(state: Deployment, command: Command, now: datetime) -> list[Event]:
    """The events `command` leads to at `now`; `Rejected` when a person's request is refused."""
    match command:
        case RequestCancel():
            return request_cancel(
                state, with_rollback=command.with_rollback, commander=command.commander
            )
        case Approve():
            return approve(state, command.stage_id, approver=command.approver)
        case RequestSkip():
            return request_skip(
                state, command.stage_id, commander=command.commander, admin=command.admin
            )
        case Start():
            if state.status is not DeploymentStatus.PLANNED or state.cancel is not None:
                return _advance(state, [], now)
            started = DeploymentStarted(
                deployment_id=state.deployment_id,
                application_id=state.application_id,
                started_at=now,
                timeout_s=command.timeout_s,
                executor=command.executor,
            )
            return _advance(state, [started], now)
        case StageFinished():
            stage = state.stage(command.stage_id)
            if stage is None or stage.status is not StageStatus.RUNNING or state.completed:
                return []  # a stale report: the stage was cancelled or timed out meanwhile
            if command.status not in COMPLETED_STAGE:
                raise ValueError(f"a stage cannot finish as {command.status}")
            finished = _completed(state, stage, command.status, command.reason, now)
            return _advance(state, [finished], now)
        case Abort():
            if state.completed or state.status is DeploymentStatus.PENDING:
                return []
            stage = state.running_stage
            if stage is not None:
                failed = _completed(state, stage, StageStatus.FAILURE, command.reason, now)
                return _advance(state, [failed], now)
            return [_deployment_completed(state, DeploymentStatus.FAILURE, command.reason)]
        case Advance():
            return _advance(state, [], now)


# Moving on ------------------------------------------------------------------------------


def _advance(state: Deployment, first: list[Event], now: datetime) -> list[Event]:
    """`first`, then every step that follows without I/O, folded one after another."""
    out = list(first)
    for event in first:
        state = evolve(state, event)
    # Each step starts or ends a stage or moves the status on, so this ends; the
    # bound only turns a bug into a visible stall instead of a hang.
    for _ in range(4 * len(state.stages) + 4):
        step = _step(state, now)
        if not step:
            break
        out += step
        for event in step:
            state = evolve(state, event)
    return out


def _step(state: Deployment, now: datetime) -> list[Event]:
    """The next events, if time, a request or a finished stage calls for any."""
    status = state.status
    if status is DeploymentStatus.PLANNED and state.cancel is not None:
        reason = f"Cancelled by {_who(state.cancel)} before it started"
        return [_deployment_completed(state, DeploymentStatus.CANCELLED, reason)]
    if status not in (DeploymentStatus.RUNNING, DeploymentStatus.ROLLING_BACK):
        return []
    forward = status is DeploymentStatus.RUNNING
    running = state.running_stage
    if running is not None:
        return _check_running(state, running, now, forward=forward)
    if forward:
        verdict = _verdict(state, now)
        if verdict is None:
            following = _next_forward(state)
            if following is None:
                reason = "The deployment was completed successfully"
                return [_deployment_completed(state, DeploymentStatus.SUCCESS, reason)]
            if following.skip_requested_by is not None:
                reason = f"Skipped by {following.skip_requested_by or 'someone'} before it started"
                return [_completed(state, following, StageStatus.SKIPPED, reason, now)]
            if following.skip_reason:
                return [
                    _completed(state, following, StageStatus.SKIPPED, following.skip_reason, now)
                ]
            return [_started(state, following, now)]
        outcome, reason = verdict
        if _rolls_back(state, outcome) and _next_rollback(state) is not None:
            return [
                DeploymentRollingBack(
                    deployment_id=state.deployment_id,
                    application_id=state.application_id,
                    reason=clip(reason, REASON_CHARS),
                )
            ]
        return [_deployment_completed(state, outcome, reason)]
    following = _next_rollback(state)
    if following is not None:
        return [_started(state, following, now)]
    verdict = _verdict(state, now)
    outcome, reason = verdict or (DeploymentStatus.FAILURE, "Rolled back")
    return [_deployment_completed(state, outcome, reason)]


def _check_running(state: Deployment, stage: Stage, now: datetime, *, forward: bool) -> list[Event]:
    """Whether the running stage ends now: cancelled, timed out, skipped, waited or approved."""
    if forward and state.cancel is not None:
        reason = f"Cancelled by {_who(state.cancel)} while executing stage {stage.id}"
        return [_completed(state, stage, StageStatus.CANCELLED, reason, now)]
    if forward and _deployment_timed_out(state, now):
        reason = f"Timed out: the deployment ran longer than {_seconds(state.timeout_s)}"
        return [_completed(state, stage, StageStatus.FAILURE, reason, now)]
    if _stage_timed_out(stage, now):
        within = _seconds(stage.timeout_s)
        reason = f"Timed out while executing stage {stage.id} ({within})"
        if stage.name == "ANALYSIS":
            reason += f": no verdict from the analysis service within {within}"
        return [_completed(state, stage, StageStatus.FAILURE, reason, now)]
    if forward and stage.skip_requested_by is not None:
        reason = f"Skipped by {stage.skip_requested_by or 'someone'}"
        return [_completed(state, stage, StageStatus.SKIPPED, reason, now)]
    if stage.name == "WAIT":
        end = _wait_ends(stage)
        if end is None:
            return [_completed(state, stage, StageStatus.FAILURE, _malformed(stage), now)]
        if now >= end:
            reason = f"Waited {_seconds((end - _started_at(stage)).total_seconds())}"
            return [_completed(state, stage, StageStatus.SUCCESS, reason, now)]
    if stage.name == "WAIT_APPROVAL":
        options = approval_options(stage)
        if options is None:
            return [_completed(state, stage, StageStatus.FAILURE, _malformed(stage), now)]
        if missing_approvals(stage, options) == 0:
            approved = counted_approvals(stage, options)
            reason = f"Approved by {', '.join(approved)}"
            return [_completed(state, stage, StageStatus.SUCCESS, reason, now)]
        if options.timeout and now >= _started_at(stage) + options.timeout.timedelta:
            reason = f"Timed out waiting for approval ({options.timeout})"
            return [_completed(state, stage, StageStatus.FAILURE, reason, now)]
    return []


def _verdict(state: Deployment, now: datetime) -> tuple[DeploymentStatus, str] | None:
    """How the forward pass ended, once it has: the first failed, cancelled or exited stage."""
    for stage in state.stages:
        if not stage.visible:
            continue
        if stage.status is StageStatus.FAILURE:
            return DeploymentStatus.FAILURE, f"Failed while executing stage {stage.id}: " + (
                stage.reason or "no reason given"
            )
        if stage.status is StageStatus.CANCELLED:
            return DeploymentStatus.CANCELLED, stage.reason or f"Cancelled at stage {stage.id}"
        if stage.status is StageStatus.EXITED:
            return DeploymentStatus.SUCCESS, f"Exited early at stage {stage.id}: " + (
                stage.reason or "the pipeline was told to stop here"
            )
    # Between stages (none running): a request or the clock ends the pass just the same.
    if state.cancel is not None:
        return DeploymentStatus.CANCELLED, f"Cancelled by {_who(state.cancel)}"
    if _deployment_timed_out(state, now):
        return (
            DeploymentStatus.FAILURE,
            f"Timed out: the deployment ran longer than {_seconds(state.timeout_s)}",
        )
    return None


def _rolls_back(state: Deployment, outcome: DeploymentStatus) -> bool:
    if outcome is DeploymentStatus.FAILURE:
        return True
    if outcome is DeploymentStatus.CANCELLED:
        return state.cancel is None or state.cancel.with_rollback
    return False


def _next_forward(state: Deployment) -> Stage | None:
    return next(
        (s for s in state.stages if s.visible and s.status is StageStatus.NOT_STARTED_YET), None
    )


def _next_rollback(state: Deployment) -> Stage | None:
    """The next hidden stage to run; a script's rollback only if its script ran."""
    for stage in state.stages:
        if stage.visible or stage.status is not StageStatus.NOT_STARTED_YET:
            continue
        if stage.name == "SCRIPT_RUN_ROLLBACK":
            base = state.stage(_base_stage_id(stage))
            if base is None or base.status is StageStatus.NOT_STARTED_YET:
                continue
        return stage
    return None


# Deadlines and work ------------------------------------------------------------------------


def work_of(state: Deployment) -> Stage | None:
    """The running stage whose work the shell must run (every kind but WAIT and WAIT_APPROVAL)."""
    if state.status not in (DeploymentStatus.RUNNING, DeploymentStatus.ROLLING_BACK):
        return None
    stage = state.running_stage
    if stage is None or stage.name in TIMED:
        return None
    return stage


def next_deadline(state: Deployment) -> datetime | None:
    """The earliest time at which `Advance` may move on by the clock alone, if any."""
    if state.status not in (DeploymentStatus.RUNNING, DeploymentStatus.ROLLING_BACK):
        return None
    times: list[datetime] = []
    if state.status is DeploymentStatus.RUNNING and state.timeout_s > 0 and state.started_at:
        times.append(state.started_at + timedelta(seconds=state.timeout_s))
    stage = state.running_stage
    if stage is not None:
        if stage.timeout_s > 0:
            times.append(_started_at(stage) + timedelta(seconds=stage.timeout_s))
        if stage.name == "WAIT" and (end := _wait_ends(stage)) is not None:
            times.append(end)
        if stage.name == "WAIT_APPROVAL":
            options = approval_options(stage)
            if options is not None and options.timeout:
                times.append(_started_at(stage) + options.timeout.timedelta)
    return min(times, default=None)


# Helpers ----------------------------------------------------------------------------------


def _started(state: Deployment, stage: Stage, now: datetime) -> StageStarted:
    return StageStarted(
        deployment_id=state.deployment_id, stage_id=stage.id, started_at=now, name=stage.name
    )


def _completed(
    state: Deployment, stage: Stage, status: StageStatus, reason: str, now: datetime
) -> StageCompleted:
    return StageCompleted(
        deployment_id=state.deployment_id,
        stage_id=stage.id,
        status=status,
        reason=clip(reason, REASON_CHARS),
        completed_at=now,
    )


def _deployment_completed(
    state: Deployment, status: DeploymentStatus, reason: str
) -> DeploymentCompleted:
    return DeploymentCompleted(
        deployment_id=state.deployment_id,
        application_id=state.application_id,
        status=status,
        commit_hash=state.commit_hash,
        reason=clip(reason, REASON_CHARS),
    )


def _deployment_timed_out(state: Deployment, now: datetime) -> bool:
    return (
        state.timeout_s > 0
        and state.started_at is not None
        and now >= state.started_at + timedelta(seconds=state.timeout_s)
    )


def _stage_timed_out(stage: Stage, now: datetime) -> bool:
    return stage.timeout_s > 0 and now >= _started_at(stage) + timedelta(seconds=stage.timeout_s)


def _started_at(stage: Stage) -> datetime:
    assert stage.started_at is not None, f"stage {stage.id} is running without a start time"
    return stage.started_at


def _wait_ends(stage: Stage) -> datetime | None:
    try:
        options = stage_options("WAIT", stage.options_json)
    except OptionsError:
        return None
    assert isinstance(options, WaitOptions)
    return _started_at(stage) + options.duration.timedelta


def _base_stage_id(stage: Stage) -> str:
    try:
        value = json.loads(stage.options_json).get("baseStageId", "")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _malformed(stage: Stage) -> str:
    return f"The options of stage {stage.id} ({stage.name}) are malformed"


def _who(cancel: CancelRequest) -> str:
    return cancel.commander or "someone"


def _seconds(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
