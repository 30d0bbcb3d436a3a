"""The planner's queue as folded state, and its decisions on a deployment's stream."""

from __future__ import annotations

import pytest

from services.planner.decider import (
    PLANNING,
    AppQueue,
    RowState,
    evolve_queue,
    next_to_plan,
    plan_failed,
    planned,
    queued,
    row_state,
)
from shared.applications import Application
from shared.decider import fold
from shared.events import vocabulary
from shared.events.catalog import (
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentTriggered,
)
from shared.events.vocabulary import Strategy
from shared.planning import Plan
from shared.planning.rules import Decision, Rule
from shared.redaction import DIFF_CHARS


def _trigger(deployment_id: str, app: str = "web") -> DeploymentTriggered:
    return DeploymentTriggered(
        deployment_id=deployment_id,
        application_id=app,
        trigger=vocabulary.Trigger("on_commit"),
        commit_hash="c",
    )


def _planned(deployment_id: str) -> DeploymentPlanned:
    return DeploymentPlanned(
        deployment_id=deployment_id, application_id="web", commit_hash="c",
        strategy=vocabulary.Strategy("quick_sync"), summary="", reason="", stages=(),
    )  # fmt: skip


def test_the_queue_is_the_fold_of_triggers_plans_and_completions() -> None:
    """FIFO: triggers wait in order, a plan makes one active, its end lets the next go."""
    queue = AppQueue("web")
    for event in (_trigger("a"), _trigger("b"), _trigger("x", app="api"), _trigger("a")):
        queue = evolve_queue(queue, event)
    assert queue == AppQueue("web", None, ("a", "b"))
    queue = evolve_queue(queue, _planned("a"))
    assert queue == AppQueue("web", "a", ("b",)) and next_to_plan(queue) is None
    queue = evolve_queue(
        queue,
        DeploymentCompleted(
            deployment_id="a", application_id="web", status=vocabulary.DeploymentStatus("SUCCESS")
        ),
    )
    assert next_to_plan(queue) == "b"
    queue = evolve_queue(queue, plan_failed(_trigger("b"), "no config"))
    assert queue == AppQueue("web")
    assert row_state(_planned("a")) == ("a", RowState.ACTIVE)
    assert row_state(queued(_trigger("b"), "a")) is None


def test_a_pending_deployment_is_planned_or_queued_once() -> None:
    """`PLANNING` records a plan, a failure or a place in line only while pending, once."""
    pending = fold(PLANNING, [_trigger("a")])
    assert PLANNING.decide(pending, _planned("a")) == [_planned("a")]
    assert PLANNING.decide(fold(PLANNING, [_trigger("a"), _planned("a")]), _planned("a")) == []
    behind = queued(_trigger("a"), "z")
    assert PLANNING.decide(fold(PLANNING, [_trigger("a"), behind]), behind) == []
    with pytest.raises(RuntimeError, match="no DeploymentTriggered"):
        PLANNING.decide(None, _planned("a"))


def test_a_huge_manifest_diff_is_recorded_clipped() -> None:
    """The plan's diff rides on DeploymentPlanned for the console: a repository changing
    thousands of resources must not make the event too large to store."""
    app = Application(
        application_id="web", name="web", repository_id="config", path="web",
        config_filename=".pipe.yaml", platform_provider="", labels=(), disabled=False,
    )  # fmt: skip
    decision = Decision(Strategy("pipeline"), Rule.FORCED, "why", "what")
    plan = Plan(decision=decision, stages=())
    huge = "~ data.x: a → b\n" * 10_000
    event = planned(_trigger("d"), app, plan, repository_id="config", running_commit="r", diff=huge)
    assert len(event.diff) <= DIFF_CHARS and event.diff.endswith("more characters)")
    assert event.diff.startswith("~ data.x: a → b\n")
    small = planned(_trigger("d"), app, plan, repository_id="config", running_commit="r", diff="x")
    assert small.diff == "x"
