"""The `kind: KubernetesApp` application spec, field for field PipeCD's.

Sources: PipeCD `pkg/config/application.go` (the generic part: planner,
trigger, pipeline, notification…) and `application_kubernetes.go` (input,
quick sync, variants, traffic routing and the K8S_* stage options). Defaults
are PipeCD's. A pipeline stage's `with:` is decoded into the options Struct of
its `name` (`stage.with_` is a `K8sCanaryRolloutOptions` for a
K8S_CANARY_ROLLOUT stage…), told apart by the synthetic tag field `stage`.

Slipway additions, all optional: `planner.autoRollback` (overrides
`input.autoRollback`) and `input.helmChart.insecure` (PipeCD takes it from the
piped's chart repository instead).
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
from shared.config.event_watcher import EventWatcherConfig
from shared.config.types import Duration, Percentage, Regex, Replicas

__all__ = [
    "NOTIFICATION_EVENTS",
    "STAGE_NAMES",
    "AnalysisOptions",
    "Attachment",
    "ChainApplicationMatcher",
    "DeploymentChain",
    "DeploymentCommitMatcher",
    "DeploymentNotification",
    "DeploymentPipeline",
    "DeploymentPlanner",
    "DriftDetection",
    "InputHelmChart",
    "InputHelmOptions",
    "IstioTrafficRouting",
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
    "KubernetesApplicationSpec",
    "KubernetesDeploymentInput",
    "KubernetesProviderMatcher",
    "KubernetesResourceRoute",
    "KubernetesResourceRouteMatcher",
    "KubernetesTrafficRouting",
    "KubernetesVariantLabel",
    "NotificationMention",
    "OnChain",
    "OnCommand",
    "OnCommit",
    "OnOutOfSync",
    "PipelineStage",
    "PostSync",
    "QuickSyncOptions",
    "RollbackOptions",
    "ScriptRunOptions",
    "SecretEncryption",
    "StageOptions",
    "Trigger",
    "WaitApprovalOptions",
    "WaitOptions",
]

SIX_HOURS: Final = Duration.of(hours=6)

#: Event names a `notification.mentions[].event` may name (PipeCD's, without `EVENT_`), or "*".
NOTIFICATION_EVENTS: Final = (
    "DEPLOYMENT_TRIGGERED",
    "DEPLOYMENT_PLANNED",
    "DEPLOYMENT_APPROVED",
    "DEPLOYMENT_ROLLING_BACK",
    "DEPLOYMENT_SUCCEEDED",
    "DEPLOYMENT_FAILED",
    "DEPLOYMENT_CANCELLED",
    "DEPLOYMENT_WAIT_APPROVAL",
    "DEPLOYMENT_TRIGGER_FAILED",
    "APPLICATION_SYNCED",
    "APPLICATION_OUT_OF_SYNC",
    "APPLICATION_HEALTHY",
    "PIPED_STARTED",
    "PIPED_STOPPED",
)


# --- stage options -------------------------------------------------------------


class _Options(Spec, tag_field="stage", frozen=True):
    """Options of one stage kind; `stage` (the tag) repeats the stage's name."""


class K8sSyncOptions(_Options, tag="K8S_SYNC", frozen=True):
    """K8S_SYNC: apply every manifest (quick sync)."""

    add_variant_label_to_selector: bool = False
    prune: bool = False


class QuickSyncOptions(Spec, frozen=True):
    """`spec.quickSync`: how a quick sync (K8S_SYNC) applies."""

    add_variant_label_to_selector: bool = False
    prune: bool = False


class K8sPrimaryRolloutOptions(_Options, tag="K8S_PRIMARY_ROLLOUT", frozen=True):
    suffix: str = "primary"
    create_service: bool = False
    add_variant_label_to_selector: bool = False
    prune: bool = False


class K8sResourceReference(Spec, frozen=True):
    kind: str = ""
    name: str = ""


class K8sResourcePatchTarget(Spec, frozen=True):
    """The manifest to patch; `documentRoot` patches a YAML/JSON document held in a field."""

    kind: str = ""
    name: str = ""
    document_root: str = ""


class K8sResourcePatchOp(Spec, frozen=True):
    op: Literal["yaml-replace", "yaml-add", "yaml-remove", "json-replace", "text-regex"] = (
        "yaml-replace"
    )
    path: str = ""
    value: str = ""


class K8sResourcePatch(Spec, frozen=True):
    target: K8sResourcePatchTarget = K8sResourcePatchTarget()
    ops: tuple[K8sResourcePatchOp, ...] = ()


class K8sCanaryRolloutOptions(_Options, tag="K8S_CANARY_ROLLOUT", frozen=True):
    """K8S_CANARY_ROLLOUT: `<name>-canary` workloads with `replicas` pods (N or N% of primary)."""

    replicas: Replicas = Replicas(1)
    suffix: str = "canary"
    create_service: bool = False
    patches: tuple[K8sResourcePatch, ...] = ()


class K8sCanaryCleanOptions(_Options, tag="K8S_CANARY_CLEAN", frozen=True):
    pass


class K8sBaselineRolloutOptions(_Options, tag="K8S_BASELINE_ROLLOUT", frozen=True):
    replicas: Replicas = Replicas(1)
    suffix: str = "baseline"
    create_service: bool = False


class K8sBaselineCleanOptions(_Options, tag="K8S_BASELINE_CLEAN", frozen=True):
    pass


class K8sTrafficRoutingOptions(_Options, tag="K8S_TRAFFIC_ROUTING", frozen=True):
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


class WaitOptions(_Options, tag="WAIT", frozen=True):
    duration: Duration = Duration(0)


class WaitApprovalOptions(_Options, tag="WAIT_APPROVAL", frozen=True):
    timeout: Duration = SIX_HOURS
    approvers: tuple[str, ...] = ()
    min_approver_num: int = 1


class AnalysisOptions(_Options, tag="ANALYSIS", frozen=True):
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


class ScriptRunOptions(_Options, tag="SCRIPT_RUN", frozen=True):
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


class RollbackOptions(_Options, tag="ROLLBACK", frozen=True):
    pass


StageOptions = (
    K8sSyncOptions
    | K8sPrimaryRolloutOptions
    | K8sCanaryRolloutOptions
    | K8sCanaryCleanOptions
    | K8sBaselineRolloutOptions
    | K8sBaselineCleanOptions
    | K8sTrafficRoutingOptions
    | WaitOptions
    | WaitApprovalOptions
    | AnalysisOptions
    | ScriptRunOptions
    | RollbackOptions
)

#: Stage names a Kubernetes pipeline may use, each with its options Struct.
STAGE_NAMES: Final[dict[str, type[_Options]]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (
        K8sSyncOptions,
        K8sPrimaryRolloutOptions,
        K8sCanaryRolloutOptions,
        K8sCanaryCleanOptions,
        K8sBaselineRolloutOptions,
        K8sBaselineCleanOptions,
        K8sTrafficRoutingOptions,
        WaitOptions,
        WaitApprovalOptions,
        AnalysisOptions,
        ScriptRunOptions,
        RollbackOptions,
    )
}

StageName = Literal[
    "K8S_SYNC",
    "K8S_PRIMARY_ROLLOUT",
    "K8S_CANARY_ROLLOUT",
    "K8S_CANARY_CLEAN",
    "K8S_BASELINE_ROLLOUT",
    "K8S_BASELINE_CLEAN",
    "K8S_TRAFFIC_ROUTING",
    "WAIT",
    "WAIT_APPROVAL",
    "ANALYSIS",
    "SCRIPT_RUN",
    "ROLLBACK",
]


class PipelineStage(Spec, kw_only=True, frozen=True):
    """One stage; `with_` (written `with:`) holds the options of its `name`."""

    name: StageName
    id: str = ""
    desc: str = ""
    timeout: Duration = Duration(0)
    with_: StageOptions = msgspec.field(name="with")


class DeploymentPipeline(Spec, frozen=True):
    stages: tuple[PipelineStage, ...] = ()


# --- the generic application spec ------------------------------------------------


class DeploymentPlanner(Spec, frozen=True):
    always_use_pipeline: bool = False
    auto_rollback: bool | None = None  # Slipway: overrides input.autoRollback when set


class DeploymentCommitMatcher(Spec, frozen=True):
    """Force a quick sync / the pipeline when the commit message matches."""

    quick_sync: Regex = Regex("")
    pipeline: Regex = Regex("")


class OnCommit(Spec, frozen=True):
    disabled: bool = False
    paths: tuple[str, ...] = ()
    ignores: tuple[str, ...] = ()


class OnCommand(Spec, frozen=True):
    disabled: bool = False


class OnOutOfSync(Spec, frozen=True):
    disabled: bool = True
    min_window: Duration = Duration.of(minutes=5)


class OnChain(Spec, frozen=True):
    disabled: bool = True


class Trigger(Spec, frozen=True):
    on_commit: OnCommit = OnCommit()
    on_command: OnCommand = OnCommand()
    on_out_of_sync: OnOutOfSync = OnOutOfSync()
    on_chain: OnChain = OnChain()


class ChainApplicationMatcher(Spec, frozen=True):
    name: str = ""
    kind: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class DeploymentChain(Spec, frozen=True):
    applications: tuple[ChainApplicationMatcher, ...] = ()


class PostSync(Spec, frozen=True):
    chain: DeploymentChain | None = None


class SecretEncryption(Spec, frozen=True):
    encrypted_secrets: dict[str, str] = msgspec.field(default_factory=dict)
    decryption_targets: tuple[str, ...] = ()


class Attachment(Spec, frozen=True):
    sources: dict[str, str] = msgspec.field(default_factory=dict)
    targets: tuple[str, ...] = ()


class NotificationMention(Spec, frozen=True):
    event: str = ""
    slack: tuple[str, ...] = ()
    slack_groups: tuple[str, ...] = ()
    email: tuple[str, ...] = ()


class DeploymentNotification(Spec, frozen=True):
    mentions: tuple[NotificationMention, ...] = ()


class DriftDetection(Spec, frozen=True):
    """`ignoreFields`: 'apiVersion:kind:namespace:name#fieldPath' entries drift ignores."""

    ignore_fields: tuple[str, ...] = ()


# --- Kubernetes ------------------------------------------------------------------


class InputHelmChart(Spec, frozen=True):
    """A chart from git (`gitRemote`/`ref`/`path`, or `path` in this repo) or a chart repository."""

    git_remote: str = ""
    ref: str = ""
    path: str = ""
    repository: str = ""
    name: str = ""
    version: str = ""
    insecure: bool = False


class InputHelmOptions(Spec, frozen=True):
    release_name: str = ""
    value_files: tuple[str, ...] = ()
    set_files: dict[str, str] = msgspec.field(default_factory=dict)
    api_versions: tuple[str, ...] = ()
    kube_version: str = ""


class KubernetesDeploymentInput(Spec, frozen=True):
    """Where the manifests come from and how they are applied."""

    manifests: tuple[str, ...] = ()
    kubectl_version: str = ""
    kustomize_version: str = ""
    kustomize_options: dict[str, str] = msgspec.field(default_factory=dict)
    helm_version: str = ""
    helm_chart: InputHelmChart | None = None
    helm_options: InputHelmOptions | None = None
    namespace: str = ""
    auto_rollback: bool = True
    auto_create_namespace: bool = False


class IstioTrafficRouting(Spec, frozen=True):
    editable_routes: tuple[str, ...] = ()
    host: str = ""
    virtual_service: K8sResourceReference = K8sResourceReference()


class KubernetesTrafficRouting(Spec, frozen=True):
    method: Literal["podselector", "istio", "smi"] = "podselector"
    istio: IstioTrafficRouting | None = None


class KubernetesVariantLabel(Spec, frozen=True):
    key: str = "pipecd.dev/variant"
    primary_value: str = "primary"
    canary_value: str = "canary"
    baseline_value: str = "baseline"


class KubernetesProviderMatcher(Spec, frozen=True):
    name: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class KubernetesResourceRouteMatcher(Spec, frozen=True):
    kind: str = ""
    name: str = ""


class KubernetesResourceRoute(Spec, frozen=True):
    provider: KubernetesProviderMatcher = KubernetesProviderMatcher()
    match: KubernetesResourceRouteMatcher | None = None


class KubernetesApplicationSpec(Spec, frozen=True):
    """`spec` of `kind: KubernetesApp`."""

    name: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    description: str = ""
    planner: DeploymentPlanner = DeploymentPlanner()
    commit_matcher: DeploymentCommitMatcher = DeploymentCommitMatcher()
    pipeline: DeploymentPipeline | None = None
    trigger: Trigger = Trigger()
    post_sync: PostSync | None = None
    timeout: Duration = SIX_HOURS
    encryption: SecretEncryption | None = None
    attachment: Attachment | None = None
    notification: DeploymentNotification | None = None
    event_watcher: tuple[EventWatcherConfig, ...] = ()
    drift_detection: DriftDetection | None = None

    input: KubernetesDeploymentInput = KubernetesDeploymentInput()
    quick_sync: QuickSyncOptions = QuickSyncOptions()
    service: K8sResourceReference = K8sResourceReference()
    workloads: tuple[K8sResourceReference, ...] = ()
    traffic_routing: KubernetesTrafficRouting | None = None
    variant_label: KubernetesVariantLabel = KubernetesVariantLabel()
    resource_routes: tuple[KubernetesResourceRoute, ...] = ()

    @property
    def stages(self) -> tuple[PipelineStage, ...]:
        """The pipeline's stages; empty means quick sync only."""
        return self.pipeline.stages if self.pipeline is not None else ()

    @property
    def auto_rollback(self) -> bool:
        """Whether a failed deployment rolls back by itself."""
        if self.planner.auto_rollback is not None:
            return self.planner.auto_rollback
        return self.input.auto_rollback
