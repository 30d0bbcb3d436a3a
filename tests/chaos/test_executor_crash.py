"""Fault test: `kill -9` the executor process mid-WAIT; its standby replica carries the log on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from functools import partial
from pathlib import Path

import pytest

from kubesim import KubeSim
from shared.eventlog import EventStore
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import DeploymentCompleted, StageCompleted, StageStarted
from shared.testing import wait_until
from tests.support import Backends, running
from tests.support.executor import Harness, app_files, write_control_config
from tests.support.git_helpers import WorkRepo
from tests.support.processes import ServiceProcess, service_env, service_processes

pytestmark = pytest.mark.slow

WAIT_S = 4.0
LEASE_TTL_S = 1.5
INSTANCES = ("proc-1", "proc-2")
PIPELINE = f"""\
  pipeline:
    stages:
      - name: K8S_PRIMARY_ROLLOUT
        id: rollout
      - name: WAIT
        id: wait
        with:
          duration: {WAIT_S:g}s
      - name: K8S_CANARY_CLEAN
        id: clean
"""


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1) as sim:
        yield sim


async def test_killed_mid_wait_resumes_with_the_time_left(
    backends: Backends, store: EventStore, work: WorkRepo, tmp_path: Path, sim: KubeSim
) -> None:
    """kill -9 during a 4 s WAIT; the other replica ends the WAIT 4 s after it began (not 4 s
    after the takeover), and the stage completed before the crash is never run again."""
    harness = await Harness.over(backends, sim, work, tmp_path)
    control = write_control_config(
        tmp_path / "slipway.yaml", remote=work.url, kubeconfig=harness.kubeconfig
    )
    env = service_env(
        backends,
        control,
        SLIPWAY_GIT_CACHE_DIR=str(tmp_path / "git"),
        SLIPWAY_EXECUTOR_LEASE_TTL_S=str(LEASE_TTL_S),
        SLIPWAY_EXECUTOR_POLL_INTERVAL_S="0.2",
        SLIPWAY_EXECUTOR_CLAIM_INTERVAL_S="0.3",
    )
    async with running(harness.relay.run), service_processes(env, tmp_path) as services:
        # Both replicas are up before the deployment exists, so the successor's start-up (seconds
        # on a loaded machine) is not part of what the WAIT's timing is checked against.
        executors = {name: services.start("executor", instance=name) for name in INSTANCES}
        for executor in executors.values():
            await wait_until(partial(_started, executor), 60, "executor up")
        await harness.register()
        commit = work.commit(app_files(extra=PIPELINE), "v1")
        await harness.plan("d1", commit)
        began = await harness.wait_for(
            "d1", lambda e: isinstance(e, StageStarted) and e.stage_id == "wait", within=30
        )
        holder = _actor_of(await store.read_stream("deployment-d1"), began)
        successor = next(name for name in INSTANCES if name != holder)
        # The subject: time spent inside the WAIT before the kill, which the successor must count.
        await asyncio.sleep(0.7)
        await executors[holder].kill_9()
        done = await harness.completed("d1", within=30)

    assert isinstance(began, StageStarted) and isinstance(done, DeploymentCompleted)
    assert done.status == "SUCCESS"
    recorded = await store.read_stream("deployment-d1")
    events = [r.event for r in recorded]
    started = [e.stage_id for e in events if isinstance(e, StageStarted)]
    completed = {e.stage_id: e for e in events if isinstance(e, StageCompleted)}
    assert started == ["rollout", "wait", "clean"]  # nothing started twice
    waited = completed["wait"].completed_at
    assert waited is not None
    took = (waited - began.started_at).total_seconds()
    # A fresh WAIT after the restart would end ≥ 0.7 + TTL + WAIT_S after it began.
    assert WAIT_S <= took < WAIT_S + 1.0, took
    actors = [r.metadata.actor or "" for r in recorded if r.metadata.actor]
    assert any(a.startswith(f"executor:{holder}#") for a in actors)
    assert completed["wait"] in [r.event for r in recorded if successor in (r.metadata.actor or "")]


def _actor_of(recorded: Sequence[RecordedEvent], event: Event) -> str:
    """The executor instance (`proc-1`) that appended `event`."""
    actor = next(r.metadata.actor for r in recorded if r.event == event)
    assert actor is not None and actor.startswith("executor:"), actor
    return actor.removeprefix("executor:").split("#")[0]


def _started(process: ServiceProcess) -> bool:
    return "service_started" in process.log()
