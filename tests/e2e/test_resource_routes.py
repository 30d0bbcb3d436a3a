"""PipeCD's `resourceRoutes` on two kubesim clusters: the executor and the drift service.

Platform provider `a` (the application's own) and `b` (labelled `tier: backend`) are two
KubeSim instances. The application routes its Service to `a` by name, its Deployments to
whatever provider carries `tier: backend` (so `b`), and its ConfigMap, matched by no
route, goes to its own provider `a`. Before, routes were parsed and ignored: everything
went to `a`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubesim import KubeSim
from services.drift.service import DriftDetector
from shared.config.control import KubernetesProviderConfig
from shared.config.manifests import Manifest
from shared.events.catalog import ApplicationLiveResourcesObserved, ApplicationRegistered
from shared.git import GitCache
from shared.platform import KubernetesPlatform
from tests.support import Backends
from tests.support.executor import APP, APP_PATH, CONFIG, Harness
from tests.support.git_helpers import WorkRepo

ROUTES = """\
  quickSync:
    prune: true
  resourceRoutes:
    - match:
        kind: Service
      provider:
        name: a
    - match:
        kind: Deployment
      provider:
        labels:
          tier: backend
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

DEPLOYMENT = """\
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

CONFIG_MAP = """\
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-extra
data: {a: "1"}
"""

SERVICE = Manifest(
    api_version="v1",
    kind="Service",
    name="web",
    namespace="shop",
    body={
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    },
)


def files(tag: str, *, config_map: bool = True, routes: str = ROUTES) -> dict[str, str | None]:
    manifests = DEPLOYMENT.format(tag=tag) + (CONFIG_MAP if config_map else "")
    return {
        f"{APP_PATH}/.pipe.yaml": CONFIG.format(extra=routes),
        f"{APP_PATH}/manifests.yaml": manifests,
    }


@pytest.fixture
async def sims() -> AsyncIterator[tuple[KubeSim, KubeSim]]:
    async with KubeSim(ready_delay_s=0.05) as a, KubeSim(ready_delay_s=0.05) as b:
        yield a, b


@pytest.fixture
async def harness(
    backends: Backends, sims: tuple[KubeSim, KubeSim], work: WorkRepo, tmp_path: Path
) -> Harness:
    a, b = sims
    harness = await Harness.over(backends, a, work, tmp_path)
    harness.platforms = {
        "a": a.write_kubeconfig(tmp_path / "kubeconfig-a"),
        "b": b.write_kubeconfig(tmp_path / "kubeconfig-b"),
    }
    harness.provider_labels = {"a": {"tier": "frontend"}, "b": {"tier": "backend"}}
    harness.platform_provider = "a"
    return harness


@pytest.fixture
async def clusters(harness: Harness) -> AsyncIterator[dict[str, KubernetesPlatform]]:
    async with (
        KubernetesPlatform(harness.platforms["a"], name="a") as a,
        KubernetesPlatform(harness.platforms["b"], name="b") as b,
    ):
        yield {"a": a, "b": b}


def _detector(harness: Harness, tmp_path: Path) -> DriftDetector:
    return DriftDetector(
        store=harness.store,
        git=GitCache(tmp_path / "drift-git"),
        repositories={"config": harness.work.url},
        platforms={
            name: KubernetesProviderConfig(kubeconfig_path=str(path))
            for name, path in harness.platforms.items()
        },
        provider_labels=harness.provider_labels,
    )


async def _where(clusters: dict[str, KubernetesPlatform], key: str) -> list[str]:
    """The providers that have the object `key`."""
    return [name for name, cluster in clusters.items() if await cluster.get(key) is not None]


async def _image(cluster: KubernetesPlatform, name: str) -> str:
    live: Any = await cluster.get(f"apps/Deployment/shop/{name}")
    assert live is not None, f"Deployment shop/{name} is not there"
    image: str = live["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


async def _registration(harness: Harness) -> ApplicationRegistered:
    events = await harness.store.read_stream(f"application-{APP}")
    registered = events[0].event
    assert isinstance(registered, ApplicationRegistered)
    return registered


async def test_each_object_is_applied_drift_checked_pruned_and_rolled_back_on_its_route(
    harness: Harness, clusters: dict[str, KubernetesPlatform], tmp_path: Path
) -> None:
    v1 = harness.work.commit(files("v1"), "v1")
    detector = _detector(harness, tmp_path)
    async with harness.running_app():
        # Deploy: the Service and the unrouted ConfigMap on a, the Deployment on b only.
        await harness.plan("d1", v1, strategy="quick_sync")
        assert (await harness.completed("d1")).status == "SUCCESS"
        assert await _where(clusters, "/Service/shop/web") == ["a"]
        assert await _where(clusters, "/ConfigMap/shop/web-extra") == ["a"]
        assert await _where(clusters, "apps/Deployment/shop/web") == ["b"]

        # Drift: both clusters are compared, each with what is routed to it.
        app = await _registration(harness)
        synced = await detector.check(app)
        assert synced is not None and synced.state == "SYNCED", synced
        # The live tree spans both clusters, each object marked with the one it is on.
        assert await detector.record_live(app)
        [observed] = [r.event for r in await harness.store.read_stream(f"liveresources-{APP}")]
        assert isinstance(observed, ApplicationLiveResourcesObserved)
        placed = {(r.provider, r.kind, r.name) for r in observed.resources}
        assert {p for p in placed if p[1] in ("Service", "ConfigMap", "Deployment")} == {
            ("a", "Service", "web"),
            ("a", "ConfigMap", "web-extra"),
            ("b", "Deployment", "web"),
        }, placed
        made = {(r.provider, r.kind) for r in observed.resources if r.kind in ("ReplicaSet", "Pod")}
        assert made == {("b", "ReplicaSet"), ("b", "Pod")}, placed
        await clusters["b"].scale("shop", "web", 5)
        drifted = await detector.check(app)
        assert drifted is not None and drifted.state == "OUT_OF_SYNC"
        # The diff says which cluster the difference is on.
        assert "# 1. Deployment shop/web on b\n" in drifted.diff, drifted.diff
        assert "replicas" in drifted.diff, drifted.diff

        # Prune: the ConfigMap removed from git goes from a; a stray Service on b (as an
        # older route would have left it) goes too, while its namesake on a stays.
        await clusters["b"].apply(
            [SERVICE], application_id=APP, deployment_id="d0", commit_hash=v1, namespace="shop"
        )
        v2 = harness.work.commit(files("v2", config_map=False), "v2")
        await harness.plan("d2", v2, strategy="quick_sync", running=v1)
        assert (await harness.completed("d2")).status == "SUCCESS"
        assert await _where(clusters, "/ConfigMap/shop/web-extra") == []
        assert await _where(clusters, "/Service/shop/web") == ["a"]
        assert await _image(clusters["b"], "web") == "ghcr.io/acme/web:v2"
        again = await detector.check(app)
        assert again is not None and again.state == "SYNCED", again

        # Rollback: the canary goes where Deployments go; cancelled, the running commit's
        # manifests come back on b, the canary goes from b, the Service on a selects the
        # primary again.
        v3 = harness.work.commit(files("v3", config_map=False), "v3")
        await harness.plan("d3", v3, running=v2)
        await harness.stage_started("d3", "wait")
        assert await _where(clusters, "apps/Deployment/shop/web-canary") == ["b"]
        assert await _image(clusters["b"], "web-canary") == "ghcr.io/acme/web:v3"
        service: Any = await clusters["a"].get("/Service/shop/web")
        assert service["spec"]["selector"]["pipecd.dev/variant"] == "canary"
        await harness.cancel("d3")
        await harness.completed("d3")
        assert await _where(clusters, "apps/Deployment/shop/web-canary") == []
        assert await _image(clusters["b"], "web") == "ghcr.io/acme/web:v2"
        service = await clusters["a"].get("/Service/shop/web")
        assert service["spec"]["selector"]["pipecd.dev/variant"] == "primary"

        # A route to a provider the control config lacks fails the deployment at once,
        # naming the file, the line and the provider.
        bad = ROUTES.replace("name: a", "name: nowhere")
        v4 = harness.work.commit(files("v4", routes=bad), "v4")
        await harness.plan("d4", v4, strategy="quick_sync", running=v2)
        completed = await harness.completed("d4")
        assert completed.status == "FAILURE"
        assert f"{APP_PATH}/.pipe.yaml:14:" in completed.reason, completed.reason
        assert "'nowhere'" in completed.reason, completed.reason
        assert await _image(clusters["b"], "web") == "ghcr.io/acme/web:v2"

    # Cascade delete: what the application has on either cluster goes.
    harness.work.commit(files("v2", config_map=False), "back to v2")
    deleted = await detector.delete_resources(app)
    assert sorted(deleted) == [
        "/Service/shop/web on a",
        "apps/Deployment/shop/web on b",
    ], deleted
    assert await _where(clusters, "apps/Deployment/shop/web") == []
    assert await _where(clusters, "/Service/shop/web") == []
