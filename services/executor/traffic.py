"""K8S_TRAFFIC_ROUTING: sending traffic to the variants by percent.

`podselector` points the Service's variant selector at the variant that gets
100%; `istio` sets the VirtualService's route weights (other hosts keep
theirs, ours share the rest, PipeCD's split). ROLLBACK uses `route` to send
everything to the primary again.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from services.executor.decider import StageStatus
from services.executor.k8s_resources import (
    apply_manifests,
)
from services.executor.stage_context import (
    StageContext,
    StageFailed,
    StageResult,
)
from shared.config.application import (
    IstioTrafficRouting,
    K8sTrafficRoutingOptions,
    KubernetesTrafficRouting,
)
from shared.config.manifests import Manifest
from shared.deploysource import (
    DeploySource,
)
from shared.executor.options import stage_options


async def k8s_traffic_routing(ctx: StageContext) -> StageResult:
    """K8S_TRAFFIC_ROUTING: set the primary/canary/baseline weights (Service selector or Istio)."""
    options = stage_options("K8S_TRAFFIC_ROUTING", ctx.stage.options_json)
    assert isinstance(options, K8sTrafficRoutingOptions)
    weights = options.percentages()
    if sum(weights) != 100:
        raise StageFailed(
            f"the primary/canary/baseline percentages add up to {sum(weights)}, not 100"
        )
    source = await ctx.target()
    return await route(ctx, source, weights, commit=ctx.commit)


async def route(
    ctx: StageContext, source: DeploySource, weights: tuple[int, int, int], *, commit: str
) -> StageResult:
    """Send traffic to the variants by `weights` (primary, canary, baseline) in percent."""
    spec = source.config.spec
    routing = spec.traffic_routing or KubernetesTrafficRouting()
    if routing.method == "istio":
        return await _route_istio(ctx, source, weights, commit=commit)
    if routing.method != "podselector":
        raise StageFailed(f"traffic routing method {routing.method} is not supported")
    label = spec.variant_label
    values = (label.primary_value, label.canary_value, label.baseline_value)
    if 100 not in weights:
        raise StageFailed(
            "the podselector method sends all traffic to one variant: "
            f"one of primary/canary/baseline must be 100% (got {_split(weights)})"
        )
    variant = values[weights.index(100)]
    services = [m for m in source.manifests if m.kind == "Service"]
    if spec.service.name:
        services = [m for m in services if m.name == spec.service.name]
    if len(services) != 1:
        what = f"Service {spec.service.name}" if spec.service.name else "one Service"
        raise StageFailed(
            f"podselector routing needs {what} in the manifests, found {len(services)}"
        )
    service = services[0]
    body = copy.deepcopy(service.body)
    body.setdefault("spec", {}).setdefault("selector", {})[label.key] = variant
    await ctx.log.info(f"Routing all traffic of Service {service.name} to the {variant.upper()}")
    await _apply_routing(ctx, service, body, source, commit=commit)
    return StageResult(StageStatus.SUCCESS, f"All traffic goes to the {variant.upper()} variant")


async def _route_istio(
    ctx: StageContext, source: DeploySource, weights: tuple[int, int, int], *, commit: str
) -> StageResult:
    spec = source.config.spec
    istio = (spec.traffic_routing or KubernetesTrafficRouting()).istio or IstioTrafficRouting()
    name = istio.virtual_service.name
    if not name:
        raise StageFailed("istio routing needs trafficRouting.istio.virtualService.name")
    found = [m for m in source.manifests if m.kind == "VirtualService" and m.name == name]
    if not found:
        raise StageFailed(f"VirtualService {name} is not in the manifests")
    manifest = found[0]
    body = copy.deepcopy(manifest.body)
    label = spec.variant_label
    subsets = (label.primary_value, label.canary_value, label.baseline_value)
    edited = 0
    for http in (body.get("spec") or {}).get("http") or []:
        if istio.editable_routes and http.get("name") not in istio.editable_routes:
            continue
        http["route"] = _weighted_destinations(
            http.get("route") or [], istio.host, subsets, weights
        )
        edited += 1
    if not edited:
        raise StageFailed(f"VirtualService {name} has no editable HTTP route")
    await ctx.log.info(f"Setting the routes of VirtualService {name} to {_split(weights)}")
    await _apply_routing(ctx, manifest, body, source, commit=commit)
    return StageResult(StageStatus.SUCCESS, f"Traffic split {_split(weights)}")


async def _apply_routing(
    ctx: StageContext,
    manifest: Manifest,
    body: dict[str, Any],
    source: DeploySource,
    *,
    commit: str,
) -> None:
    """Apply `manifest` with its routing edited to `body`.

    The routing object (Service, VirtualService) is shared by all variants; it carries the
    PRIMARY's variant label, the variant that stays when the canary and baseline go.
    """
    await apply_manifests(
        ctx,
        [msgspec.structs.replace(manifest, body=body)],
        source,
        commit=commit,
        variant=source.config.spec.variant_label.primary_value,
    )


def _weighted_destinations(
    route: list[Any], host: str, subsets: tuple[str, str, str], weights: tuple[int, int, int]
) -> list[Any]:
    """PipeCD's split: other hosts keep their weights, ours share the rest by the percentages."""
    if not host:
        host = next((r["destination"]["host"] for r in route if r.get("destination")), "")
    if not host:
        raise StageFailed("istio routing needs trafficRouting.istio.host (no destination to copy)")
    others = [r for r in route if (r.get("destination") or {}).get("host") != host]
    share = 100 - sum(int(r.get("weight") or 0) for r in others)
    canary = weights[1] * share // 100
    baseline = weights[2] * share // 100
    ours = zip(subsets, (share - canary - baseline, canary, baseline), strict=True)
    return [
        {"destination": {"host": host, "subset": subset}, "weight": weight}
        for subset, weight in ours
    ] + others


def _split(weights: tuple[int, int, int]) -> str:
    return "primary {}%, canary {}%, baseline {}%".format(*weights)
