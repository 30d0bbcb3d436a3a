"""The cut-over from PipeCD on kubesim: objects applied PipeCD's way, imported, then deployed.

PipeCD applies with a client-side `kubectl apply` and annotates. Before
`slipway app import`, the first Slipway deployment was a QUICK_SYNC (no running
commit), the objects carried no Slipway label (prune and drift could not see
them), and a field deleted from git stayed, still owned by
`kubectl-client-side-apply`. Here the planner and the executor run together:
after the import, a ConfigMap change with a field removed is planned as a
PIPELINE against PipeCD's running commit, the primary's pods roll, and the
removed fields are gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubesim import KubeSim
from kubesim.testing import Kubectl, find_kubectl
from services.api.decider import APPLICATION, AdoptApplication
from shared.eventlog import NO_STREAM, new_events
from shared.eventlog.envelope import envelope
from shared.eventlog.execute import execute
from shared.events import vocabulary
from shared.events.catalog import DeploymentPlanned, DeploymentTriggered
from shared.events.streams import application_stream
from shared.git import GitCache
from shared.platform import KubernetesPlatform
from shared.platform.adoption import running_commit
from tests.support import Backends, running
from tests.support.executor import APP, APP_PATH, CONFIG, Harness
from tests.support.git_helpers import WorkRepo
from tests.support.planner import Harness as PlannerHarness
from tests.support.planner import wait_for_event

PIPECD_APP = "3c6f0b2e-7d1a-4e5b-9c8d-1a2b3c4d5e6f"

PIPELINE = """\
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        with: {replicas: 1}
      - name: K8S_PRIMARY_ROLLOUT
      - name: K8S_CANARY_CLEAN
"""

MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web{legacy}}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web, pipecd.dev/variant: primary}}
  template:
    metadata:
      labels: {{app: web, pipecd.dev/variant: primary}}
    spec:
      containers:
        - name: web
          image: ghcr.io/acme/web:v1
          envFrom: [{{configMapRef: {{name: web-config}}}}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data: {{LEVEL: {level}{extra}}}
"""


def files(*, level: str, removed: bool) -> dict[str, str | bytes | None]:
    manifests = MANIFESTS.format(
        level=level,
        legacy="" if removed else ", legacy: 'yes'",
        extra="" if removed else ", EXTRA: '1'",
    )
    return {
        f"{APP_PATH}/.pipe.yaml": CONFIG.format(extra=PIPELINE),
        f"{APP_PATH}/manifests.yaml": manifests,
    }


def pipecd_applied(manifests: str, commit: str) -> str:
    """The manifests as piped applies them: in the app's namespace, with its annotations."""
    annotations = (
        f"  annotations: {{pipecd.dev/managed-by: piped, pipecd.dev/application: {PIPECD_APP}, "
        f"pipecd.dev/commit-hash: {commit}, pipecd.dev/piped: p1}}\n"
        "  namespace: shop\n"
    )
    return manifests.replace("  name: web\n", "  name: web\n" + annotations, 1).replace(
        "  name: web-config\n", "  name: web-config\n" + annotations
    )


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.05) as sim:
        yield sim


@pytest.fixture
async def harness(backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path) -> Harness:
    return await Harness.over(backends, sim, work, tmp_path)


@pytest.fixture
def kubectl(harness: Harness, tmp_path: Path) -> Kubectl:
    binary = find_kubectl()
    if binary is None:
        pytest.skip("kubectl is not installed")
    return Kubectl(binary, harness.kubeconfig, tmp_path / "kubectl-cache")


async def _trigger(harness: Harness, deployment_id: str, commit: str) -> None:
    triggered = DeploymentTriggered(
        deployment_id=deployment_id,
        application_id=APP,
        trigger=vocabulary.Trigger("on_commit"),
        commit_hash=commit,
        commit_message="debug logs, no EXTRA",
        repository_id="config",
        commit_branch="main",
    )
    await harness.store.append(
        f"deployment-{deployment_id}", new_events([triggered]), expected_version=NO_STREAM
    )


async def test_imported_pipecd_app_deploys_a_config_change_and_a_field_removal(
    harness: Harness, backends: Backends, kubectl: Kubectl, tmp_path: Path
) -> None:
    v1_files = files(level="info", removed=False)
    v1 = harness.work.commit(v1_files, "v1, deployed by PipeCD")
    v2 = harness.work.commit(files(level="debug", removed=True), "debug logs, no EXTRA")
    await kubectl(
        "apply", "-f", "-", stdin="apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
    )
    text = v1_files[f"{APP_PATH}/manifests.yaml"]
    assert isinstance(text, str)
    await kubectl("apply", "-f", "-", stdin=pipecd_applied(text, v1))  # client-side, as piped
    await kubectl("rollout", "status", "deploy/web", "-n", "shop", "--timeout=30s")

    planner = PlannerHarness(backends, GitCache(tmp_path / "planner-cache"), harness.work.url)
    async with (
        KubernetesPlatform(harness.kubeconfig) as cluster,
        harness.running_app(),
        running(planner.consumer.run, planner.planner.retry_waiting),
    ):
        before: Any = await cluster.get("apps/Deployment/shop/web")
        managers = {m["manager"] for m in before["metadata"]["managedFields"]}
        assert "kubectl-client-side-apply" in managers
        sets_before = await _replicasets(kubectl)

        # slipway app import, step by step: find, take the commit, take over, record.
        found = await cluster.pipecd_objects(PIPECD_APP)
        commit = running_commit([item for _, item in found])
        assert commit == v1
        keys = await cluster.take_over(found, APP, now="2026-12-07T08:00:00Z")
        assert keys == ["/ConfigMap/shop/web-config", "apps/Deployment/shop/web"]
        await execute(
            harness.store,
            application_stream(APP),
            APPLICATION,
            AdoptApplication(
                application_id=APP,
                running_commit_hash=commit,
                resources=tuple(keys),
                pipecd_application_id=PIPECD_APP,
            ),
            envelope(actor="alice"),
        )
        assert [m.key for m in await cluster.live_resources(APP)] == keys  # labelled

        await _trigger(harness, "d2", v2)
        planned = await wait_for_event(harness.store, "d2", DeploymentPlanned, within_s=30)
        assert isinstance(planned, DeploymentPlanned)
        assert planned.strategy == "pipeline", planned.reason  # not quick_sync
        assert planned.running_commit_hash == v1
        assert (await harness.completed("d2", within=60)).status == "SUCCESS"

        config: Any = await cluster.get("/ConfigMap/shop/web-config")
        assert config["data"] == {"LEVEL": "debug"}  # EXTRA, removed from git, is gone
        after: Any = await cluster.get("apps/Deployment/shop/web")
        assert "legacy" not in after["metadata"]["labels"]
        # The identity PipeCD gave the objects stays: a query by its id still finds them.
        for key in keys:
            adopted: Any = await cluster.get(key)
            assert adopted["metadata"]["annotations"]["pipecd.dev/application"] == PIPECD_APP
        assert await cluster.get("apps/Deployment/shop/web-canary") is None
        annotations = after["spec"]["template"]["metadata"].get("annotations") or {}
        assert annotations.get("pipecd.dev/config-hash")  # the primary's pods roll
        assert len(await _replicasets(kubectl) - sets_before) == 1


async def _replicasets(kubectl: Kubectl) -> set[str]:
    listed = (await kubectl("get", "rs", "-n", "shop", "-o", "json")).json()["items"]
    return {
        rs["metadata"]["name"]
        for rs in listed
        if any(o.get("name") == "web" for o in rs["metadata"].get("ownerReferences") or ())
    }
