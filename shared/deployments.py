"""A deployment as its stream (`deployment-<id>`) tells it, and the rules for people's requests.

Pure, like a decider's `evolve`: no I/O, clock, ids or logging. One fold for
everyone who reads the stream: the executor decides on it
(`services/executor/decider.py`), the API answers `GET /deployments/{id}`
with it and checks people's requests against it, and the demo story judges
it. The gitwatcher writes the trigger, the planner the plan, the executor the
stages and the completion, the API the requests.

Statuses (DESIGN §5) only move forward: PENDING → PLANNED → RUNNING →
(ROLLING_BACK) → SUCCESS | FAILURE | CANCELLED. A stage goes NOT_STARTED_YET →
RUNNING → SUCCESS | FAILURE | CANCELLED | SKIPPED | EXITED, once. A late or
repeated event therefore changes nothing, so the fold is safe to replay.

People ask three things of a running deployment: cancel it, approve a
WAIT_APPROVAL stage, skip a WAIT, WAIT_APPROVAL or ANALYSIS stage.
`request_cancel`, `approve` and `request_skip` return the request event to
append, `[]` when the same request stands already, or raise `Rejected` with
the reason. The API applies them before appending, so a bad request is
refused at once rather than recorded and ignored; the executor applies the
same ones (its `decide`), so both agree by construction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

import msgspec

from shared.config.application import WaitApprovalOptions
from shared.config.stage_kinds import SKIPPABLE
from shared.errors import Rejected
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
from shared.events.vocabulary import DeploymentStatus, StageStatus
from shared.executor.options import OptionsError, stage_options

__all__ = [
    "COMPLETED_DEPLOYMENT",
    "COMPLETED_STAGE",
    "INITIAL",
    "SKIPPABLE",
    "AmbiguousStage",
    "CancelRequest",
    "Deployment",
    "DeploymentStatus",
    "Stage",
    "StageStatus",
    "approval_options",
    "approve",
    "counted_approvals",
    "evolve",
    "evolve_stream",
    "find_stage",
    "fold",
    "fold_history",
    "missing_approvals",
    "request_cancel",
    "request_skip",
]


COMPLETED_DEPLOYMENT: Final = frozenset(
    {DeploymentStatus.SUCCESS, DeploymentStatus.FAILURE, DeploymentStatus.CANCELLED}
)
COMPLETED_STAGE: Final = frozenset(
    {
        StageStatus.SUCCESS,
        StageStatus.FAILURE,
        StageStatus.CANCELLED,
        StageStatus.SKIPPED,
        StageStatus.EXITED,
    }
)

_RANK: Final = {
    DeploymentStatus.PENDING: 0,
    DeploymentStatus.PLANNED: 1,
    DeploymentStatus.RUNNING: 2,
    DeploymentStatus.ROLLING_BACK: 3,
    DeploymentStatus.SUCCESS: 4,
    DeploymentStatus.FAILURE: 4,
    DeploymentStatus.CANCELLED: 4,
}


# State ------------------------------------------------------------------------------------


class Stage(msgspec.Struct, frozen=True, kw_only=True):
    """One planned stage of a deployment, as its events tell it."""

    id: str = msgspec.field(name="stage_id")
    name: str
    index: int
    description: str = ""
    visible: bool = True
    """False for the hidden rollback stages, which run only when the deployment rolls back."""
    status: StageStatus = StageStatus.NOT_STARTED_YET
    started_at: datetime | None = None
    completed_at: datetime | None = None
    reason: str = ""
    approvers: tuple[str, ...] = ()
    """Who approved it, in order (a WAIT_APPROVAL stage)."""
    allowed_approvers: tuple[str, ...] = ()
    """Who may approve it (a WAIT_APPROVAL stage's `with.approvers`; empty: anyone)."""
    approvals_needed: int = 0
    """How many more approvals a WAIT_APPROVAL stage needs to pass (0 for other stages)."""
    skip_requested_by: str | None = None
    options_json: str = "{}"
    requires: tuple[str, ...] = ()
    timeout_s: float = 0.0
    skip_reason: str = ""
    """Why the plan skips it (its `skipOn` matched); "" when it runs."""

    @property
    def completed(self) -> bool:
        """Whether the stage has ended (succeeded, failed, skipped, cancelled or exited)."""
        return self.status in COMPLETED_STAGE

    @property
    def rollback(self) -> bool:
        """Hidden stages run only when the deployment rolls back."""
        return not self.visible


class CancelRequest(msgspec.Struct, frozen=True):
    """A person's request to cancel, with or without rolling back."""

    with_rollback: bool
    commander: str


class Deployment(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment as its stream tells it (also the API's answer to `GET /deployments/{id}`)."""

    deployment_id: str = ""
    application_id: str = ""
    status: DeploymentStatus = DeploymentStatus.PENDING
    trigger: str = ""
    commit_hash: str = ""
    commit_message: str = ""
    commit_author: str = ""
    commander: str = ""
    strategy: str = ""
    summary: str = ""
    deployed_version: str = ""
    """The version it deploys, from its workloads' images as PipeCD's `determineVersion`
    derives it (`v2`, `v2 (web), 1.30 (envoy)`); "" until planned."""
    reason: str = ""
    """Why it was planned so, or why it completed as it did, once it has."""
    queued_behind: str | None = None
    cancel_requested: bool = False
    cancel_with_rollback: bool | None = None
    triggered_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    stages: tuple[Stage, ...] = ()
    position: int = 0
    """The log position of the last event folded in (0 when folded without positions)."""
    version: int = -1
    """The stream version of the last event folded in (-1: none): the next append expects it."""
    running_commit_hash: str = ""
    repository_id: str = ""
    path: str = ""
    config_filename: str = ""
    timeout_s: float = 0.0
    """The application's `spec.timeout` the executor started it with (0: none)."""
    cancel_requested_by: str = ""
    rolled_back: bool = False
    """It turned ROLLING_BACK at some point (it stays true once it completes)."""

    @property
    def completed(self) -> bool:
        """Whether the deployment has ended (success, failure or cancelled)."""
        return self.status in COMPLETED_DEPLOYMENT

    @property
    def cancel(self) -> CancelRequest | None:
        """The request to cancel that stands (the first one), if any."""
        if not self.cancel_requested:
            return None
        return CancelRequest(bool(self.cancel_with_rollback), self.cancel_requested_by)

    def stage(self, stage_id: str) -> Stage | None:
        """The stage with id `stage_id`, or None."""
        return next((s for s in self.stages if s.id == stage_id), None)

    @property
    def running_stage(self) -> Stage | None:
        """The stage running now, or None."""
        return next((s for s in self.stages if s.status is StageStatus.RUNNING), None)


INITIAL: Final = Deployment()


def evolve(state: Deployment, event: Event, recorded_at: datetime | None = None) -> Deployment:
    """The deployment after `event`, recorded at `recorded_at` (None: not recorded yet).

    `recorded_at` only fills times the events do not carry (triggered, completed);
    the executor folds the events it has just decided without it.
    """
    r = msgspec.structs.replace
    match event:
        case DeploymentTriggered():
            return r(
                state,
                deployment_id=state.deployment_id or event.deployment_id,
                application_id=event.application_id,
                trigger=event.trigger,
                commit_hash=event.commit_hash,
                commit_message=event.commit_message,
                commit_author=event.commit_author,
                commander=event.commander,
                strategy=state.strategy or event.strategy,
                triggered_at=state.triggered_at or recorded_at,
            )
        case DeploymentQueued():
            return r(state, queued_behind=event.behind_deployment_id)
        case DeploymentPlanned():
            if state.stages:  # planned once; a duplicate plan changes nothing
                return state
            return r(
                state,
                deployment_id=state.deployment_id or event.deployment_id,
                application_id=event.application_id,
                status=_forward(state.status, DeploymentStatus.PLANNED),
                commit_hash=event.commit_hash,
                running_commit_hash=event.running_commit_hash,
                repository_id=event.repository_id,
                path=event.path,
                config_filename=event.config_filename,
                strategy=event.strategy,
                summary=event.summary,
                deployed_version=event.version,
                reason=state.reason or event.reason,
                queued_behind=None,
                stages=tuple(
                    _with_approvals(
                        Stage(
                            id=s.id,
                            name=s.name,
                            index=s.index,
                            description=s.desc,
                            visible=s.visible,
                            options_json=s.options_json,
                            requires=s.requires,
                            timeout_s=s.timeout_s,
                            skip_reason=event.skipped.get(s.id, ""),
                        )
                    )
                    for s in event.stages
                ),
            )
        case DeploymentPlanFailed():
            return r(
                state,
                status=_forward(state.status, DeploymentStatus.FAILURE),
                reason=event.reason,
                completed_at=state.completed_at or recorded_at,
            )
        case DeploymentStarted():
            return r(
                state,
                status=_forward(state.status, DeploymentStatus.RUNNING),
                started_at=state.started_at or event.started_at,
                timeout_s=event.timeout_s,
            )
        case StageStarted() | StageCompleted() | StageApproved() | StageSkipRequested():
            stage = state.stage(event.stage_id)
            if stage is None:
                return state
            changed = _evolve_stage(stage, event, recorded_at)
            return state if changed is stage else _with_stage(state, changed)
        case DeploymentRollingBack():
            if state.completed:
                return state
            return r(
                state,
                status=_forward(state.status, DeploymentStatus.ROLLING_BACK),
                rolled_back=True,
            )
        case DeploymentCompleted():
            if state.completed:
                return state
            return r(
                state,
                status=DeploymentStatus(event.status),
                reason=event.reason or state.reason,
                completed_at=recorded_at,
            )
        case DeploymentCancelRequested():
            if state.cancel_requested:  # the first request stands
                return state
            return r(
                state,
                cancel_requested=True,
                cancel_with_rollback=event.with_rollback,
                cancel_requested_by=event.commander,
            )
        case _:
            return state


_STAGE_EVENT: Final = (StageStarted, StageCompleted, StageApproved, StageSkipRequested)


def _evolve_stage(
    stage: Stage,
    event: StageStarted | StageCompleted | StageApproved | StageSkipRequested,
    recorded_at: datetime | None,
) -> Stage:
    """The stage after an event naming it; `stage` itself when the event changes nothing."""
    r = msgspec.structs.replace
    match event:
        case StageStarted():
            if stage.status is not StageStatus.NOT_STARTED_YET:
                return stage
            return r(stage, status=StageStatus.RUNNING, started_at=event.started_at)
        case StageCompleted():
            if stage.completed:
                return stage
            return r(
                stage,
                status=StageStatus(event.status),
                reason=event.reason,
                completed_at=event.completed_at or recorded_at,
            )
        case StageApproved():
            if event.approver in stage.approvers:
                return stage
            return _with_approvals(r(stage, approvers=(*stage.approvers, event.approver)))
        case StageSkipRequested():
            if stage.skip_requested_by is not None:
                return stage
            return r(stage, skip_requested_by=event.commander)


class _Folding:
    """`evolve` over many events in time linear in their number, however many stages.

    `evolve` finds a stage by scanning and rebuilds the tuple of stages for
    each stage event, so folding a pipeline of n stages one event at a time
    costs n² (a 2,500-stage deployment: seconds). Here the stages live in a
    list with an index by id while the fold runs, and the tuple is built once,
    at the end. Only the fold's own copies are mutated: the result is what
    `evolve` one event at a time gives (tests/unit/test_deployments_fold.py).
    While stage events are pending, `self._state.stages` is stale; `evolve`
    reads nothing of the stages for the deployment's own events but whether
    there are any (a duplicate plan), which staleness does not change.
    """

    def __init__(self, state: Deployment) -> None:
        self._state = state
        self._load(state.stages)

    def _load(self, stages: tuple[Stage, ...]) -> None:
        self._stages = list(stages)
        self._dirty = False
        # `evolve` changes the first stage with an id and writes it to every place of that id.
        # One dict built at C speed (a fold from a snapshot builds it for each read): reversed,
        # so that the first place of an id is the one kept.
        self._first = {stage.id: place for place, stage in reversed(list(enumerate(stages)))}
        self._others: dict[str, list[int]] = {}
        if len(self._first) < len(stages):  # an id given twice: a plan should not, but may
            for place, stage in enumerate(stages):
                if self._first[stage.id] != place:
                    self._others.setdefault(stage.id, []).append(place)

    def evolve(self, event: Event, recorded_at: datetime | None = None) -> None:
        if isinstance(event, _STAGE_EVENT):
            first = self._first.get(event.stage_id)
            if first is None:
                return
            stage = self._stages[first]
            changed = _evolve_stage(stage, event, recorded_at)
            if changed is not stage:
                self._stages[first] = changed
                for place in self._others.get(event.stage_id, ()):
                    self._stages[place] = changed
                self._dirty = True
            return
        before = self._state.stages
        self._state = evolve(self._state, event, recorded_at)
        if self._state.stages is not before:  # the plan: the stages begin
            self._load(self._state.stages)

    def replace(self, **changes: object) -> None:
        self._state = msgspec.structs.replace(self._state, **changes)

    @property
    def state(self) -> Deployment:
        if self._dirty:
            self._state = msgspec.structs.replace(self._state, stages=tuple(self._stages))
            self._dirty = False
        return self._state


def fold(events: Iterable[tuple[int, Event]], state: Deployment = INITIAL) -> Deployment:
    """The deployment after `(stream_version, event)` pairs, remembering the last version."""
    folding = _Folding(state)
    for version, event in events:
        folding.evolve(event)
        folding.replace(version=version)
    return folding.state


def evolve_stream(state: Deployment | None, event: Event) -> Deployment | None:
    """`evolve` for a stream read from its start, as a `shared.decider` folds it: None until
    its first event (no such deployment)."""
    return evolve(state or INITIAL, event)


def fold_history(
    deployment_id: str, history: Iterable[RecordedEvent], start: Deployment | None = None
) -> Deployment | None:
    """The deployment after its stream's recorded events, from `start` (a snapshot of the
    stream's beginning; None: from the start); None when nothing was folded at all."""
    folding: _Folding | None = None if start is None else _Folding(start)
    for recorded in history:
        folding = folding or _Folding(Deployment(deployment_id=deployment_id))
        folding.evolve(recorded.event, recorded.recorded_at)
        folding.replace(
            position=recorded.global_position,
            version=recorded.stream_version,
            updated_at=recorded.recorded_at,
        )
    return None if folding is None else folding.state


def _forward(current: DeploymentStatus, new: DeploymentStatus) -> DeploymentStatus:
    if current in COMPLETED_DEPLOYMENT or _RANK[new] < _RANK[current]:
        return current
    return new


def _with_stage(state: Deployment, stage: Stage) -> Deployment:
    stages = tuple(stage if s.id == stage.id else s for s in state.stages)
    return msgspec.structs.replace(state, stages=stages)


# People's requests ------------------------------------------------------------------------


def request_cancel(state: Deployment, *, with_rollback: bool, commander: str) -> list[Event]:
    """Ask the executor to cancel; [] when a cancel was asked already (the first stands)."""
    if state.completed:
        raise Rejected(f"deployment {state.deployment_id} has already completed ({state.status})")
    if state.status is DeploymentStatus.ROLLING_BACK:
        raise Rejected(f"deployment {state.deployment_id} is rolling back; it cannot be cancelled")
    if state.cancel_requested:
        return []
    return [
        DeploymentCancelRequested(
            deployment_id=state.deployment_id, with_rollback=with_rollback, commander=commander
        )
    ]


def approve(state: Deployment, stage_id: str, *, approver: str) -> list[Event]:
    """Approve a running WAIT_APPROVAL stage (its id, or its name if unique) as `approver`.

    Only listed approvers may.
    """
    stage = find_stage(state, stage_id)
    if stage.name != "WAIT_APPROVAL":
        raise Rejected(f"deployment {state.deployment_id} has no WAIT_APPROVAL stage {stage_id!r}")
    if state.status is not DeploymentStatus.RUNNING or stage.status is not StageStatus.RUNNING:
        raise Rejected(f"stage {stage.id} is not waiting for approval ({stage.status})")
    _check_approver(stage, approver, "approve")
    if approver in stage.approvers:
        raise Rejected(f"{approver} has already approved stage {stage.id}")
    return [StageApproved(deployment_id=state.deployment_id, stage_id=stage.id, approver=approver)]


def request_skip(
    state: Deployment, stage_id: str, *, commander: str, admin: bool = False
) -> list[Event]:
    """Ask the executor to skip a WAIT, WAIT_APPROVAL or ANALYSIS stage; [] if asked already.

    `stage_id` is the stage's id, or its name if unique in the pipeline.
    Skipping a WAIT_APPROVAL stage gives what approving it gives, so it needs
    what approving needs: a listed approver, or an `admin` (whose role may
    override a gate, as it may delete the application).
    """
    stage = find_stage(state, stage_id)
    if not stage.visible:
        raise Rejected(f"deployment {state.deployment_id} has no stage {stage_id!r}")
    if stage.name not in SKIPPABLE:
        raise Rejected(
            f"stage {stage.id} ({stage.name}) cannot be skipped; only "
            f"{', '.join(sorted(SKIPPABLE))} stages can"
        )
    if state.completed or state.status is DeploymentStatus.ROLLING_BACK or stage.completed:
        raise Rejected(f"stage {stage.id} has already ended ({stage.status})")
    if stage.name == "WAIT_APPROVAL" and not admin:
        _check_approver(stage, commander, "skip")
    if stage.skip_requested_by is not None:
        return []
    return [
        StageSkipRequested(
            deployment_id=state.deployment_id, stage_id=stage.id, commander=commander
        )
    ]


def counted_approvals(stage: Stage, options: WaitApprovalOptions) -> tuple[str, ...]:
    """The approvals that count towards `minApproverNum`: only listed approvers', when listed.

    Even if another writer recorded someone else's approval without going
    through `approve` (which refuses it), it does not count.
    """
    return tuple(a for a in stage.approvers if not options.approvers or a in options.approvers)


def missing_approvals(stage: Stage, options: WaitApprovalOptions) -> int:
    """How many more approvals the stage needs before it passes (the executor's rule)."""
    return max(max(options.min_approver_num, 1) - len(counted_approvals(stage, options)), 0)


def _with_approvals(stage: Stage) -> Stage:
    """The stage with who may approve it and how many approvals it still needs, for readers."""
    if stage.name != "WAIT_APPROVAL":
        return stage
    options = approval_options(stage)
    if options is None:
        return stage
    return msgspec.structs.replace(
        stage,
        allowed_approvers=options.approvers,
        approvals_needed=missing_approvals(stage, options),
    )


class AmbiguousStage(Rejected):
    """A stage was named by a name several of the deployment's stages have."""


def find_stage(state: Deployment, ref: str) -> Stage:
    """The visible stage whose id is `ref`, else the only one named `ref` (any case).

    People read `WAIT_APPROVAL` in `deployment get` and type it; a pipeline with
    two such stages needs the id, and the refusal lists them.
    """
    by_id = state.stage(ref)
    if by_id is not None:
        return by_id
    named = [s for s in state.stages if s.visible and s.name.upper() == ref.upper()]
    if len(named) == 1:
        return named[0]
    if named:
        ids = ", ".join(s.id for s in named)
        raise AmbiguousStage(
            f"deployment {state.deployment_id} has {len(named)} {named[0].name} stages "
            f"({ids}): name one by its id"
        )
    raise Rejected(f"deployment {state.deployment_id} has no stage {ref!r}")


def _check_approver(stage: Stage, who: str, what: str) -> None:
    """`Rejected` unless `who` may give the stage's approval (anyone, when none are listed)."""
    options = approval_options(stage)
    if options is not None and options.approvers and who not in options.approvers:
        raise Rejected(
            f"{who} may not {what} stage {stage.id} (approvers: {', '.join(options.approvers)})"
        )


def approval_options(stage: Stage) -> WaitApprovalOptions | None:
    """A WAIT_APPROVAL stage's options; None when they are malformed (any approver will do)."""
    try:
        options = stage_options("WAIT_APPROVAL", stage.options_json)
    except OptionsError:
        return None
    assert isinstance(options, WaitApprovalOptions)
    return options
