"""PipeCD's planner rules for a Kubernetes application: quick sync or the pipeline?

In order, the first that applies decides (DESIGN §5; PipeCD's
`pkg/app/piped/planner/kubernetes`):

1. a strategy forced by the command that triggered the deployment;
2. no pipeline configured → quick sync;
3. `planner.alwaysUsePipeline` → pipeline;
4. `commitMatcher.pipeline`, then `commitMatcher.quickSync`, matched against the
   commit message (not for deployments a command triggered);
5. nothing running yet (first deployment) → quick sync;
6. the manifests against those of the running commit (the last successful one):
   no workload on either side → quick sync; a workload's pod template changed →
   pipeline; a ConfigMap or Secret added, removed or changed → pipeline; only
   `replicas` changed → quick sync ("scale"); anything else → quick sync.

Workloads are the resources `spec.workloads` names, or every Deployment.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from shared.errors import Rejected
from shared.planning.diff import (
    DEFAULT_OPTIONS,
    DiffOptions,
    FieldChange,
    ManifestDiff,
    ManifestLike,
    ResourceKey,
    diff_manifests,
    diff_resource,
    image_name_and_version,
    key_of,
)
from shared.planning.spec import PlanningSpec, Strategy, TriggerInfo, WorkloadRef

__all__ = ["Decision", "PlanError", "Rule", "decide_strategy"]

# Where a workload keeps its pod template (a CronJob one level further down).
_POD_TEMPLATES: Final = (("spec", "template"), ("spec", "jobTemplate"))


class PlanError(Rejected):
    """No plan can be made; the message says what a person should fix."""


class Rule(enum.StrEnum):
    """Which rule decided: recorded with the plan, so a decision can be explained later."""

    FORCED = "forced"
    NO_PIPELINE = "no_pipeline"
    ALWAYS_USE_PIPELINE = "always_use_pipeline"
    COMMIT_MATCHER_PIPELINE = "commit_matcher_pipeline"
    COMMIT_MATCHER_QUICK_SYNC = "commit_matcher_quick_sync"
    FIRST_DEPLOYMENT = "first_deployment"
    NO_RUNNING_WORKLOAD = "no_running_workload"
    NO_NEW_WORKLOAD = "no_new_workload"
    POD_TEMPLATE_CHANGED = "pod_template_changed"
    CONFIG_CHANGED = "config_changed"
    SCALE = "scale"
    NO_WORKLOAD_CHANGE = "no_workload_change"


@dataclass(frozen=True)
class Decision:
    """The strategy chosen, by which rule, and why."""

    strategy: Strategy
    rule: Rule
    reason: str
    """Why, in PipeCD's words: "Sync progressively because of updating image …"."""
    summary: str
    """What changed, in one line: "image helloworld: v1 → v2"."""
    diff: ManifestDiff | None = None
    """The whole diff against the running manifests, when they were given."""


def decide_strategy(
    spec: PlanningSpec,
    trigger: TriggerInfo,
    new_manifests: Sequence[ManifestLike],
    running_manifests: Sequence[ManifestLike] | None = None,
    *,
    running_commit: str = "",
    running_error: str = "",
    options: DiffOptions = DEFAULT_OPTIONS,
) -> Decision:
    """Quick sync or pipeline, and why; `PlanError` when no plan can be made.

    `running_manifests` are those of `running_commit` (empty when nothing has
    been deployed successfully yet); None when they could not be rendered, with
    `running_error` saying why — fatal only if rule 6 needs them.
    """
    diff: ManifestDiff | None = None
    if running_manifests is not None:
        diff = diff_manifests(running_manifests, new_manifests, options)
    elif not running_commit:
        diff = diff_manifests((), new_manifests, options)

    def decided(strategy: Strategy, rule: Rule, reason: str) -> Decision:
        return Decision(strategy, rule, reason, diff.summary if diff else reason, diff)

    forced = _forced(spec, trigger)
    if forced is not None:
        by = f" by {trigger.commander}" if trigger.commander else ""
        if forced is Strategy.PIPELINE:
            return decided(forced, Rule.FORCED, f"Sync with the specified pipeline (forced{by})")
        return decided(forced, Rule.FORCED, f"Quick sync by applying all manifests (forced{by})")

    if not spec.has_pipeline:
        return decided(
            Strategy.QUICK_SYNC,
            Rule.NO_PIPELINE,
            "Quick sync by applying all manifests (no pipeline was configured)",
        )

    if spec.always_use_pipeline:
        return decided(
            Strategy.PIPELINE,
            Rule.ALWAYS_USE_PIPELINE,
            "Sync with the specified pipeline (alwaysUsePipeline was set)",
        )

    if not trigger.by_command:
        if _matches(spec, "pipeline", spec.commit_matcher_pipeline, trigger.commit_message):
            return decided(
                Strategy.PIPELINE,
                Rule.COMMIT_MATCHER_PIPELINE,
                "Sync progressively because the commit message was matching "
                f"{spec.commit_matcher_pipeline!r}",
            )
        if _matches(spec, "quickSync", spec.commit_matcher_quick_sync, trigger.commit_message):
            return decided(
                Strategy.QUICK_SYNC,
                Rule.COMMIT_MATCHER_QUICK_SYNC,
                "Quick sync by applying all manifests because the commit message was matching "
                f"{spec.commit_matcher_quick_sync!r}",
            )

    if not running_commit:
        return decided(
            Strategy.QUICK_SYNC,
            Rule.FIRST_DEPLOYMENT,
            "Quick sync by applying all manifests because it seems this is the first deployment",
        )

    if running_manifests is None:
        why = f": {running_error}" if running_error else ""
        raise PlanError(
            f"cannot compare with the manifests of the running commit {running_commit[:12]}"
            f"{why}; fix them, or sync with a forced strategy"
        )
    strategy, rule, reason = _by_manifests(
        running_manifests, new_manifests, spec.workloads, options
    )
    return decided(strategy, rule, reason)


def _forced(spec: PlanningSpec, trigger: TriggerInfo) -> Strategy | None:
    if trigger.strategy in ("", Strategy.AUTO):
        return None
    try:
        strategy = Strategy(trigger.strategy)
    except ValueError:
        known = ", ".join(Strategy)
        raise PlanError(
            f"unknown sync strategy {trigger.strategy!r} in the trigger (known: {known})"
        ) from None
    if strategy is Strategy.PIPELINE and not spec.has_pipeline:
        where = f" in {spec.config_path}" if spec.config_path else ""
        raise PlanError(
            "cannot force a sync with the pipeline: no spec.pipeline.stages are configured"
            f"{where}; add a pipeline or sync with quick_sync"
        )
    return strategy


def _matches(spec: PlanningSpec, which: str, pattern: str, message: str) -> bool:
    if not pattern:
        return False
    try:
        return re.search(pattern, message) is not None
    except re.error as exc:
        where = f"{spec.config_path}: " if spec.config_path else ""
        raise PlanError(
            f"{where}spec.commitMatcher.{which} {pattern!r} is not a valid regular "
            f"expression ({exc})"
        ) from None


# Rule 6: what changed in the manifests ----------------------------------------------


def _by_manifests(
    olds: Sequence[ManifestLike],
    news: Sequence[ManifestLike],
    refs: Sequence[WorkloadRef],
    options: DiffOptions,
) -> tuple[Strategy, Rule, str]:
    old_workloads = _workloads(olds, refs)
    if not old_workloads:
        return (
            Strategy.QUICK_SYNC,
            Rule.NO_RUNNING_WORKLOAD,
            "Quick sync by applying all manifests because it was unable to find the currently "
            "running workloads",
        )
    new_workloads = _workloads(news, refs)
    if not new_workloads:
        return (
            Strategy.QUICK_SYNC,
            Rule.NO_NEW_WORKLOAD,
            "Quick sync by applying all manifests because it was unable to find workloads in "
            "the new manifests",
        )

    workload_diffs: list[tuple[ManifestLike, list[FieldChange]]] = []
    for old, new in _pairs(old_workloads, new_workloads):
        changes = diff_resource(old, new, options)
        workload_diffs.append((new, changes))
        template = [c for c in changes if c.path[:2] in _POD_TEMPLATES]
        if template:
            images = [_image_change(c) for c in template if _is_image(c)]
            if images:
                return (
                    Strategy.PIPELINE,
                    Rule.POD_TEMPLATE_CHANGED,
                    f"Sync progressively because of updating {', '.join(images)}",
                )
            return (
                Strategy.PIPELINE,
                Rule.POD_TEMPLATE_CHANGED,
                f"Sync progressively because pod template of workload {new.name} was changed",
            )

    config_reason = _config_change(olds, news, options)
    if config_reason:
        return Strategy.PIPELINE, Rule.CONFIG_CHANGED, config_reason

    scales = sorted(
        f"{m.kind}/{m.name} from {_plain(c.old)} to {_plain(c.new)}"
        for m, changes in workload_diffs
        for c in changes
        if c.path == ("spec", "replicas")
    )
    if scales:
        return Strategy.QUICK_SYNC, Rule.SCALE, f"Quick sync to scale {', '.join(scales)}"
    return Strategy.QUICK_SYNC, Rule.NO_WORKLOAD_CHANGE, "Quick sync by applying all manifests"


def _workloads(
    manifests: Sequence[ManifestLike], refs: Sequence[WorkloadRef]
) -> list[ManifestLike]:
    if not refs:
        return [m for m in manifests if m.kind == "Deployment"]
    found: list[ManifestLike] = []
    for ref in refs:
        kind = ref.kind or "Deployment"
        found += [m for m in manifests if m.kind == kind and (not ref.name or m.name == ref.name)]
    return found


def _pairs(
    olds: Sequence[ManifestLike], news: Sequence[ManifestLike]
) -> list[tuple[ManifestLike, ManifestLike]]:
    """Old and new versions of the same workload; the API version may differ between them."""

    def loose(m: ManifestLike) -> tuple[str, str, str]:
        key = key_of(m)
        return key.kind, key.namespace, key.name

    by_key = {loose(m): m for m in olds}
    return [(by_key[loose(n)], n) for n in news if loose(n) in by_key]


def _config_change(
    olds: Sequence[ManifestLike], news: Sequence[ManifestLike], options: DiffOptions
) -> str:
    old_configs = _configs(olds)
    new_configs = _configs(news)
    if len(old_configs) > len(new_configs):
        return (
            "Sync progressively because "
            f"{len(old_configs) - len(new_configs)} configmap/secret deleted"
        )
    if len(old_configs) < len(new_configs):
        return (
            "Sync progressively because new "
            f"{len(new_configs) - len(old_configs)} configmap/secret added"
        )
    for key, old in sorted(old_configs.items()):
        new = new_configs.get(key)
        if new is None:
            return f"Sync progressively because {key.kind} {key.name} was deleted"
        if diff_manifests([old], [new], options).changed:
            return f"Sync progressively because {key.kind} {key.name} was updated"
    return ""


def _configs(manifests: Sequence[ManifestLike]) -> dict[ResourceKey, ManifestLike]:
    return {key_of(m): m for m in manifests if m.kind in ("ConfigMap", "Secret")}


def _is_image(change: FieldChange) -> bool:
    path = change.path
    return (
        len(path) >= 3
        and path[-1] == "image"
        and isinstance(path[-2], int)
        and path[-3] == "containers"
        and isinstance(change.old, str)
        and isinstance(change.new, str)
    )


def _image_change(change: FieldChange) -> str:
    old_name, old_tag = image_name_and_version(str(change.old))
    new_name, new_tag = image_name_and_version(str(change.new))
    if old_name == new_name:
        return f"image {old_name} from {old_tag} to {new_tag}"
    return f"image {old_name}:{old_tag} to {new_name}:{new_tag}"


def _plain(value: object) -> str:
    return "unset" if value is None or not isinstance(value, int | float | str) else str(value)
