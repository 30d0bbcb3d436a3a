"""The analysis service end to end, for PREVIOUS across real deployments and for a provider
that times out: the real executor, kubesim, analysis replica, and a real Prometheus (or a
local Prometheus-compatible server that answers too slowly)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from kubesim import ImageRule, KubeSim
from shared.analysis.judges import judge_named
from shared.analysis.strategies import TickInput, evaluate
from shared.events import vocabulary
from shared.events.catalog import (
    AnalysisCheck,
    AnalysisMeasured,
    AnalysisStarted,
    AnalysisTickJudged,
)
from shared.events.ids import analysis_id_of
from tests.support import Backends, running
from tests.support.analysis import (
    SlowPrometheus,
    analysis_events,
    analysis_replica,
    app_files_at,
    concluded,
    prometheus_for,
    providers,
    stage_log,
)
from tests.support.executor import Harness
from tests.support.git_helpers import WorkRepo

ERROR_RATIO = (
    'sum(rate(http_requests_total{app="web", pipecd_dev_variant="{{ .Variant.Name }}", '
    'status="500"}[5s])) / sum(rate(http_requests_total{app="web", '
    'pipecd_dev_variant="{{ .Variant.Name }}"}[5s]))'
)


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    rules = [ImageRule(image="*:bad", error_rate=0.6)]
    async with KubeSim(ready_delay_s=0.1, rules=rules) as sim:
        yield sim


@pytest.fixture
async def harness(backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path) -> Harness:
    return await Harness.over(backends, sim, work, tmp_path)


def _rollout_then_analyse(metric: dict[str, Any], duration: str, judge: str = "") -> str:
    """`extra` for the app config: K8S_PRIMARY_ROLLOUT, then ANALYSIS with `metric` (the
    new version is the primary while it is analysed, as PREVIOUS wants)."""
    analysis: dict[str, Any] = {"duration": duration, "metrics": [metric]}
    if judge:
        analysis["judge"] = judge
    stages = [
        {"name": "K8S_PRIMARY_ROLLOUT", "id": "primary"},
        {"name": "ANALYSIS", "id": "analysis", "with": analysis},
    ]
    text = yaml.safe_dump({"pipeline": {"stages": stages}}, sort_keys=False)
    return "".join(f"  {line}\n" for line in text.splitlines())


async def _deploy(harness: Harness, deployment_id: str, tag: str, extra: str, running: str) -> str:
    commit = harness.work.commit(app_files_at(tag, extra), f"{deployment_id}: {tag}")
    await harness.plan(deployment_id, commit, running=running)
    return commit


def _judged(events: list[Any]) -> list[AnalysisTickJudged]:
    return [e for e in events if isinstance(e, AnalysisTickJudged)]


async def test_previous_passes_first_then_fails_a_worse_deployment_against_the_last_good_one(
    harness: Harness, sim: KubeSim, tmp_path: Path
) -> None:
    """PREVIOUS across real deployments: the app's first analysis has nothing to compare with
    and passes (as PipeCD's); a deployment with 60 % errors fails against the window of that
    analysis; a good one after it compares with the last *successful* analysis and passes."""
    metric = {
        "strategy": "PREVIOUS",
        "provider": "prom",
        "interval": "3s",
        "deviation": "HIGH",
        "failureLimit": 0,
        "skipOnNoData": True,
        "query": ERROR_RATIO,
    }
    # PipeCD's per-tick judge: the sequential one needs two batches (minutes) to fail.
    extra = _rollout_then_analyse(metric, "9s", judge="pipecd")
    first, second, third = (analysis_id_of(d, "analysis") for d in ("d1", "d2", "d3"))
    async with prometheus_for(sim, tmp_path / "prom") as prometheus:
        service, consumer = analysis_replica(harness, "a1", providers(prometheus, tmp_path))
        async with harness.running_app(), running(consumer.run, service.schedule):
            # v1 runs (quick sync: no analysis), so that the first analysis has traffic.
            v1 = harness.work.commit(app_files_at("v1", extra), "v1")
            await harness.plan("d0", v1, strategy="quick_sync")
            assert (await harness.completed("d0")).status == "SUCCESS"
            v1 = await _deploy(harness, "d1", "v1.1", extra, running=v1)
            d1 = await harness.completed("d1", within=60)
            assert d1.status == "SUCCESS", d1.reason
            await _deploy(harness, "d2", "bad", extra, running=v1)
            d2 = await harness.completed("d2", within=60)
            await _deploy(harness, "d3", "v3", extra, running=v1)
            d3 = await harness.completed("d3", within=60)

    events = await analysis_events(harness, first)
    started = next(e for e in events if isinstance(e, AnalysisStarted))
    assert started.previous_analysis_id == "" and started.previous_started_at is None
    measured = [e for e in events if isinstance(e, AnalysisMeasured)]
    # Only this deployment's side, and the counters behind its ratio (for the sequential
    # judge, or a rejudge with it).
    assert {(m.role, m.variant) for m in measured} == {
        ("experiment", "primary"),
        ("experiment_events", "primary"),
        ("experiment_total", "primary"),
    }
    # PipeCD: the first deployment passes at its first tick with data (tick 1 may have none:
    # the new pods' rate needs two scrapes), not at the end of the duration.
    judged = _judged(events)
    assert [j.outcome for j in judged] == ["continue"] * (len(judged) - 1) + ["pass"]
    assert "no earlier successful analysis" in judged[-1].reason
    assert f"passed at tick {judged[-1].tick}" in judged[-1].reason
    [verdict] = await concluded(harness, first)
    assert verdict.verdict == "success"

    assert d2.status == "FAILURE", d2.reason
    assert "metrics[0] (PREVIOUS" in d2.reason
    events = await analysis_events(harness, second)
    started2 = next(e for e in events if isinstance(e, AnalysisStarted))
    assert started2.previous_analysis_id == first
    assert started2.previous_started_at == started.started_at
    controls = [m for m in events if isinstance(m, AnalysisMeasured) and m.role == "control"]
    assert controls and all(m.variant == "previous" for m in controls)
    for m in controls:  # the same offset from the start of the previous analysis
        assert m.window_end == pytest.approx(
            started.started_at.timestamp() + m.tick * 3.0, abs=1e-3
        )
    [verdict] = await concluded(harness, second)
    assert verdict.verdict == "failure"
    lines = await stage_log(harness, "d2", "analysis")
    assert any(line.startswith(f"PREVIOUS compares with analysis {first}") for line in lines)

    assert d3.status == "SUCCESS", d3.reason
    events = await analysis_events(harness, third)
    started3 = next(e for e in events if isinstance(e, AnalysisStarted))
    assert started3.previous_analysis_id == first  # d2's analysis failed: not a baseline
    [verdict] = await concluded(harness, third)
    assert verdict.verdict == "success"
    assert any(j.statistics for j in _judged(events))  # compared, not waved through


FIRST_PREVIOUS = AnalysisCheck(
    key="metrics[0]",
    kind=vocabulary.CheckKind.METRICS,
    strategy=vocabulary.CheckStrategy.PREVIOUS,
    interval_s=3.0,
    provider="prom",
    query="q",
    deviation=vocabulary.Deviation.HIGH,
    failure_limit=1,
)


def _primary(tick: int, *values: str, error: str = "", final: bool = False) -> TickInput:
    measured = AnalysisMeasured(
        analysis_id="a1",
        check=FIRST_PREVIOUS.key,
        tick=tick,
        role=vocabulary.SampleRole.EXPERIMENT,
        variant="primary",
        values=values,
        error=error,
    )
    return TickInput(tick, 3.0 * tick, final, experiment=measured)


def test_a_first_previous_passes_at_its_first_working_query_and_counts_failed_ones() -> None:
    """PREVIOUS with no earlier successful analysis (PipeCD's first deployment): a failed
    query is a failed tick against failureLimit; the first tick with data passes the check
    before the duration is over; no data waits (skipOnNoData) or fails a tick."""
    judge = judge_named("pipecd")
    timed_out = _primary(1, error="Prometheus prom timed out after 1 s")
    verdict = evaluate(FIRST_PREVIOUS, [timed_out], judge, has_previous=False)
    assert (verdict.outcome, verdict.failures) == ("continue", 1)
    verdict = evaluate(FIRST_PREVIOUS, [timed_out, _primary(2, "0.1")], judge, has_previous=False)
    assert (verdict.outcome, verdict.failures) == ("pass", 1)
    assert "no earlier successful analysis" in verdict.reason and "at tick 2" in verdict.reason
    twice = [timed_out, _primary(2, error="Prometheus prom timed out after 1 s")]
    verdict = evaluate(FIRST_PREVIOUS, twice, judge, has_previous=False)
    assert verdict.outcome == "fail" and "timed out" in verdict.reason
    skipping = msgspec.structs.replace(FIRST_PREVIOUS, skip_on_no_data=True)
    assert evaluate(skipping, [_primary(1)], judge, has_previous=False).outcome == "continue"
    assert evaluate(skipping, [_primary(1, final=True)], judge, has_previous=False).outcome == (
        "pass"
    )
    verdict = evaluate(FIRST_PREVIOUS, [_primary(1), _primary(2)], judge, has_previous=False)
    assert verdict.outcome == "fail" and "no data for primary" in verdict.reason


def _slow_metric(failure_limit: int) -> dict[str, Any]:
    return {
        "strategy": "THRESHOLD",
        "provider": "slow",
        "interval": "2s",
        "timeout": "1s",
        "failureLimit": failure_limit,
        "skipOnNoData": False,
        "expected": {"max": 0.1},
        "query": ERROR_RATIO,
    }


async def test_a_provider_that_times_out_fails_the_analysis_naming_the_timeout(
    harness: Harness,
) -> None:
    """A Prometheus that answers slower than the metric's timeout: the tick records the
    timeout as the provider's error, the stage log says so, and with failureLimit 0 the
    analysis (and the deployment) fails with a reason naming the timeout."""
    extra = _rollout_then_analyse(_slow_metric(0), "6s")
    analysis = analysis_id_of("d1", "analysis")
    async with SlowPrometheus(slow_calls=1_000) as slow:
        service, consumer = analysis_replica(harness, "a1", slow.provider("slow"))
        async with harness.running_app(), running(consumer.run, service.schedule):
            await _deploy(harness, "d1", "v1", extra, running="")
            done = await harness.completed("d1", within=60)
    assert done.status == "FAILURE"
    assert "timed out after 1 s" in done.reason and "failureLimit 0" in done.reason
    events = await analysis_events(harness, analysis)
    [measured] = [e for e in events if isinstance(e, AnalysisMeasured)]
    assert measured.error == "Prometheus slow timed out after 1 s"
    assert measured.values == () and measured.provider == "slow"
    [verdict] = await concluded(harness, analysis)
    assert verdict.verdict == "failure" and "timed out" in verdict.reason
    lines = await stage_log(harness, "d1", "analysis")
    assert any(
        line.startswith("[metrics[0]] tick 1 at 2 s") and "error: Prometheus slow timed out" in line
        for line in lines
    )


async def test_a_transient_timeout_within_the_failure_limit_still_passes(
    harness: Harness,
) -> None:
    """The first query times out, the later ones answer at once: with failureLimit 1 the
    timeout is one failed tick, recorded and logged, and the analysis passes."""
    extra = _rollout_then_analyse(_slow_metric(1), "6s")
    analysis = analysis_id_of("d1", "analysis")
    async with SlowPrometheus(slow_calls=1) as slow:
        service, consumer = analysis_replica(harness, "a1", slow.provider("slow"))
        async with harness.running_app(), running(consumer.run, service.schedule):
            await _deploy(harness, "d1", "v1", extra, running="")
            done = await harness.completed("d1", within=60)
    assert done.status == "SUCCESS", done.reason
    events = await analysis_events(harness, analysis)
    measured = [e for e in events if isinstance(e, AnalysisMeasured)]
    assert [bool(m.error) for m in measured] == [True, False, False]
    assert "timed out after 1 s" in measured[0].error
    judged = _judged(events)
    assert [j.failures for j in judged] == [1, 1, 1]
    assert judged[-1].outcome == "pass" and "2 of 3 tick(s) passed" in judged[-1].reason
    [verdict] = await concluded(harness, analysis)
    assert verdict.verdict == "success"
    lines = await stage_log(harness, "d1", "analysis")
    assert any("tick 1 at 2 s" in line and "timed out after 1 s" in line for line in lines)
