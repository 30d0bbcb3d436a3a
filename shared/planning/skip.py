"""`skipOn` of WAIT, WAIT_APPROVAL, ANALYSIS and SCRIPT_RUN: PipeCD's rule, decided at planning.

PipeCD's piped skips such a stage (`controller/skipstage.go`) when the target
commit's message starts with one of `commitMessagePrefixes`, or when every
file changed between the running and the target commit matches `paths`
(its file patterns, `!` excluding: `shared.triggers.PathPattern`). Both depend
only on the two commits, which the planner knows, so the planner decides and
records the reason in the plan (`DeploymentPlanned.skipped`); the
executor's decider then records the stage SKIPPED instead of starting it.

One difference: with no running commit (the first deployment) PipeCD's diff
fails and so does the stage; here `paths` simply does not skip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from shared.events.catalog import PlannedStage
from shared.planning.spec import PlanningSpec
from shared.planning.stages import pipeline_stage_id
from shared.triggers import PathPattern

__all__ = ["SKIP_ON_STAGES", "skip_reason", "skipped_stages", "uses_skip_on"]

#: The stage kinds whose options have `skipOn` (PipeCD's `shouldSkipStage`).
SKIP_ON_STAGES: Final = frozenset({"WAIT", "WAIT_APPROVAL", "ANALYSIS", "SCRIPT_RUN"})


def _skip_on(options: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    raw = options.get("skipOn")
    if not isinstance(raw, Mapping):
        return (), ()
    prefixes = tuple(p for p in raw.get("commitMessagePrefixes") or () if isinstance(p, str))
    paths = tuple(p for p in raw.get("paths") or () if isinstance(p, str))
    return prefixes, paths


def _matches(patterns: Sequence[str], path: str) -> bool:
    """PipeCD's `PatternMatcher.Matches`: not excluded by a `!pattern`, matched by another."""
    excluded = [PathPattern.parse(p.strip()[1:]) for p in patterns if p.strip().startswith("!")]
    included = [PathPattern.parse(p) for p in patterns if not p.strip().startswith("!")]
    if any(e.matches(path) for e in excluded):
        return False
    return any(i.matches(path) for i in included)


def skip_reason(
    options: Mapping[str, Any], *, commit_message: str, changed_paths: Sequence[str] | None
) -> str:
    """Why a stage with these options is skipped, or "" when it runs.

    `changed_paths` are the files changed from the running commit to the target
    (None: no running commit, so `paths` cannot skip).
    """
    prefixes, paths = _skip_on(options)
    if paths and changed_paths is not None and all(_matches(paths, path) for path in changed_paths):
        count = len(changed_paths)
        return (
            f"Skipped by skipOn.paths: all {count} changed file(s) match {', '.join(paths)}"
            if count
            else "Skipped by skipOn.paths: no file changed since the running commit"
        )
    for prefix in prefixes:
        if commit_message.startswith(prefix):
            return (
                "Skipped by skipOn.commitMessagePrefixes: the commit message starts with "
                f"{prefix!r}"
            )
    return ""


def uses_skip_on(spec: PlanningSpec) -> bool:
    """Whether any stage of the pipeline has a `skipOn` condition (worth reading git for)."""
    return any(
        stage.name in SKIP_ON_STAGES and any(_skip_on(stage.options)) for stage in spec.stages
    )


def skipped_stages(
    stages: Sequence[PlannedStage],
    spec: PlanningSpec,
    *,
    commit_message: str,
    changed_paths: Sequence[str] | None,
) -> dict[str, str]:
    """Stage id → why its `skipOn` skips it, for the planned pipeline stages it matches
    (options read from `spec`, not from the recorded ones, which may be redacted)."""
    configured = {
        pipeline_stage_id(index, stage.id): stage for index, stage in enumerate(spec.stages)
    }
    out: dict[str, str] = {}
    for planned in stages:
        stage = configured.get(planned.id)
        if stage is None or stage.name != planned.name or stage.name not in SKIP_ON_STAGES:
            continue
        reason = skip_reason(
            stage.options, commit_message=commit_message, changed_paths=changed_paths
        )
        if reason:
            out[planned.id] = reason
    return out
