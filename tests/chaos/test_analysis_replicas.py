"""Fault test: two analysis service processes; the holder is `kill -9`ed mid-analysis and the
other resumes it with the time already spent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubesim import KubeSim
from shared.eventlog import EventStore
from shared.events.catalog import (
    AnalysisConcluded,
    AnalysisMeasured,
    AnalysisStarted,
    AnalysisTickJudged,
)
from shared.events.ids import analysis_id_of
from shared.stagelog import StageLogs
from shared.testing import wait_until
from tests.support import Backends
from tests.support.analysis import analysis_pipeline, app_files_at, prometheus_for, wait_started
from tests.support.executor import Harness, write_control_config
from tests.support.git_helpers import WorkRepo
from tests.support.processes import service_env, service_processes

pytestmark = pytest.mark.slow

ANALYSIS_ID = analysis_id_of("d2", "analysis")
LEASE_TTL_S = 2.0


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1) as sim:
        yield sim


async def test_two_replicas_one_runs_and_the_other_resumes_after_kill_9(
    backends: Backends, store: EventStore, work: WorkRepo, tmp_path: Path, sim: KubeSim
) -> None:
    """Only one of two replicas measures an analysis; killed after its first tick, the other
    takes the lease over, resumes on the same clock (no tick measured twice, the final tick
    at the duration) and concludes once."""
    harness = await Harness.over(backends, sim, work, tmp_path)
    extra = analysis_pipeline(duration="9s")
    async with prometheus_for(sim, tmp_path / "prom") as prometheus:
        prom = {"name": "prom", "type": "PROMETHEUS", "config": {"address": prometheus.url}}
        control = write_control_config(
            tmp_path / "slipway.yaml",
            remote=work.url,
            analysisProviders=[prom],
            analysisEgress={"allow": ["127.0.0.0/8"]},  # Prometheus is on loopback
        )
        env = service_env(
            backends,
            control,
            SLIPWAY_ANALYSIS_LEASE_TTL_S=str(LEASE_TTL_S),
            SLIPWAY_ANALYSIS_POLL_INTERVAL_S="0.2",
            SLIPWAY_ANALYSIS_CLAIM_INTERVAL_S="0.3",
        )
        async with service_processes(env, tmp_path) as services:
            processes = {
                name: services.start(
                    "analysis", instance=name, SLIPWAY_GIT_CACHE_DIR=str(tmp_path / name)
                )
                for name in ("r1", "r2")
            }
            async with harness.running_app():
                v1 = work.commit(app_files_at("v1", extra), "v1")
                await harness.plan("d1", v1, strategy="quick_sync")
                assert (await harness.completed("d1")).status == "SUCCESS"
                v2 = work.commit(app_files_at("v2", extra), "v2")
                await harness.plan("d2", v2, running=v1)
                first = await wait_started(harness, ANALYSIS_ID)
                holder = first.analyzer.removeprefix("analysis:").split("#")[0]
                other = "r2" if holder == "r1" else "r1"

                async def first_tick() -> bool:
                    history = await store.read_stream(f"analysis-{ANALYSIS_ID}")
                    return any(isinstance(e.event, AnalysisTickJudged) for e in history)

                await wait_until(first_tick, within_s=30, what="the first tick")
                await processes[holder].kill_9()
                done = await harness.completed("d2", within=60)

    assert done.status == "SUCCESS", done.reason
    recorded = await store.read_stream(f"analysis-{ANALYSIS_ID}")
    events = [r.event for r in recorded]
    starts = [e for e in events if isinstance(e, AnalysisStarted)]
    assert [(s.analyzer.split("#")[0], s.resumed) for s in starts] == [
        (f"analysis:{holder}", False),
        (f"analysis:{other}", True),
    ]
    writers = {(r.metadata.actor or "").split("#")[0] for r in recorded[1:]}
    assert writers == {f"analysis:{holder}", f"analysis:{other}"}
    ticks = [e.tick for e in events if isinstance(e, AnalysisMeasured)]
    assert ticks == sorted(set(ticks)) == [1, 2, 3]  # none twice, the missed ones caught up
    judged = [e for e in events if isinstance(e, AnalysisTickJudged)]
    assert (judged[-1].tick, judged[-1].at_s, judged[-1].final) == (3, 9.0, True)
    assert [e.verdict for e in events if isinstance(e, AnalysisConcluded)] == ["success"]
    logs = StageLogs(store.pool, None, backends.subjects)
    lines = [line.message for line in await logs.read("d2", "analysis")]
    assert any(line.startswith(f"Analysis resumed by {other}: ") for line in lines), lines
