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
  `services.executor.variants`; K8S_CANARY_CLEAN / K8S_BASELINE_CLEAN delete the
  variant's objects, found in the cluster by their variant label.
- ROLLBACK: re-apply the running commit's manifests, then delete the canary
  and baseline. With no running commit (a first deployment) there is nothing
  to return to: the variants are still removed and the stage fails, as PipeCD's.

- K8S_TRAFFIC_ROUTING: `podselector` points the Service's variant selector at
  the variant that gets 100%; `istio` sets the VirtualService's route weights.
  ROLLBACK routes 100% to the primary again if the deployment routed traffic.
- SCRIPT_RUN / SCRIPT_RUN_ROLLBACK: `with.run` / `onRollback` (options from the
  config at the commit: the plan's are redacted) by `/bin/sh -c` in the app's
  directory of a private checkout, in a clean environment (`script.py`), its
  output capped into the stage log, the process group killed at the timeout
  (zero: the executor's default) or on cancellation.

- ANALYSIS: appends `AnalysisRequested` to `analysis-<analysis_id>` (once: a new
  stream under a derived event id) and waits, re-reading that stream, for the
  analysis service's `AnalysisConcluded`: success → SUCCESS, failure → FAILURE
  with its reason, skipped → SKIPPED; none by the stage's start plus
  `duration` plus a grace → FAILURE.

WAIT and WAIT_APPROVAL are the decider's (time and approvals).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from services.executor.decider import Deployment, Stage, StageStatus
from services.executor.script import (
    ScriptContext,
    ScriptPolicy,
    ScriptUserError,
    run_script,
    script_env,
)
from services.executor.variants import (
    VariantError,
    apply_patches,
    variant_manifests,
    variant_services,
)
from shared.config.application import (
    AnalysisOptions,
    IstioTrafficRouting,
    K8sBaselineRolloutOptions,
    K8sCanaryRolloutOptions,
    K8sPrimaryRolloutOptions,
    K8sSyncOptions,
    K8sTrafficRoutingOptions,
    KubernetesApplicationSpec,
    KubernetesTrafficRouting,
    ScriptRunOptions,
)
from shared.config.manifests import Manifest
from shared.decider import OPENING, StreamTaken
from shared.deploysource import (
    DeploySource,
    ensure_commit,
    load_deploy_source,
    register_secrets,
)
from shared.errors import ConfigError, PlatformError, SlipwayError, Unavailable
from shared.eventlog import EventStore, deterministic_event_id
from shared.eventlog.envelope import envelope
from shared.eventlog.execute import execute
from shared.events.base import RecordedEvent
from shared.events.catalog import AnalysisConcluded, AnalysisRequested, DeploymentTriggered
from shared.executor.options import OptionsError, configured_options, stage_options
from shared.git import GitCache, GitError
from shared.ids import analysis_id_of
from shared.platform import AppliedResource, KubernetesPlatform
from shared.stagelog import StageLogger
from shared.streams import stream_id

__all__ = [
    "ANALYSIS_GRACE_S",
    "STAGE_EXECUTORS",
    "Sources",
    "StageContext",
    "StageResult",
    "analysis_id_of",
    "run_stage",
]

_WORKLOAD_KINDS: Final = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
ANALYSIS_GRACE_S: Final = 300.0
"""How long past its `duration` an ANALYSIS waits for the analysis service's verdict."""


@dataclass(frozen=True)
class StageResult:
    status: StageStatus
    reason: str = ""


class StageFailed(SlipwayError):
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
            register_secrets(source)
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
    # ANALYSIS: where the request is appended and the verdict read, how often it is read.
    store: EventStore | None = None
    poll_s: float = 1.0
    analysis_grace_s: float = ANALYSIS_GRACE_S
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    script_policy: ScriptPolicy = field(default_factory=ScriptPolicy)

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
    return await _roll_out_variant(ctx, manifests, spec, options, variant=canary, commit=ctx.commit)


async def k8s_baseline_rollout(ctx: StageContext) -> StageResult:
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
        spec,
        options,
        variant=baseline,
        commit=ctx.deployment.running_commit_hash,
    )


async def _roll_out_variant(
    ctx: StageContext,
    manifests: list[Manifest],
    spec: KubernetesApplicationSpec,
    options: K8sCanaryRolloutOptions | K8sBaselineRolloutOptions,
    *,
    variant: str,
    commit: str,
) -> StageResult:
    """Apply `variant`'s copies of `manifests` (made from `commit`) and wait for their rollout."""
    # Named by the stage, not by the label value: the value is the user's to choose.
    role = "CANARY" if isinstance(options, K8sCanaryRolloutOptions) else "BASELINE"
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
    await ctx.log.info(f"Rolling out the {role} variant: {_names(generated)}")
    applied = await _apply(ctx, generated, spec, commit=commit, variant=variant)
    await _wait_rollouts(ctx, applied)
    return StageResult(StageStatus.SUCCESS, f"Rolled out the {role} variant ({_names(generated)})")


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
        if _routed(ctx.deployment):
            # Traffic back to the primary before its variants go.
            await _route(ctx, source, (100, 0, 0), commit=running)
    label = source.config.spec.variant_label
    removed = await _delete_variant(ctx, label.key, label.canary_value)
    removed += await _delete_variant(ctx, label.key, label.baseline_value)
    if problem:
        return StageResult(StageStatus.FAILURE, problem)
    return StageResult(
        StageStatus.SUCCESS,
        f"Rolled back to {running[:12]} and removed {removed} canary/baseline resources",
    )


# K8S_TRAFFIC_ROUTING ------------------------------------------------------------------------


async def k8s_traffic_routing(ctx: StageContext) -> StageResult:
    options = stage_options("K8S_TRAFFIC_ROUTING", ctx.stage.options_json)
    assert isinstance(options, K8sTrafficRoutingOptions)
    weights = options.percentages()
    if sum(weights) != 100:
        raise StageFailed(
            f"the primary/canary/baseline percentages add up to {sum(weights)}, not 100"
        )
    source = await ctx.target()
    return await _route(ctx, source, weights, commit=ctx.commit)


async def _route(
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
    await _apply_routing(ctx, service, body, spec, commit=commit)
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
    await _apply_routing(ctx, manifest, body, spec, commit=commit)
    return StageResult(StageStatus.SUCCESS, f"Traffic split {_split(weights)}")


async def _apply_routing(
    ctx: StageContext,
    manifest: Manifest,
    body: dict[str, Any],
    spec: KubernetesApplicationSpec,
    *,
    commit: str,
) -> None:
    """Apply `manifest` with its routing edited to `body`.

    The routing object (Service, VirtualService) is shared by all variants; it carries the
    PRIMARY's variant label, the variant that stays when the canary and baseline go.
    """
    await _apply(
        ctx,
        [msgspec.structs.replace(manifest, body=body)],
        spec,
        commit=commit,
        variant=spec.variant_label.primary_value,
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


# SCRIPT_RUN and SCRIPT_RUN_ROLLBACK ----------------------------------------------------


async def script_run(ctx: StageContext) -> StageResult:
    source = await ctx.target()
    options = configured_options(source.config.spec.stages, ctx.stage.id, "SCRIPT_RUN")
    assert isinstance(options, ScriptRunOptions)
    if not options.run.strip():
        raise StageFailed("SCRIPT_RUN has no script: set with.run")
    return await _run_script(ctx, source, options.run, options, rollback=False)


async def script_run_rollback(ctx: StageContext) -> StageResult:
    """The `onRollback` script of a SCRIPT_RUN stage, bounded by that stage's timeout."""
    try:
        recorded = json.loads(ctx.stage.options_json or "{}")
    except ValueError as exc:
        raise OptionsError(f"options of stage SCRIPT_RUN_ROLLBACK do not decode: {exc}") from exc
    base_id = recorded.get("baseStageId") if isinstance(recorded, dict) else None
    if not isinstance(base_id, str) or not base_id:
        raise OptionsError("options of stage SCRIPT_RUN_ROLLBACK name no baseStageId")
    source = await ctx.target()
    options = configured_options(source.config.spec.stages, base_id, "SCRIPT_RUN")
    assert isinstance(options, ScriptRunOptions)
    if not options.on_rollback.strip():
        raise OptionsError(f"stage {base_id} has no onRollback script")
    return await _run_script(ctx, source, options.on_rollback, options, rollback=True)


async def _run_script(
    ctx: StageContext,
    source: DeploySource,
    script: str,
    options: ScriptRunOptions,
    *,
    rollback: bool,
) -> StageResult:
    """Run `script` in the clean room (`script.py`) in the app directory of a checkout."""
    repo = ctx.sources.git.repository(ctx.sources.remote)
    try:
        commit = await ensure_commit(repo, ctx.commit)
    except GitError as exc:
        raise StageFailed(f"cannot check out commit {ctx.commit[:12]}: {exc}") from exc
    deployment, spec = ctx.deployment, source.config.spec
    context = ScriptContext(
        deployment_id=deployment.deployment_id,
        application_id=deployment.application_id,
        application_name=spec.name,
        triggered_at=await _triggered_at(ctx),
        commit_hash=commit,
        commander=deployment.commander,
        repository_url=ctx.sources.remote,
        summary=deployment.summary,
        labels=spec.labels,
        is_rollback=rollback,
    )
    timeout_s = ctx.script_policy.timeout_of(options.timeout.seconds)
    async with repo.checkout(commit) as tree:
        cwd = (tree / ctx.sources.path).resolve()
        if not cwd.is_relative_to(tree.resolve()) or not cwd.is_dir():
            raise StageFailed(f"the application directory {ctx.sources.path} is not at the commit")
        await ctx.log.info(f"Running the script in {ctx.sources.path} at {commit[:12]}")
        try:
            outcome = await run_script(
                script,
                tree=tree.resolve(),
                cwd=cwd,
                env=lambda home: script_env(context, home, options.env, options.secret_env),
                timeout_s=timeout_s,
                limits=ctx.script_policy,
                record=ctx.log.info,
            )
        except ScriptUserError as exc:
            raise StageFailed(str(exc)) from exc
    if outcome.exit_code is None:
        raise StageFailed(f"the script timed out after {_seconds_text(timeout_s)} and was killed")
    if outcome.exit_code != 0:
        last = " | ".join(line for line in outcome.tail if line)
        code = outcome.exit_code
        raise StageFailed(f"the script exited with code {code}" + (f": {last}" if last else ""))
    return StageResult(StageStatus.SUCCESS, "The script succeeded")


async def _triggered_at(ctx: StageContext) -> int:
    """When the deployment was triggered, in Unix seconds (0 if the log cannot say)."""
    if ctx.deployment.triggered_at is not None:
        return int(ctx.deployment.triggered_at.timestamp())
    if ctx.store is None:
        return 0
    # The runner folds without record times: the trigger's own record says it.
    history = await ctx.store.read_stream(stream_id("deployment", ctx.deployment.deployment_id))
    trigger = next((e for e in history if isinstance(e.event, DeploymentTriggered)), None)
    return int(trigger.recorded_at.timestamp()) if trigger is not None else 0


def _seconds_text(seconds: float) -> str:
    return f"{seconds:g}s"


# ANALYSIS -------------------------------------------------------------------------------


async def analysis(ctx: StageContext) -> StageResult:
    """Ask the analysis service for a verdict and wait for it (the contract in the README)."""
    options = stage_options("ANALYSIS", ctx.stage.options_json)
    assert isinstance(options, AnalysisOptions)
    store = ctx.store
    if store is None:
        raise StageFailed("ANALYSIS needs the event log, and this executor was given none")
    deployment, stage = ctx.deployment, ctx.stage
    analysis_id = analysis_id_of(deployment.deployment_id, stage.id)
    stream = stream_id("analysis", analysis_id)
    # From the stage's start, so that after a restart it waits only the time left.
    limit_s = options.duration.seconds + ctx.analysis_grace_s
    deadline = (stage.started_at or ctx.clock()) + timedelta(seconds=limit_s)
    history = await store.read_stream(stream)
    if any(isinstance(e.event, AnalysisRequested) for e in history):
        await ctx.log.info(f"Waiting again for the verdict of analysis {analysis_id}")
    else:
        await _request_analysis(ctx, store, stream, analysis_id)
        await ctx.log.info(
            f"Requested analysis {analysis_id} for {options.duration or '0s'}; "
            "waiting for the analysis service's verdict"
        )
    while True:
        concluded = _concluded(history)
        if concluded is not None:
            return await _analysis_result(ctx, concluded)
        left = (deadline - ctx.clock()).total_seconds()
        if left <= 0:
            raise StageFailed(
                f"no verdict from the analysis service within {_seconds_text(limit_s)} "
                f"(duration {options.duration or '0s'} plus {_seconds_text(ctx.analysis_grace_s)}"
                " grace)"
            )
        await asyncio.sleep(min(ctx.poll_s, left))
        try:
            history = await store.read_stream(stream)
        except Unavailable:
            continue  # the database is away for a moment: read again at the next poll


async def _request_analysis(
    ctx: StageContext, store: EventStore, stream: str, analysis_id: str
) -> None:
    deployment, stage = ctx.deployment, ctx.stage
    now = ctx.clock()
    request = AnalysisRequested(
        analysis_id=analysis_id,
        deployment_id=deployment.deployment_id,
        application_id=deployment.application_id,
        stage_id=stage.id,
        commit_hash=deployment.commit_hash,
        running_commit_hash=deployment.running_commit_hash,
        options_json=stage.options_json,
        requested_at=now,
    )
    event_id = deterministic_event_id("analysis_requested", analysis_id)
    # A new stream under a derived id: a retry of this append is a no-op, and a stream
    # that exists already holds a request for this stage (nothing else starts one),
    # asked at another time by an earlier holder: that one stands.
    with contextlib.suppress(StreamTaken):
        await execute(
            store,
            stream,
            OPENING,
            request,
            envelope(actor="executor", correlation_id=deployment.deployment_id, occurred_at=now),
            event_ids=lambda _index, _event: event_id,
        )


def _concluded(history: Sequence[RecordedEvent]) -> AnalysisConcluded | None:
    """The first verdict on the stream, if any (a verdict is final)."""
    return next((e.event for e in history if isinstance(e.event, AnalysisConcluded)), None)


async def _analysis_result(ctx: StageContext, concluded: AnalysisConcluded) -> StageResult:
    judge = f" (judge {concluded.judge} {concluded.judge_version})" if concluded.judge else ""
    reason = concluded.reason or f"the analysis concluded {concluded.verdict}"
    match concluded.verdict:
        case "success":
            await ctx.log.success(f"The analysis succeeded{judge}: {reason}")
            return StageResult(StageStatus.SUCCESS, reason)
        case "skipped":
            await ctx.log.info(f"The analysis was skipped{judge}: {reason}")
            return StageResult(StageStatus.SKIPPED, reason)
        case "failure":
            raise StageFailed(f"the analysis failed{judge}: {reason}")
        case other:
            raise StageFailed(f"the analysis service gave an unknown verdict {other!r}: {reason}")


STAGE_EXECUTORS: Final[dict[str, Executor]] = {
    "K8S_SYNC": k8s_sync,
    "K8S_PRIMARY_ROLLOUT": k8s_primary_rollout,
    "K8S_CANARY_ROLLOUT": k8s_canary_rollout,
    "K8S_CANARY_CLEAN": k8s_canary_clean,
    "K8S_BASELINE_ROLLOUT": k8s_baseline_rollout,
    "K8S_BASELINE_CLEAN": k8s_baseline_clean,
    "ROLLBACK": rollback,
    "K8S_TRAFFIC_ROUTING": k8s_traffic_routing,
    "SCRIPT_RUN": script_run,
    "SCRIPT_RUN_ROLLBACK": script_run_rollback,
    "ANALYSIS": analysis,
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


def _routed(deployment: Deployment) -> bool:
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


def _names(manifests: Iterable[Manifest]) -> str:
    return ", ".join(f"{m.kind} {m.name}" for m in manifests)
