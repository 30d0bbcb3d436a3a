"""The executor's decider as a state machine (Hypothesis): whatever commands arrive in
whatever order, a deployment's lifecycle keeps its invariants ("a failed deployment never
starts a stage"). The example-based tests are tests/unit/test_executor_decider.py."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from services.executor.decider import (
    Abort,
    Advance,
    Approve,
    Command,
    Deployment,
    DeploymentStatus,
    RequestCancel,
    RequestSkip,
    StageFinished,
    StageStatus,
    Start,
    decide,
    work_of,
)
from shared.errors import Rejected
from shared.events.base import Event
from shared.events.catalog import (
    DeploymentCompleted,
    DeploymentRollingBack,
    PlannedStage,
    StageCompleted,
    StageStarted,
)
from tests.support.deployments import ROLLBACK, T0, planned, stage, state_of

_NAMES = ("K8S_SYNC", "WAIT", "WAIT_APPROVAL", "K8S_CANARY_ROLLOUT", "ANALYSIS")


@st.composite
def plans(draw: st.DrawFn) -> list[PlannedStage]:
    names = draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=5))
    out = []
    for i, name in enumerate(names):
        options: dict[str, object] = {}
        if name == "WAIT":
            options = {"duration": f"{draw(st.integers(0, 50))}s"}
        if name == "WAIT_APPROVAL":
            options = {"timeout": "90s", "minApproverNum": draw(st.integers(1, 2))}
        timeout = draw(st.sampled_from([0.0, 0.0, 40.0]))
        out.append(stage(f"s{i}", name, i, options, timeout_s=timeout))
    if draw(st.booleans()):
        out.append(ROLLBACK)
    return out


class DeploymentMachine(RuleBasedStateMachine):
    """Random commands against the decider; the log it builds must obey the lifecycle."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self.now = T0
        self.started: set[str] = set()
        self.failed_forward = False

    @property
    def state(self) -> Deployment:
        return state_of(self.events)

    def apply(self, command: Command) -> None:
        before = self.state
        try:
            new = decide(before, command, self.now)
        except Rejected:
            return
        for event in new:
            self.check(event)
            self.events.append(event)
        self.check_forward(before, self.state)

    def check(self, event: Event) -> None:
        state = self.state
        assert not state.completed, f"{event!r} decided after completion"
        if isinstance(event, StageStarted):
            stage = state.stage(event.stage_id)
            assert stage is not None
            # A completed stage is never run again; no stage starts twice.
            assert event.stage_id not in self.started, f"{event.stage_id} started twice"
            self.started.add(event.stage_id)
            # A failed deployment never starts a (pipeline) stage; only rollback ones.
            if self.failed_forward:
                assert not stage.visible, f"{stage.id} started after the deployment failed"
            assert state.running_stage is None, "two stages running at once"
        if isinstance(event, StageCompleted) and event.status in ("FAILURE", "CANCELLED"):
            stage = state.stage(event.stage_id)
            if stage is not None and stage.visible:
                self.failed_forward = True
        if isinstance(event, DeploymentRollingBack):
            self.failed_forward = True

    @staticmethod
    def check_forward(before: Deployment, after: Deployment) -> None:
        order = list(DeploymentStatus)
        assert order.index(after.status) >= order.index(before.status) or (
            before.completed and after.status is before.status
        )
        for old, new in zip(before.stages, after.stages, strict=True):
            if old.completed:
                assert new == old, f"completed stage {old.id} changed"

    @rule(stages=plans())
    @precondition(lambda self: not self.events)
    def plan(self, stages: list[PlannedStage]) -> None:
        self.events += planned(stages)

    @rule()
    @precondition(lambda self: bool(self.events))
    def start(self) -> None:
        self.apply(Start(timeout_s=300))

    @rule(seconds=st.integers(0, 60))
    @precondition(lambda self: bool(self.events))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self.apply(Advance())

    @rule(status=st.sampled_from([StageStatus.SUCCESS, StageStatus.FAILURE, StageStatus.EXITED]))
    @precondition(lambda self: bool(self.events))
    def work_returns(self, status: StageStatus) -> None:
        work = work_of(self.state)
        if work is not None:
            self.apply(StageFinished(work.id, status, "done"))

    @rule(stage_index=st.integers(0, 5), status=st.sampled_from(list(StageStatus)))
    @precondition(lambda self: bool(self.events))
    def stale_report(self, stage_index: int, status: StageStatus) -> None:
        if status in (StageStatus.NOT_STARTED_YET, StageStatus.RUNNING):
            return
        self.apply(StageFinished(f"s{stage_index}", status))

    @rule(with_rollback=st.booleans())
    @precondition(lambda self: bool(self.events))
    def cancel(self, with_rollback: bool) -> None:
        self.apply(RequestCancel(with_rollback=with_rollback, commander="bob"))

    @rule(who=st.sampled_from(["ann", "bob"]))
    @precondition(lambda self: bool(self.events))
    def approve(self, who: str) -> None:
        running = self.state.running_stage
        if running is not None:
            self.apply(Approve(running.id, who))

    @rule(stage_index=st.integers(0, 5))
    @precondition(lambda self: bool(self.events))
    def skip(self, stage_index: int) -> None:
        self.apply(RequestSkip(f"s{stage_index}", "ann"))

    @rule()
    @precondition(lambda self: bool(self.events))
    def abort(self) -> None:
        self.apply(Abort("lost the cluster"))

    @invariant()
    def replay_gives_the_same_state(self) -> None:
        """Folding the log again gives the same deployment (decide is deterministic)."""
        assert state_of(list(self.events)) == self.state

    @invariant()
    def completion_is_final(self) -> None:
        completed = [e for e in self.events if isinstance(e, DeploymentCompleted)]
        assert len(completed) <= 1
        if completed:
            assert self.events[-1] is completed[0]

    def teardown(self) -> None:
        """Driven on (work succeeds, time passes), every deployment completes."""
        if not self.events:
            return
        self.apply(Start())
        for _ in range(60):
            if self.state.completed:
                return
            work = work_of(self.state)
            if work is not None:
                self.apply(StageFinished(work.id, StageStatus.SUCCESS))
            else:
                self.now += timedelta(seconds=100)
                self.apply(Advance())
        raise AssertionError(f"never completed: {self.state}")


DeploymentMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDeploymentLifecycle = DeploymentMachine.TestCase
