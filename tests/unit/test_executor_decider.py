"""The executor's pure core: given events, when a command, then events (or Rejected)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import pytest

from services.executor.decider import (
    Abort,
    Advance,
    Approve,
    Command,
    DeploymentStatus,
    RequestCancel,
    RequestSkip,
    StageFinished,
    StageStatus,
    Start,
    decide,
    next_deadline,
    work_of,
)
from shared.deployments import INITIAL, evolve
from shared.errors import Rejected
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    DeploymentCancelRequested,
    DeploymentCompleted,
    DeploymentRollingBack,
    DeploymentStarted,
    PlannedStage,
    StageApproved,
    StageCompleted,
    StageSkipRequested,
    StageStarted,
)
from tests.support.deployments import CANARY, ROLLBACK, T0, D, at, planned, stage, state_of


def run(events: list[Event], command: Command, now: datetime) -> list[Event]:
    """Decide on the events so far, and record what was decided."""
    new = decide(state_of(events), command, now)
    events += new
    return new


def kinds(events: Sequence[Event]) -> list[str]:
    out = []
    for e in events:
        match e:
            case StageStarted():
                out.append(f"start {e.stage_id}")
            case StageCompleted():
                out.append(f"{e.status} {e.stage_id}")
            case DeploymentCompleted():
                out.append(f"deployment {e.status}")
            case _:
                out.append(type(e).__name__)
    return out


# The lifecycle ----------------------------------------------------------------------------


def test_start_runs_the_first_stage_and_records_the_timeout() -> None:
    """Start on a planned deployment: DeploymentStarted, then the first visible stage starts."""
    events = planned()
    new = run(events, Start(timeout_s=600, executor="x1"), T0)
    assert kinds(new) == ["DeploymentStarted", "start s0"]
    state = state_of(events)
    assert state.status is DeploymentStatus.RUNNING
    assert (state.started_at, state.timeout_s, state.version) == (T0, 600, 3)
    work = work_of(state)
    assert work is not None and work.id == "s0"
    assert isinstance(new[1], StageStarted) and new[1].started_at == T0


def test_a_happy_pipeline_runs_each_stage_once_and_succeeds() -> None:
    """Canary → WAIT 30 s → primary → clean: success, and the hidden ROLLBACK never runs."""
    events = planned()
    run(events, Start(), T0)
    assert kinds(run(events, StageFinished("s0", StageStatus.SUCCESS), at(1))) == [
        "SUCCESS s0",
        "start s1",
    ]
    assert work_of(state_of(events)) is None  # a WAIT is the clock's, not work
    assert next_deadline(state_of(events)) == at(31)
    assert run(events, Advance(), at(30)) == []
    assert kinds(run(events, Advance(), at(31))) == ["SUCCESS s1", "start s2"]
    run(events, StageFinished("s2", StageStatus.SUCCESS), at(40))
    new = run(events, StageFinished("s3", StageStatus.SUCCESS), at(41))
    assert kinds(new) == ["SUCCESS s3", "deployment SUCCESS"]
    assert isinstance(new[-1], DeploymentCompleted) and new[-1].commit_hash == "c" * 40
    state = state_of(events)
    assert state.status is DeploymentStatus.SUCCESS
    assert state.stage("Rollback") is not None
    assert state.stage("Rollback").status is StageStatus.NOT_STARTED_YET  # type: ignore[union-attr]


def test_wait_resumes_with_the_time_left_after_a_restart() -> None:
    """A WAIT started before a restart ends at started_at + duration, not a full wait later."""
    events = planned()
    run(events, Start(), T0)
    run(events, StageFinished("s0", StageStatus.SUCCESS), at(10))
    # "Restart": a fresh fold of the same events, 25 s later.
    state = state_of(events)
    assert next_deadline(state) == at(40)
    assert decide(state, Advance(), at(39)) == []
    assert kinds(decide(state, Advance(), at(40))) == ["SUCCESS s1", "start s2"]


def test_failure_runs_the_hidden_rollback_then_completes_as_failure() -> None:
    """A failed stage: ROLLING_BACK, the ROLLBACK stage runs, then FAILURE with the reason."""
    events = planned()
    run(events, Start(), T0)
    new = run(events, StageFinished("s0", StageStatus.FAILURE, "image pull failed"), at(5))
    assert kinds(new) == ["FAILURE s0", "DeploymentRollingBack", "start Rollback"]
    assert state_of(events).status is DeploymentStatus.ROLLING_BACK
    assert work_of(state_of(events)).id == "Rollback"  # type: ignore[union-attr]
    new = run(events, StageFinished("Rollback", StageStatus.SUCCESS), at(9))
    assert kinds(new) == ["SUCCESS Rollback", "deployment FAILURE"]
    assert isinstance(new[-1], DeploymentCompleted)
    assert new[-1].reason == "Failed while executing stage s0: image pull failed"


def test_failure_without_a_rollback_stage_completes_at_once() -> None:
    """No hidden ROLLBACK (autoRollback off): a failure completes the deployment directly."""
    events = planned(CANARY[:-1])
    run(events, Start(), T0)
    new = run(events, StageFinished("s0", StageStatus.FAILURE, "boom"), at(5))
    assert kinds(new) == ["FAILURE s0", "deployment FAILURE"]


def test_cancel_with_rollback_cancels_the_stage_and_rolls_back() -> None:
    """Cancel with rollback: the running stage is CANCELLED, ROLLBACK runs, status CANCELLED."""
    events = planned()
    run(events, Start(), T0)
    assert kinds(run(events, RequestCancel(with_rollback=True, commander="bob"), at(3))) == [
        "DeploymentCancelRequested"
    ]
    new = run(events, Advance(), at(3))
    assert kinds(new) == ["CANCELLED s0", "DeploymentRollingBack", "start Rollback"]
    # The canary's work returning after the cancel is stale and changes nothing.
    assert run(events, StageFinished("s0", StageStatus.SUCCESS), at(4)) == []
    new = run(events, StageFinished("Rollback", StageStatus.SUCCESS), at(6))
    assert kinds(new) == ["SUCCESS Rollback", "deployment CANCELLED"]
    assert isinstance(new[-1], DeploymentCompleted)
    assert new[-1].reason == "Cancelled by bob while executing stage s0"


def test_cancel_without_rollback_completes_without_running_rollback() -> None:
    """Cancel without rollback: the running stage is CANCELLED and the deployment is done."""
    events = planned()
    run(events, Start(), T0)
    run(events, RequestCancel(with_rollback=False, commander="bob"), at(3))
    assert kinds(run(events, Advance(), at(3))) == ["CANCELLED s0", "deployment CANCELLED"]


def test_cancel_before_start_completes_as_cancelled() -> None:
    """A deployment cancelled before it started ends CANCELLED without starting anything."""
    events = planned()
    run(events, RequestCancel(commander="bob"), T0)
    assert kinds(run(events, Start(), at(1))) == ["deployment CANCELLED"]


def test_cancel_is_refused_once_completed_or_rolling_back() -> None:
    """Cancelling a completed or rolling-back deployment is Rejected; asking twice is a no-op."""
    events = planned()
    run(events, Start(), T0)
    run(events, RequestCancel(commander="a"), at(1))
    assert run(events, RequestCancel(commander="b"), at(1)) == []
    run(events, Advance(), at(1))
    with pytest.raises(Rejected, match="rolling back"):
        decide(state_of(events), RequestCancel(), at(2))
    run(events, StageFinished("Rollback", StageStatus.SUCCESS), at(3))
    with pytest.raises(Rejected, match="already completed"):
        decide(state_of(events), RequestCancel(), at(4))


def test_stage_timeout_fails_the_stage() -> None:
    """A stage running past its timeout fails with a reason naming it; rollback follows."""
    events = planned([stage("s0", "K8S_SYNC", 0, timeout_s=60.0), ROLLBACK])
    run(events, Start(), T0)
    assert next_deadline(state_of(events)) == at(60)
    assert run(events, Advance(), at(59)) == []
    new = run(events, Advance(), at(60))
    assert kinds(new) == ["FAILURE s0", "DeploymentRollingBack", "start Rollback"]
    assert isinstance(new[0], StageCompleted)
    assert new[0].reason == "Timed out while executing stage s0 (60 s)"


def test_deployment_timeout_fails_the_running_stage() -> None:
    """The deployment's own timeout fails whatever stage is running when it passes."""
    events = planned()
    run(events, Start(timeout_s=20), T0)
    run(events, StageFinished("s0", StageStatus.SUCCESS), at(1))
    assert next_deadline(state_of(events)) == at(20)  # before the WAIT's 31 s
    new = run(events, Advance(), at(20))
    assert kinds(new) == ["FAILURE s1", "DeploymentRollingBack", "start Rollback"]
    # The rollback is not cut short by the deployment's timeout.
    assert next_deadline(state_of(events)) is None


APPROVAL = (stage("s0", "WAIT_APPROVAL", 0, {"approvers": ["ann", "bob"], "minApproverNum": 2}),)


def test_approval_needs_min_approvers_from_the_list() -> None:
    """WAIT_APPROVAL ends after minApproverNum distinct listed approvers; others are Rejected."""
    events = planned(APPROVAL)
    run(events, Start(), T0)
    with pytest.raises(Rejected, match="eve may not approve"):
        decide(state_of(events), Approve("s0", "eve"), at(1))
    assert kinds(run(events, Approve("s0", "ann"), at(1))) == ["StageApproved"]
    assert run(events, Advance(), at(1)) == []
    with pytest.raises(Rejected, match="already approved"):
        decide(state_of(events), Approve("s0", "ann"), at(2))
    run(events, Approve("s0", "bob"), at(2))
    new = run(events, Advance(), at(2))
    assert kinds(new) == ["SUCCESS s0", "deployment SUCCESS"]
    assert isinstance(new[0], StageCompleted) and new[0].reason == "Approved by ann, bob"


def test_approval_times_out() -> None:
    """A WAIT_APPROVAL nobody approves fails when its `timeout` passes."""
    events = planned([stage("s0", "WAIT_APPROVAL", 0, {"timeout": "1m"})])
    run(events, Start(), T0)
    assert next_deadline(state_of(events)) == at(60)
    new = run(events, Advance(), at(60))
    assert kinds(new) == ["FAILURE s0", "deployment FAILURE"]


def test_approve_refuses_other_stages() -> None:
    """Approving a stage that is not a running WAIT_APPROVAL is Rejected."""
    events = planned()
    run(events, Start(), T0)
    with pytest.raises(Rejected, match="no WAIT_APPROVAL stage"):
        decide(state_of(events), Approve("s0", "ann"), at(1))


def test_skip_ends_a_wait_and_refuses_k8s_stages() -> None:
    """A skip request ends a running WAIT as SKIPPED; skipping a K8S stage is Rejected."""
    events = planned()
    run(events, Start(), T0)
    with pytest.raises(Rejected, match="cannot be skipped"):
        decide(state_of(events), RequestSkip("s0"), at(1))
    run(events, StageFinished("s0", StageStatus.SUCCESS), at(1))
    assert kinds(run(events, RequestSkip("s1", "ann"), at(2))) == ["StageSkipRequested"]
    assert kinds(run(events, Advance(), at(2))) == ["SKIPPED s1", "start s2"]


def test_skip_requested_before_a_stage_starts_skips_it_without_starting() -> None:
    """A stage asked to be skipped before it began is SKIPPED when its turn comes, never started."""
    events = planned()
    run(events, Start(), T0)
    run(events, RequestSkip("s1", "ann"), at(1))
    new = run(events, StageFinished("s0", StageStatus.SUCCESS), at(2))
    assert kinds(new) == ["SUCCESS s0", "SKIPPED s1", "start s2"]


def test_exited_stage_completes_the_deployment_as_success() -> None:
    """A stage that EXITED ends the pipeline early with SUCCESS and no rollback."""
    events = planned()
    run(events, Start(), T0)
    new = run(events, StageFinished("s0", StageStatus.EXITED, "nothing to do"), at(1))
    assert kinds(new) == ["EXITED s0", "deployment SUCCESS"]


def test_abort_fails_the_running_stage_or_the_planned_deployment() -> None:
    """Abort: the running stage fails (and rolls back); a planned one completes as FAILURE."""
    events = planned()
    assert kinds(run(events, Abort("config broken"), T0)) == ["deployment FAILURE"]
    events = planned()
    run(events, Start(), T0)
    new = run(events, Abort("lost"), at(1))
    assert kinds(new) == ["FAILURE s0", "DeploymentRollingBack", "start Rollback"]


def test_script_run_rollback_runs_only_if_its_script_ran() -> None:
    """A hidden SCRIPT_RUN_ROLLBACK runs after ROLLBACK only when its SCRIPT_RUN stage started."""
    script_rb = PlannedStage(
        id="ScriptRunRollback-s1",
        name=vocabulary.StageName("SCRIPT_RUN_ROLLBACK"),
        index=10,
        options_json=json.dumps({"baseStageId": "s1"}),
        visible=False,
    )
    stages = [stage("s0", "K8S_SYNC", 0), stage("s1", "SCRIPT_RUN", 1), ROLLBACK, script_rb]
    events = planned(stages)
    run(events, Start(), T0)
    run(events, StageFinished("s0", StageStatus.FAILURE), at(1))
    new = run(events, StageFinished("Rollback", StageStatus.SUCCESS), at(2))
    assert kinds(new) == ["SUCCESS Rollback", "deployment FAILURE"]
    events = planned(stages)
    run(events, Start(), T0)
    run(events, StageFinished("s0", StageStatus.SUCCESS), at(1))
    run(events, StageFinished("s1", StageStatus.FAILURE), at(2))
    new = run(events, StageFinished("Rollback", StageStatus.FAILURE), at(3))
    assert kinds(new) == ["FAILURE Rollback", "start ScriptRunRollback-s1"]


def test_evolve_is_forward_only_and_ignores_duplicates() -> None:
    """A late or repeated event never moves a status back or re-runs a completed stage."""
    events = planned()
    run(events, Start(), T0)
    run(events, StageFinished("s0", StageStatus.SUCCESS), at(1))
    state = state_of(events)
    again = evolve(state, StageStarted(deployment_id=D, stage_id="s0", started_at=at(2)))
    assert again.stage("s0") == state.stage("s0")
    assert evolve(state, events[1]).status is DeploymentStatus.RUNNING  # a replayed plan
    done = evolve(
        state,
        DeploymentCompleted(
            deployment_id=D, application_id="app", status=vocabulary.DeploymentStatus("SUCCESS")
        ),
    )
    assert evolve(done, DeploymentRollingBack(deployment_id=D, application_id="app")).status is (
        DeploymentStatus.SUCCESS
    )


def test_nothing_happens_to_a_pending_deployment() -> None:
    """Before its plan, the executor neither starts nor advances a deployment."""
    assert decide(INITIAL, Start(), T0) == []
    assert decide(state_of(planned()[:1]), Advance(), T0) == []


# Properties -------------------------------------------------------------------------------


def test_requests_record_who_asked() -> None:
    """Cancel, approve and skip requests carry the commander or approver into the log."""
    events = planned(APPROVAL)
    run(events, Start(), T0)
    assert run(events, Approve("s0", "ann"), T0) == [
        StageApproved(deployment_id=D, stage_id="s0", approver="ann")
    ]
    assert run(events, RequestSkip("s0", "bob"), T0) == [
        StageSkipRequested(deployment_id=D, stage_id="s0", commander="bob")
    ]
    assert run(events, RequestCancel(False, "cy"), T0) == [
        DeploymentCancelRequested(deployment_id=D, with_rollback=False, commander="cy")
    ]
    assert isinstance(events[2], DeploymentStarted)
