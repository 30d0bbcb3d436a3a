"""PipeCD's planner rules, in order: one row per rule, each showing the rules after it never ran."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import load_application_config
from shared.planning import (
    PlanError,
    PlanningSpec,
    Rule,
    StageSpec,
    Strategy,
    TriggerInfo,
    WorkloadRef,
    decide_strategy,
    make_plan,
    spec_from_config,
)
from tests.support.manifests import M, configmap, deployment

PIPELINE = (
    StageSpec(name="K8S_CANARY_ROLLOUT", options={"replicas": "10%"}),
    StageSpec(name="K8S_PRIMARY_ROLLOUT"),
)
V1 = [deployment(image="ghcr.io/acme/helloworld:v1"), configmap(LEVEL="info")]
V2 = [deployment(image="ghcr.io/acme/helloworld:v2"), configmap(LEVEL="info")]


def spec(**kw: Any) -> PlanningSpec:
    return PlanningSpec(stages=PIPELINE, **kw)


# Each row: a situation in which the named rule is the FIRST that applies, built so
# that every later rule would have decided differently had it been reached.
DECISION_TABLE = [
    pytest.param(
        # A command forces quick sync although the image changed (rule 6 → pipeline)
        # and alwaysUsePipeline is set (rule 3 → pipeline).
        spec(always_use_pipeline=True),
        TriggerInfo(strategy="quick_sync", commander="alice", kind="on_command"),
        V1,
        "c1",
        Strategy.QUICK_SYNC,
        Rule.FORCED,
        id="1-forced-strategy",
    ),
    pytest.param(
        # No pipeline: quick sync, though alwaysUsePipeline and a matching
        # commitMatcher.pipeline would each say pipeline.
        PlanningSpec(always_use_pipeline=True, commit_matcher_pipeline="canary"),
        TriggerInfo(commit_message="canary please"),
        V1,
        "c1",
        Strategy.QUICK_SYNC,
        Rule.NO_PIPELINE,
        id="2-no-pipeline",
    ),
    pytest.param(
        # alwaysUsePipeline wins over a matching commitMatcher.quickSync.
        spec(always_use_pipeline=True, commit_matcher_quick_sync="hotfix"),
        TriggerInfo(commit_message="hotfix: typo"),
        V2,
        "c1",
        Strategy.PIPELINE,
        Rule.ALWAYS_USE_PIPELINE,
        id="3-always-use-pipeline",
    ),
    pytest.param(
        # commitMatcher.pipeline is checked before commitMatcher.quickSync, and wins
        # over "first deployment" (rule 5 → quick sync).
        spec(commit_matcher_pipeline=r"\[canary\]", commit_matcher_quick_sync="."),
        TriggerInfo(commit_message="bump [canary]"),
        V2,
        "",
        Strategy.PIPELINE,
        Rule.COMMIT_MATCHER_PIPELINE,
        id="4a-commit-matcher-pipeline",
    ),
    pytest.param(
        # commitMatcher.quickSync wins over the image change (rule 6 → pipeline).
        spec(commit_matcher_quick_sync=r"^hotfix"),
        TriggerInfo(commit_message="hotfix: roll forward"),
        V1,
        "c1",
        Strategy.QUICK_SYNC,
        Rule.COMMIT_MATCHER_QUICK_SYNC,
        id="4b-commit-matcher-quick-sync",
    ),
    pytest.param(
        # Nothing running yet: quick sync, though the manifests are all new.
        spec(),
        TriggerInfo(commit_message="first"),
        None,
        "",
        Strategy.QUICK_SYNC,
        Rule.FIRST_DEPLOYMENT,
        id="5-first-deployment",
    ),
    pytest.param(
        # The pod template changed (new image): pipeline.
        spec(),
        TriggerInfo(commit_message="bump"),
        V1,
        "c1",
        Strategy.PIPELINE,
        Rule.POD_TEMPLATE_CHANGED,
        id="6a-pod-template-changed",
    ),
    pytest.param(
        # Only a ConfigMap changed: pipeline.
        spec(),
        TriggerInfo(),
        [deployment(image="ghcr.io/acme/helloworld:v2"), configmap(LEVEL="debug")],
        "c1",
        Strategy.PIPELINE,
        Rule.CONFIG_CHANGED,
        id="6b-config-changed",
    ),
    pytest.param(
        # Only replicas changed: quick sync, "scale".
        spec(),
        TriggerInfo(),
        [deployment(image="ghcr.io/acme/helloworld:v2", replicas=7), configmap(LEVEL="info")],
        "c1",
        Strategy.QUICK_SYNC,
        Rule.SCALE,
        id="6c-scale",
    ),
    pytest.param(
        # Something else changed (a label on the Deployment itself): quick sync.
        spec(),
        TriggerInfo(),
        [
            M(
                {
                    **deployment(image="ghcr.io/acme/helloworld:v2").body,
                    "metadata": {"name": "web", "labels": {"team": "a"}},
                }
            ),
            configmap(LEVEL="info"),
        ],
        "c1",
        Strategy.QUICK_SYNC,
        Rule.NO_WORKLOAD_CHANGE,
        id="6d-otherwise-quick-sync",
    ),
]


@pytest.mark.parametrize(
    ("planning", "trigger", "running", "running_commit", "strategy", "rule"), DECISION_TABLE
)
def test_decision_table(
    planning: PlanningSpec,
    trigger: TriggerInfo,
    running: list[M] | None,
    running_commit: str,
    strategy: Strategy,
    rule: Rule,
) -> None:
    """The first rule that applies decides, whatever the later rules would have said."""
    decision = decide_strategy(planning, trigger, V2, running, running_commit=running_commit)
    assert (decision.strategy, decision.rule) == (strategy, rule)


def test_image_change_reason_and_summary() -> None:
    """An image bump reads like PipeCD in the reason, and `image x: v1 → v2` in the summary."""
    decision = decide_strategy(spec(), TriggerInfo(), V2, V1, running_commit="c1")
    assert (
        decision.reason == "Sync progressively because of updating image helloworld from v1 to v2"
    )
    assert decision.summary == "image helloworld: v1 → v2"


def test_scale_reason_names_the_workload_and_counts() -> None:
    """A replicas-only change explains itself as a scale from N to M."""
    running = [deployment(replicas=2)]
    decision = decide_strategy(
        spec(), TriggerInfo(), [deployment(replicas=5)], running, running_commit="c1"
    )
    assert decision.reason == "Quick sync to scale Deployment/web from 2 to 5"
    assert decision.summary == "replicas web: 2 → 5"


def test_commit_matchers_are_ignored_for_command_triggers() -> None:
    """A deployment a command triggered (no forced strategy) skips the commit matchers."""
    planning = spec(commit_matcher_quick_sync=".")
    decision = decide_strategy(
        planning, TriggerInfo(commit_message="x", commander="bob"), V2, V1, running_commit="c1"
    )
    assert decision.rule is Rule.POD_TEMPLATE_CHANGED


def test_workloads_are_those_spec_workloads_names() -> None:
    """With `spec.workloads`, a StatefulSet's template change is a workload change; others not."""

    def statefulset(image: str) -> M:
        body = dict(deployment(image=image).body)
        return M({**body, "kind": "StatefulSet", "metadata": {"name": "db"}})

    running = [statefulset("postgres:15"), deployment(name="side", image="side:v1")]
    new = [statefulset("postgres:16"), deployment(name="side", image="side:v1")]
    by_default = decide_strategy(spec(), TriggerInfo(), new, running, running_commit="c1")
    assert by_default.rule is Rule.NO_WORKLOAD_CHANGE
    configured = spec(workloads=(WorkloadRef(kind="StatefulSet", name="db"),))
    decision = decide_strategy(configured, TriggerInfo(), new, running, running_commit="c1")
    assert decision.rule is Rule.POD_TEMPLATE_CHANGED
    assert decision.summary == "image postgres: 15 → 16"


def test_no_workloads_running_means_quick_sync() -> None:
    """With no workload among the running manifests, PipeCD quick-syncs."""
    decision = decide_strategy(spec(), TriggerInfo(), V2, [configmap()], running_commit="c1")
    assert decision.rule is Rule.NO_RUNNING_WORKLOAD


def test_config_added_or_removed_means_pipeline() -> None:
    """A ConfigMap added or removed is a config change (PipeCD compares the counts first)."""
    added = decide_strategy(
        spec(), TriggerInfo(), [*V1, configmap("extra")], V1, running_commit="c1"
    )
    assert (added.rule, added.reason) == (
        Rule.CONFIG_CHANGED,
        "Sync progressively because new 1 configmap/secret added",
    )


def test_forcing_a_pipeline_without_one_is_an_error_naming_the_file() -> None:
    """A forced pipeline with no pipeline configured cannot be planned; the file is named."""
    planning = PlanningSpec(config_path="web/prd/app.pipecd.yaml")
    with pytest.raises(PlanError, match=r"no spec.pipeline.stages .* in web/prd/app.pipecd.yaml"):
        decide_strategy(planning, TriggerInfo(strategy="pipeline"), V2)


def test_unknown_forced_strategy_is_an_error() -> None:
    """A strategy the planner does not know is refused, listing the known ones."""
    with pytest.raises(PlanError, match="unknown sync strategy 'canary'"):
        decide_strategy(spec(), TriggerInfo(strategy="canary"), V2)


def test_invalid_commit_matcher_is_an_error_naming_the_field() -> None:
    """An invalid commitMatcher regex names the field and the pattern."""
    with pytest.raises(PlanError, match=r"spec.commitMatcher.pipeline '\(' is not a valid"):
        decide_strategy(spec(commit_matcher_pipeline="("), TriggerInfo(), V2)


def test_unrenderable_running_manifests_fail_only_when_needed() -> None:
    """Running manifests that could not be rendered fail the plan only if rule 6 needs them."""
    with pytest.raises(PlanError, match=r"running commit c1abc: broken\.yaml:3"):
        decide_strategy(
            spec(), TriggerInfo(), V2, None, running_commit="c1abc", running_error="broken.yaml:3"
        )
    decided = decide_strategy(
        spec(always_use_pipeline=True), TriggerInfo(), V2, None, running_commit="c1abc"
    )
    assert decided.rule is Rule.ALWAYS_USE_PIPELINE
    assert decided.summary == decided.reason


def test_first_deployment_summary_counts_the_resources() -> None:
    """On a first deployment every resource is new, and the summary says how many."""
    decision = decide_strategy(spec(), TriggerInfo(), V2)
    assert decision.summary == "+2 resources"


def test_on_command_disabled_refuses_a_sync_command_not_a_commit(tmp_path: Any) -> None:
    """`trigger.onCommand.disabled`: the sync command's deployment fails at planning, naming
    the setting; a commit's deployment of the same config plans as usual."""
    path = tmp_path / "app.pipecd.yaml"
    path.write_text(
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n"
        "  trigger:\n    onCommand:\n      disabled: true\n"
    )
    planning = spec_from_config(load_application_config(path), "web/app.pipecd.yaml")
    command = TriggerInfo(commander="bob", kind="on_command")
    with pytest.raises(PlanError, match=r"trigger\.onCommand\.disabled is set in web/app\.pipecd"):
        make_plan(planning, command, V2, V1, running_commit="c1")
    plan = make_plan(planning, TriggerInfo(kind="on_commit"), V2, V1, running_commit="c1")
    assert plan.decision.strategy is Strategy.QUICK_SYNC
