"""`skipOn` decided by the planner from real git: the target commit's message and the files
changed since the running commit, recorded in the plan as `skipped`; and the plan's
`version`, from the images (PipeCD's determineVersion)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.events.catalog import DeploymentPlanned
from shared.git import GitCache
from tests.support import Backends, running
from tests.support.git_helpers import WorkRepo
from tests.support.planner import Harness, wait_for_event
from tests.support.seed_repo import image_bump, seed_files

CONFIG = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: account-prd
  planner:
    alwaysUsePipeline: true
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        id: canary
      - name: WAIT
        id: wait
        with:
          duration: 1m
          skipOn:
            commitMessagePrefixes: ["[no wait]"]
      - name: SCRIPT_RUN
        id: notify
        with:
          run: "true"
          skipOn:
            paths: ["account/prd/docs/**", "**/*.md"]
      - name: K8S_PRIMARY_ROLLOUT
        id: primary
"""


@pytest.fixture
async def harness(backends: Backends, tmp_path: Path, work: WorkRepo) -> Harness:
    await backends.ensure_event_stream()
    return Harness(backends, GitCache(tmp_path / "cache"), work.url)


async def test_skip_on_is_decided_from_the_commit_message_and_the_changed_files(
    harness: Harness, work: WorkRepo
) -> None:
    steps = [
        ({**seed_files("account"), "account/prd/.pipe.yaml": CONFIG}, "initial"),
        (image_bump("account", "prd", "v2"), "[no wait] v2"),
        ({"account/prd/docs/runbook.md": "# on call\n"}, "runbook"),
        ({"account/prd/docs/runbook.md": "# on call!\n", "README.md": "x\n"}, "readme"),
    ]
    commits = [work.commit(files, message) for files, message in steps]
    plans: list[DeploymentPlanned] = []
    async with running(*harness.components()):
        await harness.register("prd")
        for n, commit in enumerate(commits):
            await harness.trigger(f"d{n}", commit, steps[n][1])
            plan = await wait_for_event(harness.store, f"d{n}", DeploymentPlanned)
            assert isinstance(plan, DeploymentPlanned)
            plans.append(plan)
            await harness.complete(f"d{n}", commit)
    assert plans[0].skipped == {}  # the first deployment: nothing to compare paths with
    assert plans[1].skipped == {
        "wait": "Skipped by skipOn.commitMessagePrefixes: the commit message starts with "
        "'[no wait]'"
    }
    assert plans[2].skipped == {
        "notify": "Skipped by skipOn.paths: all 1 changed file(s) match "
        "account/prd/docs/**, **/*.md"
    }
    assert set(plans[3].skipped) == {"notify"}  # README.md matches **/*.md too
    assert [p.version for p in plans] == ["v1", "v2", "v2", "v2"]
