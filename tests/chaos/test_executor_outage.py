"""Fault test: the Kubernetes API is unreachable when a stage's work starts; once it is back
the stage runs again and the deployment succeeds (an outage is not the stage's failure)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubesim import KubeSim
from shared.testing import wait_until
from slipway_sandbox._process import free_port
from slipway_sandbox.faults import FaultProxy
from tests.support import Backends
from tests.support.executor import Harness, app_files
from tests.support.git_helpers import WorkRepo


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1) as sim:
        yield sim


async def test_a_stage_waits_out_an_unreachable_cluster(
    backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path
) -> None:
    harness = await Harness.over(backends, sim, work, tmp_path)
    # The executor reaches kubesim through a proxy whose upstream is nothing at first: every
    # connection is refused, as while an API server restarts.
    async with FaultProxy(free_port()) as proxy:
        kubeconfig = harness.kubeconfig.read_text()
        harness.kubeconfig.write_text(
            kubeconfig.replace(f"127.0.0.1:{sim.port}", f"127.0.0.1:{proxy.port}")
        )
        async with harness.running_app():
            commit = work.commit(app_files(tag="v1"), "v1")
            await harness.plan("d1", commit, strategy="quick_sync")
            # Two attempts refused: the stage's work met the outage and was run again.
            await wait_until(lambda: proxy.accepted >= 2, within_s=20, what="a retried stage")
            proxy.upstream_port = sim.port  # the API server is back
            done = await harness.completed("d1", within=30)
    assert done.status == "SUCCESS", done.reason
