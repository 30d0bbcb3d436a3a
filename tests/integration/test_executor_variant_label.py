"""`variantLabel` of the application config, through the executor on kubesim.

PipeCD writes the variant under `variantLabel.key` only (workloads, pod templates,
the Service selector of podselector routing, the variant annotation). Before, the
primary's workloads always got `pipecd.dev/variant`, so routing by a custom key
selected pods the primary did not have.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubesim import KubeSim
from shared.platform import KubernetesPlatform
from tests.support import Backends
from tests.support.executor import APP_PATH, CONFIG, Harness
from tests.support.git_helpers import WorkRepo

KEY = "acme.io/track"
EXTRA = f"""\
  variantLabel:
    key: {KEY}
    primaryValue: stable
    canaryValue: next
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        id: canary
        with:
          replicas: 1
      - name: K8S_TRAFFIC_ROUTING
        id: route
        with:
          all: canary
      - name: WAIT
        id: wait
        with:
          duration: 1m
      - name: K8S_PRIMARY_ROLLOUT
        id: primary
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
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def files(tag: str) -> dict[str, str | bytes | None]:
    return {
        f"{APP_PATH}/.pipe.yaml": CONFIG.format(extra=EXTRA),
        f"{APP_PATH}/manifests.yaml": MANIFESTS.format(tag=tag),
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


async def _pod_labels(cluster: KubernetesPlatform, name: str) -> dict[str, Any]:
    live = await cluster.get(f"apps/Deployment/shop/{name}")
    assert live is not None, f"Deployment shop/{name} is not there"
    labels: dict[str, Any] = live["spec"]["template"]["metadata"]["labels"]
    return labels


async def test_a_custom_variant_label_key_is_the_one_written_and_routed_on(
    harness: Harness, cluster: KubernetesPlatform
) -> None:
    """Primary and canary pods carry `acme.io/track` (stable/next), not `pipecd.dev/variant`;
    podselector routing selects on it, and the rollback selects the primary's pods again."""
    v1 = harness.work.commit(files("v1"), "v1")
    v2 = harness.work.commit(files("v2"), "v2")
    async with harness.running_app():
        await harness.plan("d1", v1, strategy="quick_sync")
        assert (await harness.completed("d1")).status == "SUCCESS"
        assert await _pod_labels(cluster, "web") == {"app": "web", KEY: "stable"}
        await harness.plan("d2", v2, running=v1)
        await harness.stage_started("d2", "wait")
        assert await _pod_labels(cluster, "web-canary") == {"app": "web", KEY: "next"}
        service = await cluster.get("/Service/shop/web")
        assert service is not None
        assert service["spec"]["selector"] == {"app": "web", KEY: "next"}
        await harness.cancel("d2")
        assert (await harness.completed("d2")).status == "CANCELLED"
    service = await cluster.get("/Service/shop/web")
    assert service is not None
    assert service["spec"]["selector"] == {"app": "web", KEY: "stable"}
    primary = await cluster.get("apps/Deployment/shop/web")
    assert primary is not None
    assert primary["metadata"]["annotations"][KEY] == "stable"
    assert "pipecd.dev/variant" not in primary["metadata"]["annotations"]
