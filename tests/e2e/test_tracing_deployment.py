"""One deployment is one trace (DESIGN §11): the executor and the analysis service continue the
trace of the commit that triggered the deployment, across NATS, lease claims and takeovers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kubesim import KubeSim
from services.planner.service import CONSUMER_NAME as PLANNER
from services.planner.service import HANDLES as PLANNER_HANDLES
from services.planner.service import Planner, RepositoryRef
from shared.eventlog import NO_STREAM, new_events
from shared.events import vocabulary
from shared.events.base import RecordedEvent
from shared.events.catalog import DeploymentTriggered
from shared.events.ids import analysis_id_of
from shared.git import GitCache
from tests.support import Backends, running
from tests.support.analysis import (
    analysis_pipeline,
    analysis_replica,
    app_files_at,
    prometheus_for,
    providers,
)
from tests.support.executor import APP, Harness, app_files, deploy_v1
from tests.support.git_helpers import WorkRepo
from tests.support.tracing import ancestors, in_trace, off_trace, trace_id_of

ANALYSIS_ID = analysis_id_of("d2", "analysis")


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1) as sim:
        yield sim


@pytest.fixture
async def harness(backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path) -> Harness:
    return await Harness.over(backends, sim, work, tmp_path)


async def _commit_trace(harness: Harness, deployment_id: str) -> tuple[str, list[RecordedEvent]]:
    """The trace id of `deployment_id`'s `DeploymentTriggered`, and its stream."""
    stream = await harness.store.read_stream(f"deployment-{deployment_id}")
    [triggered] = [e for e in stream if isinstance(e.event, DeploymentTriggered)]
    return trace_id_of(triggered), stream


async def test_a_deployment_with_an_analysis_is_one_trace(
    harness: Harness,
    sim: KubeSim,
    tmp_path: Path,
    health_endpoint: str,
    spans: InMemorySpanExporter,
) -> None:
    """Every event of a deployment and of its analysis carries the commit's trace; the stage,
    Kubernetes, Prometheus and HTTP-check spans hang under the stage spans of that trace."""
    commit_tracer = trace.get_tracer("test.commit")
    extra = analysis_pipeline(duration="6s", http_url=health_endpoint)
    async with prometheus_for(sim, tmp_path / "prom") as prometheus:
        service, consumer = analysis_replica(harness, "a1", providers(prometheus, tmp_path))
        async with harness.running_app(), running(consumer.run, service.schedule):
            v1 = harness.work.commit(app_files_at("v1", extra), "v1")
            await harness.plan("d1", v1, strategy="quick_sync")
            assert (await harness.completed("d1")).status == "SUCCESS"
            v2 = harness.work.commit(app_files_at("v2", extra), "v2")
            # What the gitwatcher and the planner do: append the trigger and plan in a span.
            with commit_tracer.start_as_current_span("commit v2"):
                await harness.plan("d2", v2, running=v1)
            done = await harness.completed("d2", within=60)
    assert done.status == "SUCCESS", done.reason

    trace_id, deployment = await _commit_trace(harness, "d2")
    assert off_trace(deployment, trace_id) == []
    analysis = await harness.store.read_stream(f"analysis-{ANALYSIS_ID}")
    assert analysis, "the analysis stream is empty"
    assert off_trace(analysis, trace_id) == []

    traced = in_trace(spans, trace_id)
    names = [s.name for s in traced]
    for stage in ("K8S_CANARY_ROLLOUT", "ANALYSIS", "K8S_PRIMARY_ROLLOUT", "K8S_CANARY_CLEAN"):
        [span] = [s for s in traced if s.name == f"stage {stage}"]
        assert span.attributes is not None
        assert span.attributes["slipway.deployment_id"] == "d2"
        assert span.attributes["slipway.stage_status"] == "SUCCESS"
        assert ancestors(span, traced)[-1:] == ["commit v2"], names
    apply = [s for s in traced if s.name == "kubernetes apply"]
    assert apply and all("stage " in " ".join(ancestors(s, traced)) for s in apply), names
    # One span per call: an apply span directly inside another is a doubled decorator.
    assert all(ancestors(s, traced)[:1] != ["kubernetes apply"] for s in apply), names
    assert any(s.name == "kubernetes wait_rollout" for s in traced), names
    queries = [s for s in traced if s.name == "prometheus query_range"]
    checks = [s for s in traced if s.name == "http check GET"]
    assert queries and checks, names
    for span in [*queries, *checks]:
        assert ancestors(span, traced)[:1] == ["analysis tick"], ancestors(span, traced)
        assert "stage ANALYSIS" in ancestors(span, traced)


async def test_a_takeover_continues_the_same_trace(
    backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """A replica that takes a deployment over mid-WAIT appends under the recorded trace of the
    deployment, and its stage span joins that trace."""
    first = await Harness.over(backends, sim, work, tmp_path / "x1")
    first.replica("x1")
    wait = (
        "  pipeline:\n    stages:\n      - {name: WAIT, id: wait, with: {duration: 3s}}\n"
        "      - {name: K8S_PRIMARY_ROLLOUT, id: primary}\n"
    )
    async with first.running_app():
        v1 = await deploy_v1(first, wait)
        v2 = first.work.commit(app_files(tag="v2", extra=wait), "v2")
        with trace.get_tracer("test.commit").start_as_current_span("commit v2"):
            await first.plan("d2", v2, running=v1)
        await first.stage_started("d2", "wait")
    second = await Harness.over(backends, sim, work, tmp_path / "x2")
    second.replica("x2", lease_ttl_s=1.0)
    async with second.running():
        done = await second.completed("d2", within=40)
    assert done.status == "SUCCESS", done.reason
    trace_id, deployment = await _commit_trace(second, "d2")
    assert off_trace(deployment, trace_id) == []
    actors = {e.metadata.actor.split("#")[0] for e in deployment if e.metadata.actor}
    assert {"executor:x1", "executor:x2"} <= actors, actors
    waits = [s for s in in_trace(spans, trace_id) if s.name == "stage WAIT"]
    assert waits, "no WAIT stage span in the deployment's trace"


async def test_the_planner_and_the_executor_continue_the_trigger_trace(
    harness: Harness, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """A trigger appended in a span (as the gitwatcher does) is planned by the real planner and
    run by the executor: the plan and every stage are in the trigger's trace, the stage spans
    under the planner's span."""
    planner = Planner(
        store=harness.store,
        git=GitCache(tmp_path / "planner-cache"),
        repositories={"config": RepositoryRef(remote=harness.work.url, branch="main")},
    )

    async def nothing(_event: RecordedEvent) -> None:
        return None

    consumer = harness.consumer(
        PLANNER,
        planner.handle,
        after_commit=nothing,
        handles=PLANNER_HANDLES,
    )
    commit = harness.work.commit(app_files(tag="v1"), "v1")
    async with harness.running_app(), running(consumer.run):
        triggered = DeploymentTriggered(
            deployment_id="d1",
            application_id=APP,
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash=commit,
            commit_message="v1",
            repository_id="config",
            commit_branch="main",
        )
        with trace.get_tracer("test.gitwatcher").start_as_current_span("commit v1"):
            await harness.store.append(
                "deployment-d1", new_events([triggered]), expected_version=NO_STREAM
            )
        done = await harness.completed("d1", within=40)
    assert done.status == "SUCCESS", done.reason
    trace_id, deployment = await _commit_trace(harness, "d1")
    assert [e.event_type for e in deployment][:2] == ["deployment_triggered", "deployment_planned"]
    assert off_trace(deployment, trace_id) == []
    traced = in_trace(spans, trace_id)
    [stage] = [s for s in traced if s.name == "stage K8S_SYNC"]
    chain = ancestors(stage, traced)
    assert chain[0] == "plan deployment" and chain[-1] == "commit v1", chain
