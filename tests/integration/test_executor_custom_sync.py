"""PipeCD's CUSTOM_SYNC stage through the executor: its script runs in the app's directory
with `with.envs`, in SCRIPT_RUN's clean room; a failing script fails the deployment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubesim import KubeSim
from shared.events.catalog import StageCompleted
from shared.stagelog import StageLogs
from shared.subjects import Subjects
from tests.support import Backends
from tests.support.executor import Harness, app_files
from tests.support.git_helpers import WorkRepo

PIPELINE = """\
  pipeline:
    stages:
      - name: CUSTOM_SYNC
        id: sync
        desc: deploy by script
        with:
          timeout: 1m
          envs: {{TARGET: {target}}}
          run: |
            echo "syncing to $TARGET from $(basename "$PWD")"
            ls manifests.yaml
            {last}
"""


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.05) as sim:
        yield sim


@pytest.fixture
async def harness(backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path) -> Harness:
    return await Harness.over(backends, sim, work, tmp_path)


async def test_custom_sync_runs_its_script_with_envs(harness: Harness, subjects: Subjects) -> None:
    ok = PIPELINE.format(target="prd", last="true")
    broken = PIPELINE.format(target="prd", last="exit 4")
    async with harness.running_app():
        await harness.plan("d1", harness.work.commit(app_files(extra=ok), "custom"))
        assert (await harness.completed("d1")).status == "SUCCESS"
        await harness.plan("d2", harness.work.commit(app_files(extra=broken), "broken"))
        assert (await harness.completed("d2")).status == "FAILURE"
    stored = await StageLogs(harness.store.pool, None, subjects).read("d1", "sync")
    messages = [line.message for line in stored]
    assert "syncing to prd from prd" in messages
    assert "manifests.yaml" in messages
    failed = [e for e in await harness.events("d2") if isinstance(e, StageCompleted)]
    assert failed[0].stage_id == "sync" and "exited with code 4" in failed[0].reason
