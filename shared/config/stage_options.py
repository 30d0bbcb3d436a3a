"""The options of each stage kind: the Struct a pipeline stage's `with:` decodes into.

Told apart by the synthetic tag field `stage` (the loader copies the stage's
`name` into it), so `stage.with_` is a `K8sCanaryRolloutOptions` for a
K8S_CANARY_ROLLOUT stage. Which options belong to which stage is said once, in
its `StageKind` (`shared.config.stage_kinds`).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from shared.config._base import Spec
from shared.config.analysis import (
    AnalysisDynamic,
    TemplatableAnalysisHTTP,
    TemplatableAnalysisLog,
    TemplatableAnalysisMetrics,
)
from shared.config.types import Duration, Percentage, Replicas

__all__ = [
    "SIX_HOURS",
    "AnalysisOptions",
    "CustomSyncOptions",
    "K8sBaselineCleanOptions",
    "K8sBaselineRolloutOptions",
    "K8sCanaryCleanOptions",
    "K8sCanaryRolloutOptions",
    "K8sPrimaryRolloutOptions",
    "K8sResourcePatch",
    "K8sResourcePatchOp",
    "K8sResourcePatchTarget",
    "K8sResourceReference",
    "K8sSyncOptions",
    "K8sTrafficRoutingOptions",
    "QuickSyncOptions",
    "RollbackOptions",
    "ScriptRunOptions",
    "SkipOptions",
    "StageOptionsBase",
    "WaitApprovalOptions",
    "WaitOptions",
]

SIX_HOURS: Final = Duration.of(hours=6)


class StageOptionsBase(Spec, tag_field="stage", frozen=True):
    """Options of one stage kind; `stage` (the tag) repeats the stage's name."""


class K8sSyncOptions(StageOptionsBase, tag="K8S_SYNC", frozen=True):
    """K8S_SYNC: apply every manifest (quick sync)."""

    add_variant_label_to_selector: bool = False
    prune: bool = False


class QuickSyncOptions(Spec, frozen=True):
    """`spec.quickSync`: how a quick sync (K8S_SYNC) applies."""

    add_variant_label_to_selector: bool = False
    prune: bool = False


class K8sPrimaryRolloutOptions(StageOptionsBase, tag="K8S_PRIMARY_ROLLOUT", frozen=True):
    """`K8S_PRIMARY_ROLLOUT`: apply the new manifests as the primary, optionally pruning."""

    suffix: str = "primary"
    create_service: bool = False
    add_variant_label_to_selector: bool = False
    prune: bool = False


class K8sResourceReference(Spec, frozen=True):
    """A manifest named by kind and name."""

    kind: str = ""
    name: str = ""


class K8sResourcePatchTarget(Spec, frozen=True):
    """The manifest to patch; `documentRoot` patches a YAML/JSON document held in a field."""

    kind: str = ""
    name: str = ""
    document_root: str = ""


class K8sResourcePatchOp(Spec, frozen=True):
    """One operation of a manifest patch: what to do (`op`) at `path` with `value`."""

    op: Literal["yaml-replace", "yaml-add", "yaml-remove", "json-replace", "text-regex"] = (
        "yaml-replace"
    )
    path: str = ""
    value: str = ""


class K8sResourcePatch(Spec, frozen=True):
    """Patches of one target manifest, applied in order."""

    target: K8sResourcePatchTarget = K8sResourcePatchTarget()
    ops: tuple[K8sResourcePatchOp, ...] = ()


class K8sCanaryRolloutOptions(StageOptionsBase, tag="K8S_CANARY_ROLLOUT", frozen=True):
    """K8S_CANARY_ROLLOUT: `<name>-canary` workloads with `replicas` pods (N or N% of primary)."""

    replicas: Replicas = Replicas(1)
    suffix: str = "canary"
    create_service: bool = False
    patches: tuple[K8sResourcePatch, ...] = ()


class K8sCanaryCleanOptions(StageOptionsBase, tag="K8S_CANARY_CLEAN", frozen=True):
    """`K8S_CANARY_CLEAN`: delete the canary's resources."""


class K8sBaselineRolloutOptions(StageOptionsBase, tag="K8S_BASELINE_ROLLOUT", frozen=True):
    """`K8S_BASELINE_ROLLOUT`: run the running version beside the canary, for comparison."""

    replicas: Replicas = Replicas(1)
    suffix: str = "baseline"
    create_service: bool = False


class K8sBaselineCleanOptions(StageOptionsBase, tag="K8S_BASELINE_CLEAN", frozen=True):
    """`K8S_BASELINE_CLEAN`: delete the baseline's resources."""


class K8sTrafficRoutingOptions(StageOptionsBase, tag="K8S_TRAFFIC_ROUTING", frozen=True):
    """K8S_TRAFFIC_ROUTING: all traffic to one variant, or a split in percent."""

    all: Literal["", "primary", "canary", "baseline"] = ""
    primary: Percentage | None = None
    canary: Percentage | None = None
    baseline: Percentage | None = None

    def percentages(self) -> tuple[int, int, int]:
        """(primary, canary, baseline) weights, PipeCD's reading of these options."""
        if self.all == "primary":
            return 100, 0, 0
        if self.all == "canary":
            return 0, 100, 0
        if self.all == "baseline":
            return 0, 0, 100
        return tuple(  # type: ignore[return-value]
            p.number if p is not None else 0 for p in (self.primary, self.canary, self.baseline)
        )


class SkipOptions(Spec, frozen=True):
    """`skipOn` of WAIT, WAIT_APPROVAL, ANALYSIS and SCRIPT_RUN (PipeCD's semantics).

    The stage is skipped when the target commit's message starts with one of
    `commitMessagePrefixes`, or when every file changed between the running and
    the target commit matches one of `paths` (regular expressions, as PipeCD's
    `filematcher`). Nothing set: never skipped.
    """

    commit_message_prefixes: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.commit_message_prefixes or self.paths)


class WaitOptions(StageOptionsBase, tag="WAIT", frozen=True):
    """`WAIT`: wait `duration` (skippable by `skipOn`)."""

    duration: Duration = Duration(0)
    skip_on: SkipOptions = SkipOptions()


class WaitApprovalOptions(StageOptionsBase, tag="WAIT_APPROVAL", frozen=True):
    """`WAIT_APPROVAL`: wait for approvals, failing after `timeout`."""

    timeout: Duration = SIX_HOURS
    approvers: tuple[str, ...] = ()
    min_approver_num: int = 1
    skip_on: SkipOptions = SkipOptions()


class AnalysisOptions(StageOptionsBase, tag="ANALYSIS", frozen=True):
    """ANALYSIS: run the checks for `duration`; any check past its failure limit fails it."""

    duration: Duration = Duration(0)
    restart_threshold: int = 0
    metrics: tuple[TemplatableAnalysisMetrics, ...] = ()
    logs: tuple[TemplatableAnalysisLog, ...] = ()
    https: tuple[TemplatableAnalysisHTTP, ...] = ()
    dynamic: AnalysisDynamic | None = None
    # Slipway's extension: which judge compares variants (PREVIOUS, CANARY_*); THRESHOLD and
    # HTTP checks are judged the same by both. `pipecd` is PipeCD's per-tick Mann-Whitney U.
    judge: Literal["pipecd", "sequential"] = "sequential"
    skip_on: SkipOptions = SkipOptions()


class ScriptRunOptions(StageOptionsBase, tag="SCRIPT_RUN", frozen=True):
    """SCRIPT_RUN: a shell script, and another to run if the deployment rolls back.

    `secretEnv` is Slipway's extension (PipeCD has none): variables set like `env`
    whose values are never recorded — the plan keeps their names only, the executor
    reads the values from the config at the commit, and they are masked wherever the
    script prints them. (Encrypted secrets will be decrypted into it.) A zero or
    missing `timeout` means the executor's default (`SLIPWAY_EXECUTOR_SCRIPT_TIMEOUT_S`,
    PipeCD's 6h unless set), never "forever".
    """

    run: str = ""
    env: dict[str, str] = msgspec.field(default_factory=dict)
    secret_env: dict[str, str] = msgspec.field(default_factory=dict)
    timeout: Duration = Duration()
    on_rollback: str = ""
    skip_on: SkipOptions = SkipOptions()


class RollbackOptions(StageOptionsBase, tag="ROLLBACK", frozen=True):
    """`ROLLBACK`: restore the running commit (added by the planner)."""


class CustomSyncOptions(StageOptionsBase, tag="CUSTOM_SYNC", frozen=True):
    """CUSTOM_SYNC: PipeCD's user-defined sync, a shell script (`run`) with `envs`, run in the
    app's directory within `timeout` (6h). Slipway runs it in SCRIPT_RUN's clean room."""

    timeout: Duration = SIX_HOURS
    envs: dict[str, str] = msgspec.field(default_factory=dict)
    run: str = ""
