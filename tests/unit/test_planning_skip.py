"""`skipOn`: PipeCD's rule (`controller/skipstage.go`), and the executor skipping what it says."""

from __future__ import annotations

import msgspec
import pytest

from services.executor.decider import StageFinished, Start, decide
from shared.events.catalog import DeploymentPlanned, StageCompleted, StageStarted
from shared.events.vocabulary import StageStatus
from shared.planning.skip import skip_reason, skipped_stages, uses_skip_on
from shared.planning.spec import PlanningSpec, StageSpec
from tests.support.deployments import CANARY, T0, at, planned, state_of

DOCS = {"skipOn": {"paths": ["docs/**", "**/*.md", "!docs/release-notes.md"]}}
PREFIX = {"skipOn": {"commitMessagePrefixes": ["[skip analysis]", "chore:"]}}


@pytest.mark.parametrize(
    ("options", "message", "changed", "skipped"),
    [
        (PREFIX, "chore: bump linter", ["web/deploy.yaml"], True),
        (PREFIX, "feat: chore: later in the message", ["web/deploy.yaml"], False),
        (PREFIX, "", None, False),
        (DOCS, "docs", ["docs/a.txt", "web/README.md"], True),  # every file matches
        (DOCS, "docs", ["docs/a.txt", "web/deploy.yaml"], False),  # one does not
        (DOCS, "docs", ["docs/release-notes.md"], False),  # excluded by "!…"
        (DOCS, "nothing", [], True),  # PipeCD: no changed file, nothing to disprove
        (DOCS, "first", None, False),  # no running commit: paths cannot skip
        ({}, "chore: x", ["a"], False),
    ],
)
def test_skip_on_follows_pipecd(
    options: dict[str, object], message: str, changed: list[str] | None, skipped: bool
) -> None:
    reason = skip_reason(options, commit_message=message, changed_paths=changed)
    assert bool(reason) is skipped, reason


def test_the_reason_says_which_condition_matched() -> None:
    assert skip_reason(PREFIX, commit_message="chore: x", changed_paths=None) == (
        "Skipped by skipOn.commitMessagePrefixes: the commit message starts with 'chore:'"
    )
    assert skip_reason(DOCS, commit_message="", changed_paths=["docs/x"]).startswith(
        "Skipped by skipOn.paths: all 1 changed file(s) match docs/**"
    )


def test_only_the_four_pipecd_stage_kinds_skip_and_by_their_own_options() -> None:
    """WAIT/WAIT_APPROVAL/ANALYSIS/SCRIPT_RUN skip; a K8S stage's `skipOn` means nothing."""
    spec = PlanningSpec(
        stages=(
            StageSpec(name="K8S_CANARY_ROLLOUT", id="", desc="", timeout_s=0, options=PREFIX),
            StageSpec(name="WAIT", id="", desc="", timeout_s=0, options=PREFIX),
            StageSpec(name="K8S_PRIMARY_ROLLOUT", id="", desc="", timeout_s=0, options={}),
            StageSpec(name="K8S_CANARY_CLEAN", id="", desc="", timeout_s=0, options={}),
        )
    )
    assert uses_skip_on(spec)
    assert not uses_skip_on(PlanningSpec(stages=spec.stages[2:]))
    planned_stages = tuple(
        msgspec.structs.replace(s, id=f"stage-{s.index}") for s in CANARY[:4]
    )  # the ids the planner gives stages without one
    ids = skipped_stages(
        planned_stages, spec, commit_message="chore: tidy", changed_paths=["web/deploy.yaml"]
    )
    assert list(ids) == ["stage-1"]


def test_the_executor_records_a_skipped_stage_without_starting_it() -> None:
    """The plan says s1 (WAIT) is skipped: after s0, s1 is SKIPPED with the reason, s2 starts."""
    events = planned()
    plan = events[1]
    assert isinstance(plan, DeploymentPlanned)
    events[1] = msgspec.structs.replace(plan, skipped={"s1": "Skipped by skipOn.paths: …"})
    events += decide(state_of(events), Start(), T0)
    new = decide(state_of(events), StageFinished("s0", StageStatus.SUCCESS), at(1))
    assert [type(e).__name__ for e in new] == ["StageCompleted", "StageCompleted", "StageStarted"]
    skipped = new[1]
    assert isinstance(skipped, StageCompleted)
    assert (skipped.stage_id, skipped.status) == ("s1", StageStatus.SKIPPED)
    assert skipped.reason == "Skipped by skipOn.paths: …"
    assert isinstance(new[2], StageStarted) and new[2].stage_id == "s2"
