"""The shared deployment fold and the rules for people's requests (`shared.deployments`).

The executor decides on this fold and the API answers and refuses with it;
these tests pin what both rely on: given events, the deployment view; given a
request, the event to append, `[]`, or a refusal with its reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from shared import deployments
from shared.deployments import Deployment, DeploymentStatus, Stage, StageStatus
from shared.errors import Rejected
from shared.events import vocabulary
from shared.events.base import Event, Metadata, RecordedEvent
from shared.events.catalog import (
    DeploymentCancelRequested,
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentQueued,
    DeploymentRollingBack,
    DeploymentStarted,
    DeploymentTriggered,
    PlannedStage,
    StageApproved,
    StageCompleted,
    StageSkipRequested,
    StageStarted,
)
from slipway_cli.deployment import describe

D = "d1"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STAGES = (
    PlannedStage(
        id="stage-0",
        name=vocabulary.StageName("WAIT_APPROVAL"),
        index=0,
        options_json='{"approvers": ["alice"]}',
    ),
    PlannedStage(
        id="stage-1", name=vocabulary.StageName("K8S_PRIMARY_ROLLOUT"), index=1, desc="roll out"
    ),
    PlannedStage(id="stage-2", name=vocabulary.StageName("ANALYSIS"), index=2),
    PlannedStage(id="stage-3", name=vocabulary.StageName("ROLLBACK"), index=3, visible=False),
)
RUNNING: list[Event] = [
    DeploymentTriggered(
        deployment_id=D,
        application_id="app1",
        trigger=vocabulary.Trigger("on_commit"),
        commit_hash="c0ffee1",
        commit_message="Bump image to v2",
        commander="ci",
    ),
    DeploymentPlanned(
        deployment_id=D,
        application_id="app1",
        commit_hash="c0ffee1",
        strategy=vocabulary.Strategy("pipeline"),
        summary="image web: v1 → v2",
        version="v2",
        reason="the pod template changed",
        stages=STAGES,
        path="apps/web",
    ),
    DeploymentStarted(deployment_id=D, application_id="app1", started_at=T0, timeout_s=600),
    StageStarted(deployment_id=D, stage_id="stage-0", started_at=T0),
]


def state_of(events: Sequence[Event]) -> Deployment:
    return deployments.fold(enumerate(events))


def stage_of(state: Deployment, stage_id: str) -> Stage:
    stage = state.stage(stage_id)
    assert stage is not None, f"no stage {stage_id}"
    return stage


def recorded(events: Sequence[Event], first_position: int = 100) -> list[RecordedEvent]:
    """The events as the log would hand them back, one second apart."""
    return [
        RecordedEvent(
            global_position=first_position + i,
            tx_id=1,
            stream_id=f"deployment-{D}",
            stream_version=i,
            event_id=uuid.uuid4(),
            event_type=type(e).__name__,
            schema_version=1,
            event=e,
            metadata=Metadata(),
            recorded_at=T0 + timedelta(seconds=i),
        )
        for i, e in enumerate(events)
    ]


# The fold ---------------------------------------------------------------------------------


def test_fold_gives_status_stages_and_what_the_plan_said() -> None:
    """Trigger, plan and start fold into a running deployment with its planned stages."""
    state = state_of(RUNNING)
    assert (state.deployment_id, state.application_id, state.status) == (
        D,
        "app1",
        DeploymentStatus.RUNNING,
    )
    assert (state.trigger, state.commander, state.commit_message) == (
        "on_commit",
        "ci",
        "Bump image to v2",
    )
    assert (state.strategy, state.path, state.timeout_s, state.version) == (
        "pipeline",
        "apps/web",
        600,
        3,
    )
    assert state.reason == "the pod template changed"
    assert [(s.id, s.status) for s in state.stages] == [
        ("stage-0", StageStatus.RUNNING),
        ("stage-1", StageStatus.NOT_STARTED_YET),
        ("stage-2", StageStatus.NOT_STARTED_YET),
        ("stage-3", StageStatus.NOT_STARTED_YET),
    ]
    assert stage_of(state, "stage-1").description == "roll out"
    assert state.running_stage == state.stage("stage-0")
    assert stage_of(state, "stage-3").rollback


def test_the_version_a_plan_deploys_is_in_the_view_and_deployment_get() -> None:
    """`DeploymentPlanned.version` (PipeCD's determineVersion) reaches the API's answer and
    `slipway deployment get`."""
    encoded = msgspec.to_builtins(state_of(RUNNING))
    assert encoded["deployed_version"] == "v2"
    assert "version:     v2" in describe(encoded).splitlines()


def test_history_fills_times_positions_and_the_version_from_the_log() -> None:
    """Folded from recorded events: trigger and completion times, last position and version."""
    events = [
        *RUNNING,
        StageCompleted(
            deployment_id=D, stage_id="stage-0", status=vocabulary.StageStatus("SUCCESS")
        ),
        DeploymentCompleted(
            deployment_id=D, application_id="app1", status=vocabulary.DeploymentStatus("SUCCESS")
        ),
    ]
    state = deployments.fold_history(D, recorded(events))
    assert state is not None
    assert (state.triggered_at, state.started_at) == (T0, T0)
    assert stage_of(state, "stage-0").completed_at == T0 + timedelta(seconds=4)
    assert state.completed_at == state.updated_at == T0 + timedelta(seconds=5)
    assert (state.position, state.version) == (105, 5)
    assert deployments.fold_history(D, []) is None


def test_a_late_or_repeated_event_changes_nothing() -> None:
    """Forward-only: a replayed plan, a second start or completion, a status moving back."""
    events = [
        *RUNNING,
        StageCompleted(
            deployment_id=D,
            stage_id="stage-0",
            status=vocabulary.StageStatus("FAILURE"),
            reason="no",
        ),
        DeploymentRollingBack(deployment_id=D, application_id="app1"),
        DeploymentCompleted(
            deployment_id=D,
            application_id="app1",
            status=vocabulary.DeploymentStatus("FAILURE"),
            reason="x",
        ),
    ]
    done = state_of(events)
    late = [
        RUNNING[1],
        DeploymentStarted(deployment_id=D, application_id="app1", started_at=T0, timeout_s=600),
        StageStarted(deployment_id=D, stage_id="stage-0", started_at=T0),
        StageCompleted(
            deployment_id=D, stage_id="stage-0", status=vocabulary.StageStatus("SUCCESS")
        ),
        DeploymentRollingBack(deployment_id=D, application_id="app1"),
        DeploymentCompleted(
            deployment_id=D, application_id="app1", status=vocabulary.DeploymentStatus("SUCCESS")
        ),
        DeploymentQueued(deployment_id=D, application_id="app1", behind_deployment_id="d0"),
    ]
    after = state_of([*events, *late])
    assert msgspec.structs.replace(after, version=done.version, queued_behind=None) == done
    assert (after.status, after.reason, after.rolled_back) == (DeploymentStatus.FAILURE, "x", True)


def test_the_reason_is_the_plans_until_the_completion_gives_one() -> None:
    """`reason`: why it was planned so, then why it completed (kept if the completion says none)."""
    assert state_of(RUNNING).reason == "the pod template changed"
    quiet = DeploymentCompleted(
        deployment_id=D, application_id="app1", status=vocabulary.DeploymentStatus("SUCCESS")
    )
    assert state_of([*RUNNING, quiet]).reason == "the pod template changed"
    said = msgspec.structs.replace(quiet, reason="The deployment was completed successfully")
    assert state_of([*RUNNING, said]).reason == "The deployment was completed successfully"


def test_the_first_cancel_and_skip_requests_stand_and_approvals_count_once() -> None:
    """Requests folded: who asked first is kept; the same approver is listed once."""
    state = state_of(
        [
            *RUNNING,
            DeploymentCancelRequested(deployment_id=D, with_rollback=False, commander="bob"),
            DeploymentCancelRequested(deployment_id=D, with_rollback=True, commander="cy"),
            StageSkipRequested(deployment_id=D, stage_id="stage-0", commander="ann"),
            StageSkipRequested(deployment_id=D, stage_id="stage-0", commander="cy"),
            StageApproved(deployment_id=D, stage_id="stage-0", approver="alice"),
            StageApproved(deployment_id=D, stage_id="stage-0", approver="alice"),
        ]
    )
    assert state.cancel == deployments.CancelRequest(with_rollback=False, commander="bob")
    assert (state.cancel_requested, state.cancel_with_rollback) == (True, False)
    stage = stage_of(state, "stage-0")
    assert (stage.skip_requested_by, stage.approvers) == ("ann", ("alice",))
    assert state_of(RUNNING).cancel is None


def test_the_view_encodes_with_the_apis_field_names() -> None:
    """As JSON a stage's id is `stage_id` and statuses are their names (the API's wire)."""
    encoded = msgspec.to_builtins(state_of(RUNNING))
    assert encoded["status"] == "RUNNING" and encoded["cancel_requested"] is False
    first = encoded["stages"][0]
    assert (first["stage_id"], first["status"], first["visible"]) == (
        "stage-0",
        "RUNNING",
        True,
    )
    assert "id" not in first


# People's requests ------------------------------------------------------------------------

Request = Callable[[Deployment], list[Event]]


def cancel(d: Deployment) -> list[Event]:
    return deployments.request_cancel(d, with_rollback=True, commander="alice")


def approve(stage_id: str, who: str = "alice") -> Request:
    return lambda d: deployments.approve(d, stage_id, approver=who)


def skip(stage_id: str, who: str = "alice", *, admin: bool = False) -> Request:
    return lambda d: deployments.request_skip(d, stage_id, commander=who, admin=admin)


COMPLETED_0 = StageCompleted(
    deployment_id=D, stage_id="stage-0", status=vocabulary.StageStatus("SUCCESS")
)
ROLLING_BACK = DeploymentRollingBack(deployment_id=D, application_id="app1")
FAILED = DeploymentCompleted(
    deployment_id=D, application_id="app1", status=vocabulary.DeploymentStatus("FAILURE")
)


@pytest.mark.parametrize(
    ("history", "request_", "expected"),
    [
        ([], cancel, [DeploymentCancelRequested(deployment_id=D, commander="alice")]),
        ([], approve("stage-0"),
         [StageApproved(deployment_id=D, stage_id="stage-0", approver="alice")]),
        ([], skip("stage-2"),
         [StageSkipRequested(deployment_id=D, stage_id="stage-2", commander="alice")]),
        ([DeploymentCancelRequested(deployment_id=D)], cancel, []),
        ([StageSkipRequested(deployment_id=D, stage_id="stage-2")], skip("stage-2"), []),
        ([], approve("stage-1"), "deployment d1 has no WAIT_APPROVAL stage 'stage-1'"),
        ([], approve("stage-0", "bob"), "bob may not approve stage stage-0 (approvers: alice)"),
        # Skipping an approval needs what approving needs: a listed approver, or admin.
        ([], skip("stage-0", "bob"), "bob may not skip stage stage-0 (approvers: alice)"),
        ([], skip("stage-0", "root", admin=True),
         [StageSkipRequested(deployment_id=D, stage_id="stage-0", commander="root")]),
        ([], skip("stage-0"),
         [StageSkipRequested(deployment_id=D, stage_id="stage-0", commander="alice")]),
        ([], skip("stage-2", "bob"),
         [StageSkipRequested(deployment_id=D, stage_id="stage-2", commander="bob")]),
        ([StageApproved(deployment_id=D, stage_id="stage-0", approver="alice")],
         approve("stage-0"), "alice has already approved stage stage-0"),
        ([COMPLETED_0], approve("stage-0"),
         "stage stage-0 is not waiting for approval (SUCCESS)"),
        ([], skip("stage-1"), "stage stage-1 (K8S_PRIMARY_ROLLOUT) cannot be skipped; only "
         "ANALYSIS, WAIT, WAIT_APPROVAL stages can"),
        ([], skip("stage-3"), "deployment d1 has no stage 'stage-3'"),
        ([], skip("nope"), "deployment d1 has no stage 'nope'"),
        ([COMPLETED_0], skip("stage-0"), "stage stage-0 has already ended (SUCCESS)"),
        ([ROLLING_BACK], skip("stage-2"), "stage stage-2 has already ended (NOT_STARTED_YET)"),
        ([ROLLING_BACK], cancel, "deployment d1 is rolling back; it cannot be cancelled"),
        ([FAILED], cancel, "deployment d1 has already completed (FAILURE)"),
    ],
)  # fmt: skip
def test_a_request_gives_its_event_nothing_or_a_refusal_with_the_reason(
    history: list[Event], request_: Request, expected: list[Event] | str
) -> None:
    """Each request on a running deployment: the event to append, [] if it stands, or why not."""
    state = state_of([*RUNNING, *history])
    if isinstance(expected, str):
        with pytest.raises(Rejected) as refused:
            request_(state)
        assert str(refused.value) == expected
    else:
        assert request_(state) == expected


def test_malformed_approval_options_let_anyone_approve() -> None:
    """Options that do not decode restrict no one: the approval is recorded (the stage fails)."""
    stages = (
        PlannedStage(
            id="s0",
            name=vocabulary.StageName("WAIT_APPROVAL"),
            index=0,
            options_json='{"approvers": ["alice"], "timeout": "soon"}',
        ),
    )
    assert isinstance(RUNNING[1], DeploymentPlanned)
    plan = msgspec.structs.replace(RUNNING[1], stages=stages)
    start = StageStarted(deployment_id=D, stage_id="s0", started_at=T0)
    state = state_of([RUNNING[0], plan, RUNNING[2], start])
    assert deployments.approve(state, "s0", approver="zed") == [
        StageApproved(deployment_id=D, stage_id="s0", approver="zed")
    ]


def test_a_waiting_approval_says_who_may_approve_and_how_many_approvals_are_missing() -> None:
    """allowed_approvers comes from the stage's options; approvals_needed counts down with
    listed approvers' approvals only, to 0; other stages carry neither."""
    two = PlannedStage(
        id="stage-0",
        name=vocabulary.StageName("WAIT_APPROVAL"),
        index=0,
        options_json='{"approvers": ["alice", "bob"], "minApproverNum": 2}',
    )
    planned = msgspec.structs.replace(RUNNING[1], stages=(two, *STAGES[1:]))
    events: list[Event] = [RUNNING[0], planned, *RUNNING[2:]]
    stage = stage_of(state_of(events), "stage-0")
    assert (stage.allowed_approvers, stage.approvals_needed) == (("alice", "bob"), 2)
    events.append(StageApproved(deployment_id=D, stage_id="stage-0", approver="mallory"))
    assert stage_of(state_of(events), "stage-0").approvals_needed == 2
    events.append(StageApproved(deployment_id=D, stage_id="stage-0", approver="alice"))
    assert stage_of(state_of(events), "stage-0").approvals_needed == 1
    events.append(StageApproved(deployment_id=D, stage_id="stage-0", approver="bob"))
    assert stage_of(state_of(events), "stage-0").approvals_needed == 0
    rollout = stage_of(state_of(events), "stage-1")
    assert (rollout.allowed_approvers, rollout.approvals_needed) == ((), 0)


def test_a_stage_is_found_by_its_id_or_its_unique_name() -> None:
    """find_stage takes an id, or a name in any case when one visible stage has it; a name
    two stages share is refused naming both."""
    state = state_of(RUNNING)
    assert deployments.find_stage(state, "stage-2").name == "ANALYSIS"
    assert deployments.find_stage(state, "wait_approval").id == "stage-0"
    with pytest.raises(Rejected, match="has no stage 'ROLLBACK'"):
        deployments.find_stage(state, "ROLLBACK")  # hidden stages go by id only
    waits = (
        PlannedStage(id="stage-0", name=vocabulary.StageName("WAIT"), index=0),
        PlannedStage(id="stage-1", name=vocabulary.StageName("WAIT"), index=1),
    )
    planned = msgspec.structs.replace(RUNNING[1], stages=waits)
    with pytest.raises(Rejected, match=r"has 2 WAIT stages \(stage-0, stage-1\)"):
        deployments.find_stage(state_of([RUNNING[0], planned]), "WAIT")


# Long pipelines ---------------------------------------------------------------------------


class CountedId(str):
    """A stage id that counts how often it is compared: the fold's work on stages."""

    comparisons = 0

    def __eq__(self, other: object) -> bool:
        CountedId.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_folding_a_long_pipeline_does_work_linear_in_its_events() -> None:
    """Each stage event finds its stage by id without scanning the others: a 2,000-stage
    deployment's stream (4,000 stage events) folds with a few comparisons per event, not
    with one per stage per event (which took seconds to read a long deployment)."""
    n = 2_000
    planned = msgspec.structs.replace(
        RUNNING[1],
        stages=tuple(
            PlannedStage(id=CountedId(f"wait-{i}"), name=vocabulary.StageName("WAIT"), index=i)
            for i in range(n)
        ),
    )
    events: list[Event] = [RUNNING[0], planned, RUNNING[2]]
    for i in range(n):
        events += [
            StageStarted(deployment_id=D, stage_id=f"wait-{i}", started_at=T0),
            StageCompleted(
                deployment_id=D, stage_id=f"wait-{i}", status=StageStatus.SUCCESS, completed_at=T0
            ),
        ]
    for fold in (state_of, lambda es: deployments.fold_history(D, recorded(es))):
        CountedId.comparisons = 0
        state = fold(events)
        assert state is not None
        assert all(s.status is StageStatus.SUCCESS for s in state.stages)
        assert CountedId.comparisons <= 4 * len(events), CountedId.comparisons


def step_by_step(events: Sequence[Event]) -> Deployment:
    """The fold's definition: `evolve` one event at a time."""
    state = deployments.INITIAL
    for version, event in enumerate(events):
        state = msgspec.structs.replace(deployments.evolve(state, event), version=version)
    return state


def test_the_linear_fold_gives_what_evolve_one_event_at_a_time_gives() -> None:
    """Duplicate stage ids (every stage with the id changes), unknown ids, repeated and late
    events, approvals, skips, a second plan: the fold agrees with `evolve` after every event."""
    dup = (*STAGES, PlannedStage(id="stage-1", name=vocabulary.StageName("WAIT"), index=4))
    events: list[Event] = [
        RUNNING[0],
        msgspec.structs.replace(RUNNING[1], stages=dup),
        RUNNING[2],
        StageStarted(deployment_id=D, stage_id="stage-0", started_at=T0),
        StageApproved(deployment_id=D, stage_id="stage-0", approver="bob"),
        StageApproved(deployment_id=D, stage_id="stage-0", approver="alice"),
        StageApproved(deployment_id=D, stage_id="stage-0", approver="alice"),
        StageStarted(deployment_id=D, stage_id="nope", started_at=T0),
        RUNNING[1],  # planned again: changes nothing
        StageCompleted(deployment_id=D, stage_id="stage-0", status=StageStatus.SUCCESS),
        StageStarted(deployment_id=D, stage_id="stage-1", started_at=T0 + timedelta(seconds=1)),
        StageSkipRequested(deployment_id=D, stage_id="stage-2", commander="carol"),
        StageSkipRequested(deployment_id=D, stage_id="stage-2", commander="dave"),
        StageCompleted(deployment_id=D, stage_id="stage-1", status=StageStatus.FAILURE),
        StageStarted(deployment_id=D, stage_id="stage-1", started_at=T0),
        DeploymentRollingBack(deployment_id=D, application_id="app1"),
        StageStarted(deployment_id=D, stage_id="stage-3", started_at=T0),
        DeploymentCancelRequested(deployment_id=D, with_rollback=True, commander="erin"),
        DeploymentCompleted(
            deployment_id=D, application_id="app1", status=DeploymentStatus.FAILURE
        ),
        StageCompleted(deployment_id=D, stage_id="stage-3", status=StageStatus.SUCCESS),
    ]
    for end in range(len(events) + 1):
        assert state_of(events[:end]) == step_by_step(events[:end]), end
    folded = state_of(events)
    assert [s.status for s in folded.stages] == [
        StageStatus.SUCCESS,
        StageStatus.FAILURE,
        StageStatus.NOT_STARTED_YET,
        StageStatus.SUCCESS,
        StageStatus.FAILURE,
    ]
    assert folded.stages[0].approvers == ("bob", "alice")
    assert folded.stages[2].skip_requested_by == "carol"
