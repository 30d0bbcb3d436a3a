"""Live state covers every kind discovery serves: prune, drift and exclusions on kubesim.

Before, live state listed a fixed 13 kinds: a PodDisruptionBudget, a Role, a
NetworkPolicy, a PVC or a custom resource deleted from git stayed in the
cluster, and drift never saw it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubesim import KubeSim
from shared.config.manifests import Manifest
from shared.planning.drift import detect_drift
from shared.platform import KubernetesPlatform, LiveKinds
from tests.support import Backends
from tests.support.executor import Harness, app_files
from tests.support.git_helpers import WorkRepo

CRD = """\
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""

EXTRAS = """\
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: web}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: web}
subjects: [{kind: ServiceAccount, name: default, namespace: shop}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: web-reader}
rules: [{apiGroups: [""], resources: [nodes], verbs: [get]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: web-data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: web}
spec: {size: 3}
"""

EXTRA_KEYS = [
    "example.com/Widget/shop/web",
    "networking.k8s.io/NetworkPolicy/shop/web",
    "policy/PodDisruptionBudget/shop/web",
    "rbac.authorization.k8s.io/ClusterRole//web-reader",
    "rbac.authorization.k8s.io/Role/shop/web",
    "rbac.authorization.k8s.io/RoleBinding/shop/web",
    "/PersistentVolumeClaim/shop/web-data",
]
PRUNE = "  quickSync:\n    prune: true\n"


def files(*, extras: bool) -> dict[str, str | bytes | None]:
    written = app_files(extra=PRUNE)
    manifests = written["web/prd/manifests.yaml"]
    assert isinstance(manifests, str)
    written["web/prd/manifests.yaml"] = manifests + CRD + (EXTRAS if extras else "")
    return written


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.05) as sim:
        yield sim


@pytest.fixture
async def harness(backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path) -> Harness:
    return await Harness.over(backends, sim, work, tmp_path)


def _manifests(platform_live: list[Manifest]) -> list[str]:
    return [m.key for m in platform_live]


async def test_every_kind_deleted_from_git_is_seen_by_drift_and_pruned(
    harness: Harness,
) -> None:
    """v1 applies a PDB, a Role and RoleBinding, a ClusterRole, a NetworkPolicy, a PVC and a
    Widget (its CRD in the same batch); live state lists them, drift against v2 (which drops
    them) reports each as removed, and v2's quick sync with prune deletes them all."""
    v1 = harness.work.commit(files(extras=True), "v1 with the extra kinds")
    v2 = harness.work.commit(files(extras=False), "v2 without them")
    async with KubernetesPlatform(harness.kubeconfig) as cluster, harness.running_app():
        await harness.plan("d1", v1, strategy="quick_sync")
        assert (await harness.completed("d1")).status == "SUCCESS"
        live = await cluster.live_resources("app01web")
        assert set(EXTRA_KEYS) <= set(_manifests(live))
        assert not {m.kind for m in live} & {"ReplicaSet", "Pod"}  # the Deployment's own

        head = [m for m in live if m.key not in EXTRA_KEYS]
        drift = detect_drift(head, live, namespace="shop")
        assert drift.state == "OUT_OF_SYNC"
        for key in EXTRA_KEYS:
            assert key.rpartition("/")[2] in drift.diff, key

        await harness.plan("d2", v2, strategy="quick_sync", running=v1)
        assert (await harness.completed("d2")).status == "SUCCESS"
        for key in EXTRA_KEYS:
            assert await cluster.get(key) is None, f"{key} was not pruned"
        assert await cluster.get(
            "apiextensions.k8s.io/CustomResourceDefinition//widgets.example.com"
        )


async def test_app_state_informer_excludes_and_narrows_live_state(
    sim: KubeSim, tmp_path: Path
) -> None:
    """PipeCD's `excludeResources` (a kind, or a whole apiVersion) and `namespace` narrow what
    live state lists; `includeResources` brings back a kind skipped by default (Endpoints)."""
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    rows: list[tuple[str, str, str, dict[str, Any]]] = [
        ("v1", "ConfigMap", "shop", {"data": {"a": "1"}}),
        ("v1", "ConfigMap", "other", {"data": {"a": "1"}}),
        ("rbac.authorization.k8s.io/v1", "Role", "shop", {"rules": []}),
        ("v1", "Endpoints", "shop", {"subsets": []}),
    ]
    objects = [
        Manifest(
            api_version=api_version,
            kind=kind,
            name="web",
            namespace=namespace,
            body={"apiVersion": api_version, "kind": kind, "metadata": {"name": "web"}, **extra},
        )
        for api_version, kind, namespace, extra in rows
    ]
    async with KubernetesPlatform(kubeconfig) as everything:
        for manifest in objects:
            await everything.apply(
                [manifest],
                application_id="a1",
                deployment_id="d1",
                commit_hash="c1",
                auto_create_namespace=True,
            )
        assert _manifests(await everything.live_resources("a1")) == [
            "/ConfigMap/other/web",
            "/ConfigMap/shop/web",
            "rbac.authorization.k8s.io/Role/shop/web",
        ]
    narrowed = KubernetesPlatform(
        kubeconfig,
        live_kinds=LiveKinds.of(
            exclude=[("rbac.authorization.k8s.io/v1", "")],
            include=[("v1", "Endpoints")],
            namespace="shop",
        ),
    )
    async with narrowed:
        assert _manifests(await narrowed.live_resources("a1")) == [
            "/ConfigMap/shop/web",
            "/Endpoints/shop/web",
        ]
