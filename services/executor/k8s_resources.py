"""Applying, waiting for, pruning and deleting an application's Kubernetes resources.

The steps the Kubernetes stages (`k8s_stages.py`) and traffic routing
(`traffic.py`) share: every apply is a server-side apply labelled with the
application, variant and commit, so a re-run is idempotent and a prune or a
variant's clean-up finds exactly what Slipway applied. Each goes to the clusters
the `resourceRoutes` of the commit whose manifests it uses name (`ctx.platform`),
and a prune or clean-up deletes each object on the cluster it was found on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from services.executor.decider import Deployment, StageStatus
from services.executor.stage_context import (
    StageContext,
    StageFailed,
)
from shared.config.manifests import Manifest
from shared.deploysource import DeploySource
from shared.platform import AppliedResource

_WORKLOAD_KINDS: Final = frozenset({"Deployment", "StatefulSet", "DaemonSet"})


async def apply_manifests(
    ctx: StageContext,
    manifests: Sequence[Manifest],
    source: DeploySource,
    *,
    commit: str,
    variant: str,
    add_variant_to_selector: bool = False,
) -> list[AppliedResource]:
    """Apply `manifests` as `variant` at `commit` through the source's routes; what was applied."""
    if not manifests:
        raise StageFailed("there are no manifests to apply")
    spec = source.config.spec
    platform = await ctx.platform(source)
    await ctx.log.info(f"Applying {len(manifests)} manifests")
    applied = await platform.apply(
        manifests,
        application_id=ctx.deployment.application_id,
        deployment_id=ctx.deployment.deployment_id,
        commit_hash=commit,
        variant=variant,
        namespace=spec.input.namespace or None,
        auto_create_namespace=spec.input.auto_create_namespace,
        add_variant_to_selector=add_variant_to_selector,
        variant_label=spec.variant_label.key,
        pipecd_application_id=ctx.pipecd_application_id,
    )
    several = len(platform.listed) > 1
    for resource in applied:
        verb = "created" if resource.created else "applied"
        where = f" on {resource.cluster}" if several else ""
        await ctx.log.success(
            f"- {verb} {resource.kind} {resource.namespace}/{resource.name}{where}"
        )
    ctx.applied += applied
    return applied


async def wait_rollouts(
    ctx: StageContext, source: DeploySource, applied: Iterable[AppliedResource]
) -> None:
    """Wait for each applied workload to roll out (within the rollout timeout), logging each."""
    platform = await ctx.platform(source)
    for resource in applied:
        if resource.kind not in _WORKLOAD_KINDS:
            continue
        await ctx.log.info(f"Waiting for {resource.kind} {resource.namespace}/{resource.name}")
        status = await platform.wait_rollout(resource, timeout_s=ctx.rollout_timeout_s)
        await ctx.log.success(f"- {status.resource}: {status.message or 'healthy'}")


async def prune(
    ctx: StageContext,
    source: DeploySource,
    applied: Sequence[AppliedResource],
    variant_label: str,
    *,
    spare: Sequence[str],
) -> None:
    """Delete what Slipway applied for the application before but did not apply now.

    Objects whose variant label is in `spare` (canary, baseline) are kept. Compared per
    cluster: an object applied to one provider does not keep its namesake on another.
    """
    platform = await ctx.platform(source)
    keep = {(resource.cluster, resource.key) for resource in applied}
    live = await platform.live_resources(ctx.deployment.application_id)
    gone = [
        m for m in live if (m.cluster, m.key) not in keep and _label(m, variant_label) not in spare
    ]
    if not gone:
        await ctx.log.info("No live resources are gone from git")
        return
    await ctx.log.info(f"Pruning {len(gone)} resources no longer in git: {resource_names(gone)}")
    deleted = await platform.delete(gone)
    for key in deleted:
        await ctx.log.success(f"- deleted {key}")


async def delete_variant(ctx: StageContext, source: DeploySource, key: str, value: str) -> int:
    """Delete the objects labelled `key=value` (a variant) wherever they were found."""
    platform = await ctx.platform(source)
    live = await platform.live_resources(ctx.deployment.application_id)
    targets = [m for m in live if _label(m, key) == value]
    if not targets:
        await ctx.log.info(f"No {value.upper()} resources to remove")
        return 0
    # Services first, so the variant stops taking traffic before its pods go.
    targets.sort(key=lambda m: m.kind != "Service")
    deleted = await platform.delete(targets)
    for resource_key in deleted:
        await ctx.log.success(f"- deleted {resource_key}")
    return len(deleted)


def routed(deployment: Deployment) -> bool:
    """Whether a K8S_TRAFFIC_ROUTING stage of the deployment ran (or began to)."""
    return any(
        stage.name == "K8S_TRAFFIC_ROUTING" and stage.status is not StageStatus.NOT_STARTED_YET
        for stage in deployment.stages
    )


def _label(manifest: Manifest, key: str) -> str | None:
    metadata: Any = manifest.body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    value = labels.get(key)
    return value if isinstance(value, str) else None


def resource_names(manifests: Iterable[Manifest]) -> str:
    """`Kind name, …` of the manifests, for log lines and reasons."""
    return ", ".join(f"{m.kind} {m.name}" for m in manifests)
