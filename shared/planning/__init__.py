"""Planning, pure: which strategy a deployment takes, its stages, and what changed.

Used by the planner service and by plan preview; no I/O here (plan preview's
git side is `shared.planning.preview`, not imported by this package). The
callers load the config and render the manifests (`shared.deploysource` does
both at a git commit), then:

    spec = spec_from_config(config, config_path)
    plan = make_plan(spec, trigger, new_manifests, running_manifests, running_commit=…)
    plan.decision.strategy, plan.decision.summary, plan.stages

`skip` decides PipeCD's `skipOn` once the caller has read the commit message and
the changed files (`skipped_stages`, recorded in `Plan.skipped`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
from shared.planning.version import determine_version

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
    skipped: Mapping[str, str] = field(default_factory=dict)
    """Stage id → why `skipOn` skips it (`shared.planning.skip`; the planner fills it)."""
    version: str = ""
    """What it deploys, by its images (`shared.planning.version`, PipeCD's determineVersion)."""


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
    if trigger.kind == "on_command" and spec.on_command_disabled:
        # PipeCD's piped ignores a SYNC command for such an application; here the
        # deployment the command made fails at planning, saying why.
        raise PlanError(
            f"trigger.onCommand.disabled is set in {spec.config_path or 'the config'}: "
            "this application is not deployed by a sync command; push a commit, or "
            "remove the setting"
        )
    decision = decide_strategy(
        spec,
        trigger,
        new_manifests,
        running_manifests,
        running_commit=running_commit,
        running_error=running_error,
    )
    stages = build_stages(decision.strategy, spec)
    return Plan(decision, stages, version=determine_version(new_manifests))
