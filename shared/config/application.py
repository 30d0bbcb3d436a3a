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

from typing import Final

import msgspec

from shared.config._base import Spec
from shared.config.event_watcher import EventWatcherConfig
from shared.config.stage_kinds import StageOptions
from shared.config.stage_options import (
    SIX_HOURS,
    AnalysisOptions,
    K8sBaselineCleanOptions,
    K8sBaselineRolloutOptions,
    K8sCanaryCleanOptions,
    K8sCanaryRolloutOptions,
    K8sPrimaryRolloutOptions,
    K8sResourcePatch,
    K8sResourcePatchOp,
    K8sResourcePatchTarget,
    K8sResourceReference,
    K8sSyncOptions,
    K8sTrafficRoutingOptions,
    QuickSyncOptions,
    RollbackOptions,
    ScriptRunOptions,
    WaitApprovalOptions,
    WaitOptions,
)
from shared.config.types import Duration, Regex
from shared.events.vocabulary import StageName

__all__ = [
    "MENTION_EVENTS",
    "NOTIFICATION_EVENTS",
    "ROUTING_METHODS",
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
    "DEPLOYMENT_STARTED",
    "DEPLOYMENT_CHAIN_SUCCEEDED",
    "DEPLOYMENT_CHAIN_FAILED",
    "DEPLOYMENT_CHAIN_CANCELLED",
    "APPLICATION_SYNCED",
    "APPLICATION_OUT_OF_SYNC",
    "APPLICATION_HEALTHY",
    "PIPED_STARTED",
    "PIPED_STOPPED",
    "STAGE_STARTED",
    "STAGE_SKIPPED",
    "STAGE_SUCCEEDED",
    "STAGE_FAILED",
    "STAGE_CANCELLED",
)

#: Every `NotificationEventType` of PipeCD (pkg/model/notificationevent.proto) without
#: `EVENT_`: what PipeCD's loader lets `notification.mentions[].event` name. Slipway sends
#: every one of them now, so the two lists are one.
MENTION_EVENTS: Final = NOTIFICATION_EVENTS


class PipelineStage(Spec, kw_only=True, frozen=True):
    """One stage; `with_` (written `with:`) holds the options of its `name`."""

    name: StageName
    id: str = ""
    desc: str = ""
    timeout: Duration = Duration(0)
    with_: StageOptions = msgspec.field(name="with")


class DeploymentPipeline(Spec, frozen=True):
    """`pipeline`: the stages a progressive deployment runs, in order."""

    stages: tuple[PipelineStage, ...] = ()


# --- the generic application spec ------------------------------------------------


class DeploymentPlanner(Spec, frozen=True):
    """`planner`: when to use the pipeline, and Slipway's override of auto rollback."""

    always_use_pipeline: bool = False
    auto_rollback: bool | None = None  # Slipway: overrides input.autoRollback when set


class DeploymentCommitMatcher(Spec, frozen=True):
    """Force a quick sync / the pipeline when the commit message matches."""

    quick_sync: Regex = Regex("")
    pipeline: Regex = Regex("")


class OnCommit(Spec, frozen=True):
    """`trigger.onCommit`: deploy on a commit touching the app's directory or `paths`."""

    disabled: bool = False
    paths: tuple[str, ...] = ()
    ignores: tuple[str, ...] = ()


class OnCommand(Spec, frozen=True):
    """`trigger.onCommand`: deploy when someone asks (`slipway app sync`, the API)."""

    disabled: bool = False


class OnOutOfSync(Spec, frozen=True):
    """`trigger.onOutOfSync`: redeploy when drift lasts `minWindow` (off by default)."""

    disabled: bool = True
    min_window: Duration = Duration.of(minutes=5)


class OnChain(Spec, frozen=True):
    """`trigger.onChain`: let deployment chains deploy this app (off by default)."""

    disabled: bool = True


class Trigger(Spec, frozen=True):
    """`trigger`: what may start a deployment of the application."""

    on_commit: OnCommit = OnCommit()
    on_command: OnCommand = OnCommand()
    on_out_of_sync: OnOutOfSync = OnOutOfSync()
    on_chain: OnChain = OnChain()


class ChainApplicationMatcher(Spec, frozen=True):
    """Which applications a chain block deploys: by name, kind and labels."""

    name: str = ""
    kind: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class DeploymentChain(Spec, frozen=True):
    """One block of `postSync.chain`: its applications deploy together."""

    applications: tuple[ChainApplicationMatcher, ...] = ()


class PostSync(Spec, frozen=True):
    """`postSync`: what happens after a successful deployment (a chain)."""

    chain: DeploymentChain | None = None


class SecretEncryption(Spec, frozen=True):
    """`encryption`: secrets encrypted in git and the files they are rendered into."""

    encrypted_secrets: dict[str, str] = msgspec.field(default_factory=dict)
    decryption_targets: tuple[str, ...] = ()


class Attachment(Spec, frozen=True):
    """`attachment`: files of the repo inlined into the target manifests."""

    sources: dict[str, str] = msgspec.field(default_factory=dict)
    targets: tuple[str, ...] = ()


class NotificationMention(Spec, frozen=True):
    """Who to mention for `event`: `slack` (PipeCD's deprecated spelling) and `slackUsers`
    are Slack user IDs, `slackGroups` group IDs; `email` PipeCD reads but never uses."""

    event: str = ""
    slack: tuple[str, ...] = ()
    slack_users: tuple[str, ...] = ()
    slack_groups: tuple[str, ...] = ()
    email: tuple[str, ...] = ()

    @property
    def all_slack_users(self) -> tuple[str, ...]:
        """`slack` and `slackUsers` together, each once (PipeCD's FindSlackUsers)."""
        return tuple(dict.fromkeys((*self.slack, *self.slack_users)))


class DeploymentNotification(Spec, frozen=True):
    """`notification`: whom to mention in the app's notifications."""

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
    """`input.helmOptions`: release name, values and value files for rendering the chart."""

    release_name: str = ""
    set_values: dict[str, str] = msgspec.field(default_factory=dict)
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
    """Istio routing: the VirtualService and host whose routes get canary weights."""

    editable_routes: tuple[str, ...] = ()
    host: str = ""
    virtual_service: K8sResourceReference = K8sResourceReference()


#: The traffic routing methods PipeCD knows; its loader takes any word (it fails at the stage).
ROUTING_METHODS: Final = ("podselector", "istio", "smi")


class KubernetesTrafficRouting(Spec, frozen=True):
    """`trafficRouting`: split by pod selector (Service) or with Istio."""

    method: str = "podselector"
    istio: IstioTrafficRouting | None = None


class KubernetesVariantLabel(Spec, frozen=True):
    """`variantLabel`: the label key and values that tell primary, canary and baseline apart."""

    key: str = "pipecd.dev/variant"
    primary_value: str = "primary"
    canary_value: str = "canary"
    baseline_value: str = "baseline"


class KubernetesProviderMatcher(Spec, frozen=True):
    """A resource route's platform provider: by name or by labels."""

    name: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class KubernetesResourceRouteMatcher(Spec, frozen=True):
    """Which manifests a resource route takes: by kind and name."""

    kind: str = ""
    name: str = ""


class KubernetesResourceRoute(Spec, frozen=True):
    """`resourceRoutes` entry: manifests that `match` go to `provider`."""

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
