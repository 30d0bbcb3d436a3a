"""Planning, pure: which strategy a deployment takes, its stages, and what changed.

Used by the planner service and by plan preview; no I/O here (plan preview's
git side is `shared.planning.preview`, not imported by this package). The
callers load the config and render the manifests (`shared.deploysource` does
both at a git commit), then:

    spec = spec_from_config(config, config_path)
    plan = make_plan(spec, trigger, new_manifests, running_manifests, running_commit=…)
    plan.decision.strategy, plan.decision.summary, plan.stages
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.events.catalog import PlannedStage
from shared.planning.diff import (
    DiffOptions,
    FieldChange,
    ManifestDiff,
    ManifestLike,
    ResourceChange,
    ResourceKey,
    diff_manifests,
    image_name_and_version,
)
from shared.planning.rules import Decision, PlanError, Rule, decide_strategy
from shared.planning.spec import (
    PlanningSpec,
    StageSpec,
    Strategy,
    TriggerInfo,
    WorkloadRef,
    spec_from_config,
)
from shared.planning.stages import build_stages

__all__ = [
    "Decision",
    "DiffOptions",
    "FieldChange",
    "ManifestDiff",
    "ManifestLike",
    "Plan",
    "PlanError",
    "PlanningSpec",
    "ResourceChange",
    "ResourceKey",
    "Rule",
    "StageSpec",
    "Strategy",
    "TriggerInfo",
    "WorkloadRef",
    "build_stages",
    "decide_strategy",
    "diff_manifests",
    "image_name_and_version",
    "make_plan",
    "spec_from_config",
]


@dataclass(frozen=True)
class Plan:
    """A plan: the decision (strategy and why) and the stages it runs."""

    decision: Decision
    stages: tuple[PlannedStage, ...]


def make_plan(
    spec: PlanningSpec,
    trigger: TriggerInfo,
    new_manifests: Sequence[ManifestLike],
    running_manifests: Sequence[ManifestLike] | None = None,
    *,
    running_commit: str = "",
    running_error: str = "",
) -> Plan:
    """Decide the strategy and build its stages; `PlanError` names what to fix."""
    decision = decide_strategy(
        spec,
        trigger,
        new_manifests,
        running_manifests,
        running_commit=running_commit,
        running_error=running_error,
    )
    return Plan(decision, build_stages(decision.strategy, spec))
