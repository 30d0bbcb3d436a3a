"""A ConfigMap-only commit reaches the primary's pods, through the executor on kubesim.

Before `pipecd.dev/config-hash`, the canary got the new ConfigMap copy, analysis
passed, and the primary kept its pod template, hence its pods and the old config.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubesim import KubeSim
from shared.config.manifests import Manifest
from shared.platform import KubernetesPlatform
from shared.platform.confighash import hash_configs
from tests.support import Backends
from tests.support.executor import APP_PATH, CONFIG, Harness
from tests.support.git_helpers import WorkRepo

HASH = "pipecd.dev/config-hash"

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
          duration: 1s
      - name: K8S_PRIMARY_ROLLOUT
        id: primary
      - name: K8S_CANARY_CLEAN
        id: clean
"""

MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: ghcr.io/acme/web:{tag}
          envFrom: [{{configMapRef: {{name: web-config}}}}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data: {{LEVEL: {level}}}
"""


PRIMARY_THEN_WAIT = """\
  pipeline:
    stages:
      - name: K8S_PRIMARY_ROLLOUT
        id: primary
      - name: WAIT
        id: wait
        with:
          duration: 60s
"""


def files(
    *, level: str, tag: str = "v1", pipeline: str = CANARY_PIPELINE
) -> dict[str, str | bytes | None]:
    return {
        f"{APP_PATH}/.pipe.yaml": CONFIG.format(extra=pipeline),
        f"{APP_PATH}/manifests.yaml": MANIFESTS.format(level=level, tag=tag),
    }


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.05) as sim:
        yield sim


@pytest.fixture
async def harness(backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path) -> Harness:
    return await Harness.over(backends, sim, work, tmp_path)


@pytest.fixture
async def cluster(harness: Harness) -> AsyncIterator[KubernetesPlatform]:
    async with KubernetesPlatform(harness.kubeconfig) as platform:
        yield platform


async def template_hash(cluster: KubernetesPlatform, name: str) -> str | None:
    live = await cluster.get(f"apps/Deployment/shop/{name}")
    assert live is not None, f"Deployment shop/{name} is not there"
    annotations: dict[str, Any] = live["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations.get(HASH)


async def replicasets_of(sim: KubeSim, deployment: str) -> set[str]:
    async with aiohttp.ClientSession() as http:
        url = f"{sim.url}/apis/apps/v1/namespaces/shop/replicasets"
        async with http.get(url) as response:
            assert response.status == 200
            items = (await response.json())["items"]
    return {
        rs["metadata"]["name"]
        for rs in items
        if any(o.get("name") == deployment for o in rs["metadata"].get("ownerReferences") or ())
    }


async def deploy(harness: Harness, deployment_id: str, commit: str, **plan: str) -> None:
    await harness.plan(deployment_id, commit, **plan)
    assert (await harness.completed(deployment_id)).status == "SUCCESS"


async def test_a_config_map_only_change_rolls_the_primary_through_the_canary_pipeline(
    harness: Harness, cluster: KubernetesPlatform, sim: KubeSim
) -> None:
    """v1 quick-synced; a commit changing only the ConfigMap, deployed with the canary
    pipeline: the canary's hash is over its own copy `web-config-canary`, and the primary's
    pod template changes, so the controller makes it a new ReplicaSet."""
    v1 = harness.work.commit(files(level="info"), "v1")
    v2 = harness.work.commit(files(level="debug"), "debug logs")
    async with harness.running_app():
        await deploy(harness, "d1", v1, strategy="quick_sync")
        before = await template_hash(cluster, "web")
        assert before is not None
        primary_sets = await replicasets_of(sim, "web")
        await harness.plan("d2", v2, running=v1)
        await harness.stage_started("d2", "wait")
        canary_hash = await template_hash(cluster, "web-canary")
        assert canary_hash is not None and canary_hash != before
        canary_config = await cluster.get("/ConfigMap/shop/web-config-canary")
        assert canary_config is not None and canary_config["data"] == {"LEVEL": "debug"}
        copy = Manifest(
            api_version="v1",
            kind="ConfigMap",
            name="web-config-canary",
            namespace="shop",
            body={"data": {"LEVEL": "debug"}},
        )
        assert canary_hash == hash_configs([copy])
        assert (await harness.completed("d2")).status == "SUCCESS"
    after = await template_hash(cluster, "web")
    assert after is not None and after not in (before, canary_hash)
    assert len(await replicasets_of(sim, "web") - primary_sets) == 1


async def test_quick_sync_rolls_on_a_config_change_and_not_on_a_config_free_one(
    harness: Harness, cluster: KubernetesPlatform, sim: KubeSim
) -> None:
    """Quick sync of a ConfigMap-only change rolls the Deployment; an image-only change keeps
    the hash (its own template change rolls it)."""
    v1 = harness.work.commit(files(level="info"), "v1")
    v2 = harness.work.commit(files(level="debug"), "debug logs")
    v3 = harness.work.commit(files(level="debug", tag="v2"), "v2 image")
    async with harness.running_app():
        await deploy(harness, "d1", v1, strategy="quick_sync")
        first = await template_hash(cluster, "web")
        sets = await replicasets_of(sim, "web")
        await deploy(harness, "d2", v2, strategy="quick_sync", running=v1)
        second = await template_hash(cluster, "web")
        assert second is not None and second != first
        assert len(await replicasets_of(sim, "web") - sets) == 1
        await deploy(harness, "d3", v3, strategy="quick_sync", running=v2)
        assert await template_hash(cluster, "web") == second


async def test_rollback_restores_the_running_commits_config_hash(
    harness: Harness, cluster: KubernetesPlatform, sim: KubeSim
) -> None:
    """The primary rolled to a ConfigMap change, then the deployment is cancelled: ROLLBACK
    re-applies the running commit, whose hash brings back the old pod template (and its
    ReplicaSet), so the pods run the old config again."""
    v1 = harness.work.commit(files(level="info", pipeline=PRIMARY_THEN_WAIT), "v1")
    v2 = harness.work.commit(files(level="debug", pipeline=PRIMARY_THEN_WAIT), "debug logs")
    async with harness.running_app():
        await deploy(harness, "d1", v1, strategy="quick_sync")
        running = await template_hash(cluster, "web")
        sets = await replicasets_of(sim, "web")
        await harness.plan("d2", v2, running=v1)
        await harness.stage_started("d2", "wait")
        assert await template_hash(cluster, "web") not in (None, running)
        await harness.cancel("d2")
        assert (await harness.completed("d2")).status == "CANCELLED"
    assert await template_hash(cluster, "web") == running
    web = await cluster.get("apps/Deployment/shop/web")
    assert web is not None and web["metadata"]["annotations"]["slipway.dev/commit"] == v1
    assert len(await replicasets_of(sim, "web") - sets) == 1  # the rolled-back-from one
