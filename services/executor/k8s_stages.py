"""The Kubernetes stages: K8S_SYNC, K8S_PRIMARY_ROLLOUT, the canary and baseline variants, ROLLBACK.

- K8S_SYNC: apply every manifest at the commit as the primary variant, wait
  for the workloads' rollouts, and with `prune` delete what Slipway applied
  for the application before but git no longer has.
- K8S_PRIMARY_ROLLOUT: the same for the primary (optionally `<svc>-primary`
  and the variant in the selector); `prune` spares canary and baseline.
- K8S_CANARY_ROLLOUT / K8S_BASELINE_ROLLOUT: `<name>-canary` (from the
  commit) / `<name>-baseline` (from the running commit), see
  `services.executor.variants`; K8S_CANARY_CLEAN / K8S_BASELINE_CLEAN delete the
  variant's objects, found in the cluster by their variant label.
- ROLLBACK: re-apply the running commit's manifests, route 100% to the primary
  again if the deployment routed traffic, then delete the canary and baseline.
  With no running commit (a first deployment) there is nothing to return to:
  the variants are still removed and the stage fails, as PipeCD's.
"""

from __future__ import annotations

from services.executor.decider import StageStatus
from services.executor.k8s_resources import (
    apply_manifests,
    delete_variant,
    prune,
    resource_names,
    routed,
    wait_rollouts,
)
from services.executor.stage_context import (
    StageContext,
    StageFailed,
    StageResult,
)
from services.executor.traffic import route
from services.executor.variants import (
    apply_patches,
    variant_manifests,
    variant_services,
)
from shared.config.application import (
    K8sBaselineRolloutOptions,
    K8sCanaryRolloutOptions,
    K8sPrimaryRolloutOptions,
    K8sSyncOptions,
)
from shared.config.manifests import Manifest
from shared.deploysource import DeploySource
from shared.executor.options import stage_options


async def k8s_sync(ctx: StageContext) -> StageResult:
    """K8S_SYNC: apply every manifest at the commit (pruning if asked) and wait for rollouts."""
    options = stage_options("K8S_SYNC", ctx.stage.options_json)
    assert isinstance(options, K8sSyncOptions)
    source = await ctx.target()
    spec = source.config.spec
    applied = await apply_manifests(
        ctx,
        source.manifests,
        source,
        commit=ctx.commit,
        variant=spec.variant_label.primary_value,
        add_variant_to_selector=options.add_variant_label_to_selector,
    )
    await wait_rollouts(ctx, source, applied)
    if not options.prune:
        await ctx.log.info("Resource GC was skipped because prune is not set")
    else:
        await prune(ctx, source, applied, spec.variant_label.key, spare=())
    return StageResult(StageStatus.SUCCESS, f"Applied {len(applied)} resources")


async def k8s_primary_rollout(ctx: StageContext) -> StageResult:
    """K8S_PRIMARY_ROLLOUT: apply the commit's manifests as the primary variant."""
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
    applied = await apply_manifests(
        ctx,
        manifests,
        source,
        commit=ctx.commit,
        variant=primary,
        add_variant_to_selector=options.add_variant_label_to_selector,
    )
    await wait_rollouts(ctx, source, applied)
    if options.prune:
        label = spec.variant_label
        spare = (label.canary_value, label.baseline_value)
        await prune(ctx, source, applied, label.key, spare=spare)
    return StageResult(StageStatus.SUCCESS, f"Rolled out {len(applied)} primary resources")


async def k8s_canary_rollout(ctx: StageContext) -> StageResult:
    """K8S_CANARY_ROLLOUT: `<name>-canary` copies of the workloads with the canary's replicas."""
    options = stage_options("K8S_CANARY_ROLLOUT", ctx.stage.options_json)
    assert isinstance(options, K8sCanaryRolloutOptions)
    source = await ctx.target()
    spec = source.config.spec
    manifests = list(source.manifests)
    if options.patches:
        await ctx.log.info(f"Patching manifests ({len(options.patches)} patches)")
        manifests = apply_patches(manifests, options.patches)
    canary = spec.variant_label.canary_value
    return await _roll_out_variant(
        ctx, manifests, source, options, variant=canary, commit=ctx.commit
    )


async def k8s_baseline_rollout(ctx: StageContext) -> StageResult:
    """K8S_BASELINE_ROLLOUT: copies of the running commit's workloads beside the canary."""
    options = stage_options("K8S_BASELINE_ROLLOUT", ctx.stage.options_json)
    assert isinstance(options, K8sBaselineRolloutOptions)
    if not ctx.deployment.running_commit_hash:
        raise StageFailed("no running commit to make the BASELINE variant from (first deployment)")
    source = await ctx.running()
    spec = source.config.spec
    baseline = spec.variant_label.baseline_value
    return await _roll_out_variant(
        ctx,
        list(source.manifests),
        source,
        options,
        variant=baseline,
        commit=ctx.deployment.running_commit_hash,
    )


async def _roll_out_variant(
    ctx: StageContext,
    manifests: list[Manifest],
    source: DeploySource,
    options: K8sCanaryRolloutOptions | K8sBaselineRolloutOptions,
    *,
    variant: str,
    commit: str,
) -> StageResult:
    """Apply `variant`'s copies of `manifests` (made from `commit`) and wait for their rollout."""
    # Named by the stage, not by the label value: the value is the user's to choose.
    role = "CANARY" if isinstance(options, K8sCanaryRolloutOptions) else "BASELINE"
    spec = source.config.spec
    generated = variant_manifests(
        manifests,
        variant=variant,
        suffix=options.suffix,
        replicas=options.replicas,
        create_service=options.create_service,
        service_name=spec.service.name,
        workloads=spec.workloads,
        variant_label=spec.variant_label.key,
    )
    await ctx.log.info(f"Rolling out the {role} variant: {resource_names(generated)}")
    applied = await apply_manifests(ctx, generated, source, commit=commit, variant=variant)
    await wait_rollouts(ctx, source, applied)
    return StageResult(
        StageStatus.SUCCESS, f"Rolled out the {role} variant ({resource_names(generated)})"
    )


async def k8s_canary_clean(ctx: StageContext) -> StageResult:
    """K8S_CANARY_CLEAN: delete the canary variant's resources."""
    source = await ctx.target()
    label = source.config.spec.variant_label
    deleted = await delete_variant(ctx, source, label.key, label.canary_value)
    return StageResult(StageStatus.SUCCESS, f"Removed {deleted} CANARY resources")


async def k8s_baseline_clean(ctx: StageContext) -> StageResult:
    """K8S_BASELINE_CLEAN: delete the baseline variant's resources."""
    source = await ctx.target()
    label = source.config.spec.variant_label
    deleted = await delete_variant(ctx, source, label.key, label.baseline_value)
    return StageResult(StageStatus.SUCCESS, f"Removed {deleted} BASELINE resources")


async def rollback(ctx: StageContext) -> StageResult:
    """ROLLBACK: re-apply the running commit's manifests, route traffic back, drop the variants."""
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
        applied = await apply_manifests(
            ctx,
            source.manifests,
            source,
            commit=running,
            variant=spec.variant_label.primary_value,
            add_variant_to_selector=spec.quick_sync.add_variant_label_to_selector,
        )
        await wait_rollouts(ctx, source, applied)
        if routed(ctx.deployment):
            # Traffic back to the primary before its variants go.
            await route(ctx, source, (100, 0, 0), commit=running)
    label = source.config.spec.variant_label
    removed = await delete_variant(ctx, source, label.key, label.canary_value)
    removed += await delete_variant(ctx, source, label.key, label.baseline_value)
    if problem:
        return StageResult(StageStatus.FAILURE, problem)
    return StageResult(
        StageStatus.SUCCESS,
        f"Rolled back to {running[:12]} and removed {removed} canary/baseline resources",
    )
