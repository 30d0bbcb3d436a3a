"""Stage executors: the work of each Kubernetes stage, against the platform adapter.

Each takes a `StageContext` and returns a `StageResult`; every expected
failure (the cluster refused, a rollout never got healthy, the config does
not load at the commit, a variant cannot be made) is a FAILURE with a reason
a person can act on, and the stage log says what was done step by step.
Every executor is safe to run again from the start: a replica that takes a
deployment over after a crash re-runs the stage that was running (applies are
idempotent server-side applies; deletes of what is gone are skipped).

- K8S_SYNC: apply every manifest at the commit as the primary variant, wait
  for the workloads' rollouts, and with `prune` delete what Slipway applied
  for the application before but git no longer has.
- K8S_PRIMARY_ROLLOUT: the same for the primary (optionally `<svc>-primary`
  and the variant in the selector); `prune` spares canary and baseline.
- K8S_CANARY_ROLLOUT / K8S_BASELINE_ROLLOUT: `<name>-canary` (from the
  commit) / `<name>-baseline` (from the running commit), see
  `shared.executor.variants`; K8S_CANARY_CLEAN / K8S_BASELINE_CLEAN delete the
  variant's objects, found in the cluster by their variant label.
- ROLLBACK: re-apply the running commit's manifests, then delete the canary
  and baseline. With no running commit (a first deployment) there is nothing
  to return to: the variants are still removed and the stage fails, as PipeCD's.

WAIT and WAIT_APPROVAL are the decider's (time and approvals); ANALYSIS,
SCRIPT_RUN and K8S_TRAFFIC_ROUTING are not implemented here yet and fail.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from services.executor.decider import Deployment, Stage, StageStatus
from services.executor.stagelog import StageLogger
from shared.config.application import (
    K8sBaselineRolloutOptions,
    K8sCanaryRolloutOptions,
    K8sPrimaryRolloutOptions,
    K8sSyncOptions,
    KubernetesApplicationSpec,
)
from shared.config.manifests import Manifest
from shared.deploysource import DeploySource, ensure_commit, load_deploy_source
from shared.errors import ConfigError, PlatformError, Unavailable
from shared.executor.options import OptionsError, stage_options
from shared.executor.variants import (
    VariantError,
    apply_patches,
    variant_manifests,
    variant_services,
)
from shared.git import GitCache, GitError
from shared.platform import AppliedResource, KubernetesPlatform

__all__ = ["STAGE_EXECUTORS", "Sources", "StageContext", "StageResult", "run_stage"]

_WORKLOAD_KINDS: Final = frozenset({"Deployment", "StatefulSet", "DaemonSet"})


@dataclass(frozen=True)
class StageResult:
    status: StageStatus
    reason: str = ""


class StageFailed(Exception):
    """Ends a stage as FAILURE with `reason` (raised inside an executor, caught by `run_stage`)."""


class Sources:
    """The application's config and manifests at a commit, loaded once per commit."""

    def __init__(self, git: GitCache, remote: str, path: str, config_filename: str) -> None:
        self.git = git
        self.remote = remote
        self.path = path
        self.config_filename = config_filename
        self._loaded: dict[str, DeploySource] = {}

    async def at(self, commit: str) -> DeploySource:
        """Raises `ConfigError` (fix the config) or `GitError` (git could not give the commit)."""
        source = self._loaded.get(commit)
        if source is None:
            repo = self.git.repository(self.remote)
            full = await ensure_commit(repo, commit)
            source = await load_deploy_source(repo, full, self.path, self.config_filename)
            self._loaded[commit] = source
        return source


@dataclass
class StageContext:
    deployment: Deployment
    stage: Stage
    log: StageLogger
    sources: Sources
    platform: KubernetesPlatform
    rollout_timeout_s: float = 600.0
    applied: list[AppliedResource] = field(default_factory=list)

    @property
    def commit(self) -> str:
        return self.deployment.commit_hash

    async def target(self) -> DeploySource:
        return await self._source(self.commit, "the deployment's commit")

    async def running(self) -> DeploySource:
        return await self._source(self.deployment.running_commit_hash, "the running commit")

    async def _source(self, commit: str, what: str) -> DeploySource:
        await self.log.info(f"Loading manifests at {what} {commit[:12]}")
        try:
            source = await self.sources.at(commit)
        except (ConfigError, GitError) as exc:
            raise StageFailed(f"cannot load {what} {commit[:12]}: {exc}") from exc
        await self.log.success(f"Loaded {len(source.manifests)} manifests")
        return source


Executor = Callable[[StageContext], Awaitable[StageResult]]
"""A stage kind's work."""


async def run_stage(ctx: StageContext) -> StageResult:
    """Run the stage's executor; every expected failure becomes a FAILURE with its reason."""
    executor = STAGE_EXECUTORS.get(ctx.stage.name)
    if executor is None:
        reason = f"stage {ctx.stage.name} is not supported by this executor yet"
        await ctx.log.error(reason)
        return StageResult(StageStatus.FAILURE, reason)
    try:
        return await executor(ctx)
    except StageFailed as exc:
        reason = str(exc)
    except (PlatformError, OptionsError, VariantError, ConfigError, Unavailable) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    await ctx.log.error(reason)
    return StageResult(StageStatus.FAILURE, reason)


# K8S_SYNC and K8S_PRIMARY_ROLLOUT -------------------------------------------------------


async def k8s_sync(ctx: StageContext) -> StageResult:
    options = stage_options("K8S_SYNC", ctx.stage.options_json)
    assert isinstance(options, K8sSyncOptions)
    source = await ctx.target()
    spec = source.config.spec
    applied = await _apply(
        ctx,
        source.manifests,
        spec,
        commit=ctx.commit,
        variant=spec.variant_label.primary_value,
        add_variant_to_selector=options.add_variant_label_to_selector,
    )
    await _wait_rollouts(ctx, applied)
    if not options.prune:
        await ctx.log.info("Resource GC was skipped because prune is not set")
    else:
        await _prune(ctx, applied, spec.variant_label.key, spare=())
    return StageResult(StageStatus.SUCCESS, f"Applied {len(applied)} resources")


async def k8s_primary_rollout(ctx: StageContext) -> StageResult:
    options = stage_options("K8S_PRIMARY_ROLLOUT", ctx.stage.options_json)
    assert isinstance(options, K8sPrimaryRolloutOptions)
    source = await ctx.target()
    spec = source.config.spec
    primary = spec.variant_label.primary_value
    manifests = list(source.manifests)
    if options.create_service:
        manifests += variant_services(
            manifests,
            variant=primary,
            suffix=options.suffix,
            service_name=spec.service.name,
            variant_label=spec.variant_label.key,
        )
    applied = await _apply(
        ctx,
        manifests,
        spec,
        commit=ctx.commit,
        variant=primary,
        add_variant_to_selector=options.add_variant_label_to_selector,
    )
    await _wait_rollouts(ctx, applied)
    if options.prune:
        label = spec.variant_label
        await _prune(ctx, applied, label.key, spare=(label.canary_value, label.baseline_value))
    return StageResult(StageStatus.SUCCESS, f"Rolled out {len(applied)} primary resources")


# Variants ---------------------------------------------------------------------------------


async def k8s_canary_rollout(ctx: StageContext) -> StageResult:
    options = stage_options("K8S_CANARY_ROLLOUT", ctx.stage.options_json)
    assert isinstance(options, K8sCanaryRolloutOptions)
    source = await ctx.target()
    spec = source.config.spec
    manifests = list(source.manifests)
    if options.patches:
        await ctx.log.info(f"Patching manifests ({len(options.patches)} patches)")
        manifests = apply_patches(manifests, options.patches)
    canary = spec.variant_label.canary_value
    generated = variant_manifests(
        manifests,
        variant=canary,
        suffix=options.suffix,
        replicas=options.replicas,
        create_service=options.create_service,
        service_name=spec.service.name,
        workloads=spec.workloads,
        variant_label=spec.variant_label.key,
    )
    await ctx.log.info(f"Rolling out the CANARY variant: {_names(generated)}")
    applied = await _apply(ctx, generated, spec, commit=ctx.commit, variant=canary)
    await _wait_rollouts(ctx, applied)
    return StageResult(StageStatus.SUCCESS, f"Rolled out the CANARY variant ({_names(generated)})")


async def k8s_baseline_rollout(ctx: StageContext) -> StageResult:
    options = stage_options("K8S_BASELINE_ROLLOUT", ctx.stage.options_json)
    assert isinstance(options, K8sBaselineRolloutOptions)
    if not ctx.deployment.running_commit_hash:
        raise StageFailed("no running commit to make the BASELINE variant from (first deployment)")
    source = await ctx.running()
    spec = source.config.spec
    baseline = spec.variant_label.baseline_value
    generated = variant_manifests(
        list(source.manifests),
        variant=baseline,
        suffix=options.suffix,
        replicas=options.replicas,
        create_service=options.create_service,
        service_name=spec.service.name,
        workloads=spec.workloads,
        variant_label=spec.variant_label.key,
    )
    applied = await _apply(
        ctx, generated, spec, commit=ctx.deployment.running_commit_hash, variant=baseline
    )
    await _wait_rollouts(ctx, applied)
    return StageResult(
        StageStatus.SUCCESS, f"Rolled out the BASELINE variant ({_names(generated)})"
    )


async def k8s_canary_clean(ctx: StageContext) -> StageResult:
    source = await ctx.target()
    label = source.config.spec.variant_label
    deleted = await _delete_variant(ctx, label.key, label.canary_value)
    return StageResult(StageStatus.SUCCESS, f"Removed {deleted} CANARY resources")


async def k8s_baseline_clean(ctx: StageContext) -> StageResult:
    source = await ctx.target()
    label = source.config.spec.variant_label
    deleted = await _delete_variant(ctx, label.key, label.baseline_value)
    return StageResult(StageStatus.SUCCESS, f"Removed {deleted} BASELINE resources")


# ROLLBACK ---------------------------------------------------------------------------------


async def rollback(ctx: StageContext) -> StageResult:
    running = ctx.deployment.running_commit_hash
    problem = ""
    if not running:
        problem = "no running commit to roll back to: this was the application's first deployment"
        await ctx.log.error(problem)
        source = await ctx.target()
    else:
        source = await ctx.running()
        spec = source.config.spec
        await ctx.log.info(f"Re-applying the manifests of the running commit {running[:12]}")
        applied = await _apply(
            ctx,
            source.manifests,
            spec,
            commit=running,
            variant=spec.variant_label.primary_value,
            add_variant_to_selector=spec.quick_sync.add_variant_label_to_selector,
        )
        await _wait_rollouts(ctx, applied)
    label = source.config.spec.variant_label
    removed = await _delete_variant(ctx, label.key, label.canary_value)
    removed += await _delete_variant(ctx, label.key, label.baseline_value)
    if problem:
        return StageResult(StageStatus.FAILURE, problem)
    return StageResult(
        StageStatus.SUCCESS,
        f"Rolled back to {running[:12]} and removed {removed} canary/baseline resources",
    )


STAGE_EXECUTORS: Final[dict[str, Executor]] = {
    "K8S_SYNC": k8s_sync,
    "K8S_PRIMARY_ROLLOUT": k8s_primary_rollout,
    "K8S_CANARY_ROLLOUT": k8s_canary_rollout,
    "K8S_CANARY_CLEAN": k8s_canary_clean,
    "K8S_BASELINE_ROLLOUT": k8s_baseline_rollout,
    "K8S_BASELINE_CLEAN": k8s_baseline_clean,
    "ROLLBACK": rollback,
}


# Helpers ----------------------------------------------------------------------------------


async def _apply(
    ctx: StageContext,
    manifests: Sequence[Manifest],
    spec: KubernetesApplicationSpec,
    *,
    commit: str,
    variant: str,
    add_variant_to_selector: bool = False,
) -> list[AppliedResource]:
    if not manifests:
        raise StageFailed("there are no manifests to apply")
    await ctx.log.info(f"Applying {len(manifests)} manifests")
    applied = await ctx.platform.apply(
        manifests,
        application_id=ctx.deployment.application_id,
        deployment_id=ctx.deployment.deployment_id,
        commit_hash=commit,
        variant=variant,
        namespace=spec.input.namespace or None,
        auto_create_namespace=spec.input.auto_create_namespace,
        add_variant_to_selector=add_variant_to_selector,
    )
    for resource in applied:
        verb = "created" if resource.created else "applied"
        await ctx.log.success(f"- {verb} {resource.kind} {resource.namespace}/{resource.name}")
    ctx.applied += applied
    return applied


async def _wait_rollouts(ctx: StageContext, applied: Iterable[AppliedResource]) -> None:
    for resource in applied:
        if resource.kind not in _WORKLOAD_KINDS:
            continue
        await ctx.log.info(f"Waiting for {resource.kind} {resource.namespace}/{resource.name}")
        status = await ctx.platform.wait_rollout(
            resource.namespace,
            resource.name,
            kind=resource.kind,
            timeout_s=ctx.rollout_timeout_s,
        )
        await ctx.log.success(f"- {status.resource}: {status.message or 'healthy'}")


async def _prune(
    ctx: StageContext,
    applied: Sequence[AppliedResource],
    variant_label: str,
    *,
    spare: Sequence[str],
) -> None:
    """Delete what Slipway applied for the application before but did not apply now.

    Objects whose variant label is in `spare` (canary, baseline) are kept.
    """
    keep = {resource.key for resource in applied}
    live = await ctx.platform.live_resources(ctx.deployment.application_id)
    gone = [m for m in live if m.key not in keep and _label(m, variant_label) not in spare]
    if not gone:
        await ctx.log.info("No live resources are gone from git")
        return
    await ctx.log.info(f"Pruning {len(gone)} resources no longer in git: {_names(gone)}")
    deleted = await ctx.platform.delete([m.key for m in gone])
    for key in deleted:
        await ctx.log.success(f"- deleted {key}")


async def _delete_variant(ctx: StageContext, key: str, value: str) -> int:
    live = await ctx.platform.live_resources(ctx.deployment.application_id)
    targets = [m for m in live if _label(m, key) == value]
    if not targets:
        await ctx.log.info(f"No {value.upper()} resources to remove")
        return 0
    # Services first, so the variant stops taking traffic before its pods go.
    targets.sort(key=lambda m: m.kind != "Service")
    deleted = await ctx.platform.delete([m.key for m in targets])
    for resource_key in deleted:
        await ctx.log.success(f"- deleted {resource_key}")
    return len(deleted)


def _label(manifest: Manifest, key: str) -> str | None:
    metadata: Any = manifest.body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    value = labels.get(key)
    return value if isinstance(value, str) else None


def _names(manifests: Iterable[Manifest]) -> str:
    return ", ".join(f"{m.kind} {m.name}" for m in manifests)
