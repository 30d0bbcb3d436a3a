"""The executor end to end on kubesim: sync, canary, cancel, rollback, approval, replicas."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from kubesim import ImageRule, KubeSim
from shared.eventlog import new_events
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    AnalysisConcluded,
    AnalysisRequested,
    DeploymentCompleted,
    DeploymentStarted,
    StageApproved,
    StageCompleted,
    StageStarted,
)
from shared.events.ids import analysis_id_of
from shared.platform import KubernetesPlatform
from shared.stagelog import StageLogs
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support import Backends
from tests.support.executor import (
    APP,
    APP_PATH,
    Harness,
    app_files,
    deploy_v1,
    deploy_v2,
)
from tests.support.git_helpers import WorkRepo
from tests.support.processes import wait_gone

CANARY_PIPELINE = """\
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        id: canary
        with:
          replicas: 50%
      - name: WAIT
        id: wait
        with:
          duration: {wait}
      - name: K8S_PRIMARY_ROLLOUT
        id: primary
      - name: K8S_CANARY_CLEAN
        id: clean
"""


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1, rules=[ImageRule(image="*:bad", crash_loop=True)]) as sim:
        yield sim


@pytest.fixture
async def harness(backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path) -> Harness:
    return await Harness.over(backends, sim, work, tmp_path)


@pytest.fixture
async def cluster(harness: Harness) -> AsyncIterator[KubernetesPlatform]:
    async with KubernetesPlatform(harness.kubeconfig) as platform:
        yield platform


def stages_of(events: list[Event]) -> list[str]:
    out = []
    for e in events:
        if isinstance(e, StageStarted):
            out.append(f"start {e.stage_id}")
        elif isinstance(e, StageCompleted):
            out.append(f"{e.status} {e.stage_id}")
    return out


async def image_of(cluster: KubernetesPlatform, name: str) -> str | None:
    obj = await cluster.get(f"apps/Deployment/shop/{name}")
    if obj is None:
        return None
    image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
    assert isinstance(image, str)
    return image


async def assert_primary_only_at(cluster: KubernetesPlatform, tag: str) -> None:
    """The canary is gone and the primary `web` runs image `tag`: how a deployment ends."""
    assert await cluster.get("apps/Deployment/shop/web-canary") is None
    assert await image_of(cluster, "web") == f"ghcr.io/acme/web:{tag}"


async def test_quick_sync_applies_waits_for_rollout_and_logs(
    harness: Harness, cluster: KubernetesPlatform, subjects: Subjects, nc: NatsClient
) -> None:
    """Quick sync: K8S_SYNC applies the commit, waits for the rollout, logs stored and live."""
    live: list[dict[str, str]] = []

    async def on_line(message: Msg) -> None:
        live.append(json.loads(message.data))

    subscription = await nc.subscribe(subjects.stage_log("d1"), cb=on_line)
    async with harness.running_app():
        commit = await deploy_v1(harness)
    events = await harness.events("d1")
    assert stages_of(events) == ["start K8sSync", "SUCCESS K8sSync"]
    started = next(e for e in events if isinstance(e, DeploymentStarted))
    assert (started.executor, started.timeout_s) == ("x1", 6 * 3600)
    web = await cluster.get("apps/Deployment/shop/web")
    assert web is not None
    annotations = web["metadata"]["annotations"]
    assert (annotations["slipway.dev/commit"], annotations["slipway.dev/deployment"]) == (
        commit,
        "d1",
    )
    assert web["status"]["readyReplicas"] == 2
    stored = await StageLogs(harness.store.pool, None, subjects).read("d1", "K8sSync")
    messages = [line.message for line in stored]
    assert "- created Deployment shop/web" in messages
    assert any(m.startswith("- Deployment shop/web: ") for m in messages)
    assert messages[-1] == "SUCCESS: Applied 2 resources"
    await wait_until(
        lambda: _at_least(live, len(messages)), within_s=5, what="every line published live"
    )
    await subscription.unsubscribe()
    assert [line["message"] for line in live] == messages


async def _at_least(items: list[dict[str, str]], count: int) -> bool:
    return len(items) >= count


async def test_sync_with_prune_deletes_what_git_no_longer_has(
    harness: Harness, cluster: KubernetesPlatform
) -> None:
    """`quickSync.prune`: a ConfigMap removed from git is deleted; the rest stays."""
    prune = "  quickSync:\n    prune: true\n"
    first = harness.work.commit(app_files(extra=prune, config_map=True), "with config map")
    second = harness.work.commit(app_files(extra=prune, tag="v2"), "without it")
    async with harness.running_app():
        await harness.plan("d1", first, strategy="quick_sync")
        assert (await harness.completed("d1")).status == "SUCCESS"
        assert await cluster.get("/ConfigMap/shop/web-extra") is not None
        await harness.plan("d2", second, strategy="quick_sync", running=first)
        assert (await harness.completed("d2")).status == "SUCCESS"
    assert await cluster.get("/ConfigMap/shop/web-extra") is None
    assert await image_of(cluster, "web") == "ghcr.io/acme/web:v2"


async def _canary_at_wait(harness: Harness, wait: str) -> str:
    """v1 running; d2 (the canary pipeline, its WAIT for `wait`) at its WAIT. The running commit."""
    running, _ = await deploy_v2(harness, CANARY_PIPELINE.format(wait=wait))
    await harness.stage_started("d2", "wait")
    return running


async def test_canary_pipeline_succeeds_and_cleans_the_canary(
    harness: Harness, cluster: KubernetesPlatform
) -> None:
    """Canary (50% of 2 = 1 pod) → WAIT → primary → clean: SUCCESS, canary gone, primary at v2."""
    async with harness.running_app():
        await _canary_at_wait(harness, "1s")
        canary = await cluster.get("apps/Deployment/shop/web-canary")
        assert canary is not None
        assert canary["spec"]["replicas"] == 1
        assert canary["spec"]["selector"]["matchLabels"]["pipecd.dev/variant"] == "canary"
        assert await image_of(cluster, "web-canary") == "ghcr.io/acme/web:v2"
        assert await image_of(cluster, "web") == "ghcr.io/acme/web:v1"
        done = await harness.completed("d2")
    assert done.status == "SUCCESS"
    assert stages_of(await harness.events("d2")) == [
        "start canary",
        "SUCCESS canary",
        "start wait",
        "SUCCESS wait",
        "start primary",
        "SUCCESS primary",
        "start clean",
        "SUCCESS clean",
    ]
    await assert_primary_only_at(cluster, "v2")


async def test_cancel_with_rollback_restores_the_running_commit(
    harness: Harness, cluster: KubernetesPlatform
) -> None:
    """Cancel with rollback mid-WAIT: the WAIT is CANCELLED, ROLLBACK re-applies v1 and removes
    the canary, and the deployment ends CANCELLED."""
    async with harness.running_app():
        v1 = await _canary_at_wait(harness, "60s")
        assert await cluster.get("apps/Deployment/shop/web-canary") is not None
        await harness.cancel("d2")
        done = await harness.completed("d2")
    assert (done.status, done.reason) == (
        "CANCELLED",
        "Cancelled by bob while executing stage wait",
    )
    assert stages_of(await harness.events("d2")) == [
        "start canary",
        "SUCCESS canary",
        "start wait",
        "CANCELLED wait",
        "start Rollback",
        "SUCCESS Rollback",
    ]
    await assert_primary_only_at(cluster, "v1")
    web = await cluster.get("apps/Deployment/shop/web")
    assert web is not None
    # Re-applied by d2's rollback, at the running commit.
    assert web["metadata"]["annotations"]["slipway.dev/deployment"] == "d2"
    assert web["metadata"]["annotations"]["slipway.dev/commit"] == v1


async def test_cancel_without_rollback_leaves_the_cluster_as_it_is(
    harness: Harness, cluster: KubernetesPlatform
) -> None:
    """Cancel without rollback: CANCELLED at once, no ROLLBACK stage, the canary stays."""
    async with harness.running_app():
        await _canary_at_wait(harness, "60s")
        await harness.cancel("d2", with_rollback=False)
        done = await harness.completed("d2")
    assert done.status == "CANCELLED"
    assert stages_of(await harness.events("d2")) == [
        "start canary",
        "SUCCESS canary",
        "start wait",
        "CANCELLED wait",
    ]
    assert await image_of(cluster, "web-canary") == "ghcr.io/acme/web:v2"


async def test_failed_canary_rolls_back_automatically(
    harness: Harness, cluster: KubernetesPlatform
) -> None:
    """A canary that never gets healthy fails its stage; the hidden ROLLBACK runs; FAILURE."""
    harness.replica("x1", rollout_timeout_s=1.5)
    extra = CANARY_PIPELINE.format(wait="1s")
    async with harness.running_app():
        await deploy_v2(harness, extra, tag="bad", message="bad image")
        done = await harness.completed("d2")
    assert done.status == "FAILURE"
    assert done.reason.startswith("Failed while executing stage canary: RolloutFailed:")
    assert stages_of(await harness.events("d2")) == [
        "start canary",
        "FAILURE canary",
        "start Rollback",
        "SUCCESS Rollback",
    ]
    await assert_primary_only_at(cluster, "v1")


async def test_wait_approval_ignores_a_refused_approver_and_continues_once_approved(
    harness: Harness,
) -> None:
    """WAIT_APPROVAL: an approval by someone not listed does not count; a listed one ends it."""
    extra = (
        "  pipeline:\n    stages:\n      - name: WAIT_APPROVAL\n        id: approve\n"
        "        with:\n          approvers: [ann]\n"
    )
    commit = harness.work.commit(app_files(extra=extra), "needs approval")
    async with harness.running_app():
        await harness.plan("d1", commit)
        await harness.wait_for("d1", lambda e: isinstance(e, StageStarted))
        await harness.request(
            "d1", StageApproved(deployment_id="d1", stage_id="approve", approver="eve")
        )
        await harness.request(
            "d1", StageApproved(deployment_id="d1", stage_id="approve", approver="ann")
        )
        done = await harness.completed("d1")
    assert done.status == "SUCCESS"
    completed = [e for e in await harness.events("d1") if isinstance(e, StageCompleted)]
    assert [(c.stage_id, c.status, c.reason) for c in completed] == [
        ("approve", "SUCCESS", "Approved by ann")
    ]


async def test_two_replicas_never_run_one_deployment_together(harness: Harness) -> None:
    """Two replicas of two slots, five deployments: each run by one holder, its stages once."""
    extra = (
        "  pipeline:\n    stages:\n      - name: WAIT\n        with: {duration: 500ms}\n"
        "      - name: WAIT\n        with: {duration: 500ms}\n"
    )
    commit = harness.work.commit(app_files(extra=extra), "two waits")
    harness.replica("x1", max_concurrent=2)
    harness.replica("x2", max_concurrent=2)
    ids = [f"d{n}" for n in range(5)]
    async with harness.running_app():
        for deployment_id in ids:
            await harness.plan(deployment_id, commit)
        for deployment_id in ids:
            assert (await harness.completed(deployment_id)).status == "SUCCESS"
    ran = [d for executor in harness.executors for d in executor.ran]
    assert sorted(ran) == ids  # each taken up once, by one replica
    assert all(executor.ran for executor in harness.executors)  # both had to work
    for deployment_id in ids:
        recorded = await harness.store.read_stream(f"deployment-{deployment_id}")
        actors = {r.metadata.actor for r in recorded[2:]}  # after the trigger and the plan
        assert len(actors) == 1, actors
        assert stages_of([r.event for r in recorded]) == [
            "start stage-0",
            "SUCCESS stage-0",
            "start stage-1",
            "SUCCESS stage-1",
        ]


async def test_burst_schedule_returns_once_nothing_is_left(harness: Harness) -> None:
    """Burst mode: the scheduler runs what is planned and returns when nothing is open."""
    executor = harness.replica("x1")
    commit = harness.work.commit(app_files(), "v1")
    await harness.register()
    await harness.plan("d1", commit, strategy="quick_sync")
    stop = asyncio.Event()
    feeding = [
        asyncio.create_task(harness.relay.run(stop)),
        asyncio.create_task(harness.consumers[0].run(stop)),
    ]
    # Registered by the consumer first, so the scheduler has something to find.
    await wait_until(lambda: executor.leases.holder_of("d1"), within_s=10, what="registration")
    await asyncio.wait_for(executor.schedule(stop, burst=True), 20)
    stop.set()
    await asyncio.gather(*feeding)
    assert (await harness.completed("d1", within=1)).status == "SUCCESS"


# SCRIPT_RUN ---------------------------------------------------------------------------------

SCRIPT_PIPELINE = """\
  pipeline:
    stages:
      - name: SCRIPT_RUN
        id: prepare
        with:
          run: |
            echo "greeting=$GREETING"
            ls .pipe.yaml
            echo oops >&2
          env: {{GREETING: hello}}
          onRollback: echo "undone $GREETING" > {marker}
      - name: SCRIPT_RUN
        id: check
        with:
          run: {run}
          timeout: {timeout}
"""


async def test_script_run_logs_its_output_in_the_app_directory(
    harness: Harness, subjects: Subjects, script_scratch: Path
) -> None:
    """SCRIPT_RUN: `with.env` merged, run in the app's directory, both streams in the log."""
    marker = script_scratch / "rolled-back"
    extra = SCRIPT_PIPELINE.format(marker=marker, run="'true'", timeout="1m")
    async with harness.running_app():
        commit = harness.work.commit(app_files(extra=extra), "scripts")
        await harness.plan("d1", commit)
        assert (await harness.completed("d1")).status == "SUCCESS"
    events = await harness.events("d1")
    assert stages_of(events) == ["start prepare", "SUCCESS prepare", "start check", "SUCCESS check"]
    stored = await StageLogs(harness.store.pool, None, subjects).read("d1", "prepare")
    messages = [line.message for line in stored]
    assert [m for m in messages if m in ("greeting=hello", ".pipe.yaml", "oops")] == [
        "greeting=hello",
        ".pipe.yaml",
        "oops",
    ]
    assert not marker.exists()


@pytest.mark.usefixtures("subjects")
async def test_failed_script_rolls_back_and_runs_on_rollback(
    harness: Harness, script_scratch: Path
) -> None:
    """A non-zero exit fails the stage with the code and last lines; onRollback runs."""
    marker = script_scratch / "rolled-back"
    run = "'echo first; echo broken; exit 3'"
    extra = SCRIPT_PIPELINE.format(marker=marker, run=run, timeout="1m")
    async with harness.running_app():
        running = await deploy_v1(harness)
        commit = harness.work.commit(app_files(tag="v2", extra=extra), "v2")
        await harness.plan("d2", commit, running=running)
        assert (await harness.completed("d2")).status == "FAILURE"
    events = await harness.events("d2")
    failed = next(e for e in events if isinstance(e, StageCompleted) and e.stage_id == "check")
    assert failed.status == "FAILURE"
    assert failed.reason == "the script exited with code 3: first | broken"
    assert "SUCCESS ScriptRunRollback-prepare" in stages_of(events)
    assert marker.read_text() == "undone hello\n"


async def test_script_timeout_kills_the_process_group(
    harness: Harness, script_scratch: Path
) -> None:
    """`with.timeout` kills the script and its children; the stage fails saying so."""
    survivor, child = script_scratch / "survivor", script_scratch / "child.pid"
    run = f"'(sleep 3; touch {survivor}) & echo $! > {child}; sleep 30'"
    extra = SCRIPT_PIPELINE.format(marker=script_scratch / "rb", run=run, timeout="1s")
    async with harness.running_app():
        commit = harness.work.commit(app_files(extra=extra), "slow")
        await harness.plan("d1", commit)
        assert (await harness.completed("d1", within=15)).status == "FAILURE"
    events = await harness.events("d1")
    failed = next(e for e in events if isinstance(e, StageCompleted) and e.stage_id == "check")
    assert failed.reason == "the script timed out after 1s and was killed"
    await wait_gone(child)
    assert not survivor.exists()


# K8S_TRAFFIC_ROUTING --------------------------------------------------------------------------

ROUTED_PIPELINE = """\
{routing}
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        id: canary
        with:
          replicas: 1
      - name: K8S_TRAFFIC_ROUTING
        id: route
        with:
{split}
      - name: WAIT
        id: wait
        with:
          duration: 1m
      - name: K8S_PRIMARY_ROLLOUT
        id: primary
"""

VIRTUAL_SERVICE = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: web
spec:
  hosts: [web]
  http:
    - name: web
      route:
        - destination: {host: web.shop.svc.cluster.local, subset: primary}
          weight: 100
    - name: admin
      route:
        - destination: {host: web.shop.svc.cluster.local, subset: primary}
          weight: 100
"""

ISTIO_ROUTING = """\
  trafficRouting:
    method: istio
    istio:
      host: web.shop.svc.cluster.local
      editableRoutes: [web]
      virtualService: {name: web}"""


async def _route_then_cancel(harness: Harness, extra: str, *, files: dict[str, str]) -> None:
    """v1 running; d2 routes traffic and waits: the caller looks, then cancels with rollback."""
    running = harness.work.commit(app_files(tag="v1", extra=extra) | files, "v1")
    await harness.plan("d1", running, strategy="quick_sync")
    assert (await harness.completed("d1")).status == "SUCCESS"
    commit = harness.work.commit(app_files(tag="v2", extra=extra) | files, "v2")
    await harness.plan("d2", commit, running=running)
    await harness.stage_started("d2", "wait")


async def _cancel(harness: Harness) -> None:
    await harness.cancel("d2")
    assert (await harness.completed("d2")).status == "CANCELLED"


async def test_podselector_routing_moves_the_service_and_rollback_restores_primary(
    harness: Harness, cluster: KubernetesPlatform
) -> None:
    """podselector: the Service selects the CANARY; ROLLBACK selects the PRIMARY again."""
    extra = ROUTED_PIPELINE.format(routing="", split="          all: canary")
    async with harness.running_app():
        await _route_then_cancel(harness, extra, files={})
        service = await cluster.get("/Service/shop/web")
        assert service is not None
        assert service["spec"]["selector"] == {"app": "web", "pipecd.dev/variant": "canary"}
        await _cancel(harness)
    assert "SUCCESS route" in stages_of(await harness.events("d2"))
    service = await cluster.get("/Service/shop/web")
    assert service is not None
    assert service["spec"]["selector"] == {"app": "web", "pipecd.dev/variant": "primary"}


async def test_istio_routing_sets_virtual_service_weights_and_rollback_restores_primary(
    harness: Harness, cluster: KubernetesPlatform
) -> None:
    """istio: the editable route gets 80/20 primary/canary; ROLLBACK puts 100% back on primary."""
    extra = ROUTED_PIPELINE.format(
        routing=ISTIO_ROUTING, split="          primary: 80\n          canary: 20"
    )

    async def weights(route: int) -> list[tuple[str, int]]:
        vs = await cluster.get("networking.istio.io/VirtualService/shop/web")
        assert vs is not None
        return [
            (r["destination"]["subset"], r["weight"]) for r in vs["spec"]["http"][route]["route"]
        ]

    async with harness.running_app():
        await _route_then_cancel(harness, extra, files={f"{APP_PATH}/vs.yaml": VIRTUAL_SERVICE})
        assert await weights(0) == [("primary", 80), ("canary", 20), ("baseline", 0)]
        assert await weights(1) == [("primary", 100)]  # not in editableRoutes
        await _cancel(harness)
    assert await weights(0) == [("primary", 100), ("canary", 0), ("baseline", 0)]


# ANALYSIS: the test plays the analysis service -------------------------------------------

ANALYSIS_PIPELINE = """\
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        id: canary
        with:
          replicas: 50%
      - name: ANALYSIS
        id: analysis
{timeout}        with:
          duration: {duration}
          https:
            - url: http://web-canary.shop/healthz
              interval: 10s
              failureLimit: 1
      - name: K8S_PRIMARY_ROLLOUT
        id: primary
      - name: K8S_CANARY_CLEAN
        id: clean
"""


async def _analysis_requested(
    harness: Harness, analysis_id: str, published: asyncio.Event
) -> AnalysisRequested:
    """The request, once the relay has published it on NATS and it is in the stream."""
    await asyncio.wait_for(published.wait(), 20)
    history = await harness.store.read_stream(f"analysis-{analysis_id}")
    requests = [e.event for e in history if isinstance(e.event, AnalysisRequested)]
    assert len(requests) == 1
    return requests[0]


async def _conclude(
    harness: Harness, request: AnalysisRequested, verdict: str, reason: str
) -> None:
    concluded = AnalysisConcluded(
        analysis_id=request.analysis_id,
        deployment_id=request.deployment_id,
        stage_id=request.stage_id,
        verdict=vocabulary.Verdict(verdict),
        reason=reason,
        judge="threshold",
        judge_version="1",
    )
    await harness.store.append(
        f"analysis-{request.analysis_id}", new_events([concluded]), expected_version=None
    )


@pytest.fixture
async def requests_on_nats(nc: NatsClient, subjects: Subjects) -> AsyncIterator[asyncio.Event]:
    """Set once an `AnalysisRequested` is published on NATS, where the analysis service hears it."""
    published = asyncio.Event()

    async def on_request(_message: Msg) -> None:
        published.set()

    subscription = await nc.subscribe(subjects.events_of_type("analysis_requested"), cb=on_request)
    yield published
    await subscription.unsubscribe()


@pytest.mark.parametrize("verdict", ["success", "failure"])
async def test_analysis_waits_for_the_verdict_of_the_analysis_service(
    harness: Harness,
    cluster: KubernetesPlatform,
    requests_on_nats: asyncio.Event,
    verdict: str,
) -> None:
    """ANALYSIS requests over NATS and waits: success goes on, failure rolls back with a reason."""
    extra = ANALYSIS_PIPELINE.format(timeout="", duration="1m")
    async with harness.running_app():
        v1, v2 = await deploy_v2(harness, extra)
        request = await _analysis_requested(
            harness, analysis_id_of("d2", "analysis"), requests_on_nats
        )
        assert (request.deployment_id, request.application_id, request.stage_id) == (
            "d2",
            APP,
            "analysis",
        )
        assert (request.commit_hash, request.running_commit_hash) == (v2, v1)
        options = json.loads(request.options_json)
        assert options["duration"] == "1m0s"
        assert options["https"][0]["url"] == "http://web-canary.shop/healthz"
        assert await cluster.get("apps/Deployment/shop/web-canary") is not None
        assert stages_of(await harness.events("d2"))[-1] == "start analysis"
        await _conclude(harness, request, verdict, "error rate 0.1% (limit 1%)")
        done = await harness.completed("d2")
    events = await harness.events("d2")
    if verdict == "success":
        assert (done.status, _analysis_stage(events).reason) == (
            "SUCCESS",
            "error rate 0.1% (limit 1%)",
        )
        await assert_primary_only_at(cluster, "v2")
        return
    reason = "the analysis failed (judge threshold 1): error rate 0.1% (limit 1%)"
    _assert_analysis_failed_and_rolled_back(events, done, reason)
    await assert_primary_only_at(cluster, "v1")


def _analysis_stage(events: list[Event]) -> StageCompleted:
    return next(e for e in events if isinstance(e, StageCompleted) and e.stage_id == "analysis")


def _assert_analysis_failed_and_rolled_back(
    events: list[Event], done: DeploymentCompleted, reason: str
) -> None:
    """The ANALYSIS stage failed for `reason`, so did the deployment, and ROLLBACK ran."""
    finished = _analysis_stage(events)
    assert (finished.status, finished.reason) == ("FAILURE", reason)
    assert (done.status, done.reason) == (
        "FAILURE",
        f"Failed while executing stage analysis: {reason}",
    )
    assert stages_of(events)[-2:] == ["start Rollback", "SUCCESS Rollback"]


@pytest.mark.parametrize(
    ("stage_timeout", "duration", "reason"),
    [
        (
            "        timeout: 2s\n",
            "1m",
            "Timed out while executing stage analysis (2 s): "
            "no verdict from the analysis service within 2 s",
        ),
        ("", "1s", "no verdict from the analysis service within 2s (duration 1s plus 1s grace)"),
    ],
    ids=["stage-timeout", "duration-and-grace"],
)
async def test_analysis_without_a_verdict_fails_and_rolls_back(
    harness: Harness,
    cluster: KubernetesPlatform,
    requests_on_nats: asyncio.Event,
    stage_timeout: str,
    duration: str,
    reason: str,
) -> None:
    """No verdict by the stage's timeout (or its duration plus the grace): FAILURE, rolled back."""
    harness.replica("x1", analysis_grace_s=1.0)
    extra = ANALYSIS_PIPELINE.format(timeout=stage_timeout, duration=duration)
    async with harness.running_app():
        await deploy_v2(harness, extra)
        await _analysis_requested(harness, analysis_id_of("d2", "analysis"), requests_on_nats)
        done = await harness.completed("d2")
    _assert_analysis_failed_and_rolled_back(await harness.events("d2"), done, reason)
    assert await cluster.get("apps/Deployment/shop/web-canary") is None


async def test_analysis_resumes_after_a_restart_without_a_second_request(
    harness: Harness, requests_on_nats: asyncio.Event
) -> None:
    """A replica stopped while waiting: the next one waits on the same analysis, requested once."""
    extra = ANALYSIS_PIPELINE.format(timeout="", duration="1m")
    async with harness.running_app():
        await deploy_v2(harness, extra)
        request = await _analysis_requested(
            harness, analysis_id_of("d2", "analysis"), requests_on_nats
        )
    async with harness.running():  # the same replica, started again
        await harness.stage_started("d2", "analysis")
        await _conclude(harness, request, "success", "fine")
        assert (await harness.completed("d2")).status == "SUCCESS"
    history = await harness.store.read_stream(f"analysis-{request.analysis_id}")
    assert [type(e.event).__name__ for e in history] == ["AnalysisRequested", "AnalysisConcluded"]
    assert harness.executors[0].ran.count("d2") == 2


async def test_cancel_while_analysing_rolls_back(
    harness: Harness, cluster: KubernetesPlatform, requests_on_nats: asyncio.Event
) -> None:
    """Cancel with rollback while ANALYSIS waits: the stage is CANCELLED and ROLLBACK runs."""
    extra = ANALYSIS_PIPELINE.format(timeout="", duration="1m")
    async with harness.running_app():
        await deploy_v2(harness, extra)
        await _analysis_requested(harness, analysis_id_of("d2", "analysis"), requests_on_nats)
        await harness.cancel("d2")
        done = await harness.completed("d2")
    assert (done.status, done.reason) == (
        "CANCELLED",
        "Cancelled by bob while executing stage analysis",
    )
    assert stages_of(await harness.events("d2"))[-3:] == [
        "CANCELLED analysis",
        "start Rollback",
        "SUCCESS Rollback",
    ]
    assert await cluster.get("apps/Deployment/shop/web-canary") is None
