"""`pipecd.dev/config-hash` and the PipeCD annotations: pure parts, then on kubesim."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kubesim import KubeSim
from shared.config.manifests import Manifest
from shared.planning.drift import detect_drift
from shared.platform import KubernetesPlatform, prepare_for_apply
from shared.platform.confighash import config_hashes, hash_configs, referenced_configs

APP = "01app0000000000000000000cc"
HASH = "pipecd.dev/config-hash"


def manifests(text: str) -> list[Manifest]:
    out = []
    for body in yaml.safe_load_all(text):
        meta = body.get("metadata") or {}
        out.append(
            Manifest(
                api_version=body["apiVersion"],
                kind=body["kind"],
                name=meta.get("name", ""),
                namespace=meta.get("namespace", ""),
                body=body,
            )
        )
    return out


# PipeCD's own vectors (hasher_test.go), so an adopted Deployment keeps its hash.
PIPECD_VECTORS = [
    ("kind: ConfigMap\ndata: {}\nbinaryData: {}\n", "42745tchd9"),
    ('kind: ConfigMap\ndata:\n  one: ""\nbinaryData: {}\n', "9g67k2htb6"),
    ('kind: ConfigMap\ndata:\n  two: "2"\n  one: ""\n  three: "3"\nbinaryData: {}\n', "f5h7t85m9b"),
    ("kind: Secret\ntype: my-type\ndata: {}\n", "t75bgf6ctb"),
    ('kind: Secret\ntype: my-type\ndata:\n  "one": ""\n', "74bd68bm66"),
    ('kind: Secret\ntype: my-type\ndata:\n  two: Mg==\n  one: ""\n  three: Mw==\n', "dgcb6h9tmk"),
    (
        'kind: ConfigMap\ndata:\n  two: "2"\n  three: "3"\nbinaryData: {}\n---\n'
        'apiVersion: v1\nkind: Secret\ntype: my-type\ndata:\n  one: ""\n  three: Mw==\n',
        "57hhd7795k",
    ),
]


@pytest.mark.parametrize(("text", "expected"), PIPECD_VECTORS)
def test_hash_is_pipecds(text: str, expected: str) -> None:
    assert hash_configs(manifests("apiVersion: v1\n" + text)) == expected


APP_MANIFESTS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: registry.example/web:v1
          envFrom: [{configMapRef: {name: web-env}}]
      volumes:
        - {name: conf, configMap: {name: web-files}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-env, namespace: shop}
data: {GREETING: hello}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-files, namespace: shop}
data: {app.conf: "port=8080"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unused, namespace: shop}
data: {x: "1"}
"""


def _hash(text: str, key: str = "apps/Deployment/shop/web") -> str | None:
    return config_hashes(manifests(text)).get(key)


def test_hash_changes_with_a_used_config_only() -> None:
    """A used ConfigMap's data changes the hash; an image change or an unused ConfigMap's
    change does not (the workload rolls for its own config, not for its neighbours')."""
    before = _hash(APP_MANIFESTS)
    assert before is not None and len(before) == 10
    assert _hash(APP_MANIFESTS.replace("hello", "hi")) not in (None, before)
    assert _hash(APP_MANIFESTS.replace("port=8080", "port=9090")) not in (None, before)
    assert _hash(APP_MANIFESTS.replace("web:v1", "web:v2")) == before
    assert _hash(APP_MANIFESTS.replace('x: "1"', 'x: "2"')) == before


def test_no_hash_without_a_referenced_config_of_the_application() -> None:
    """Nothing referenced, or referenced but not among the manifests: no annotation (PipeCD)."""
    deployment, configs = APP_MANIFESTS.split("---", 1)
    elsewhere = deployment.replace("web-env", "other-env").replace("web-files", "other-files")
    assert _hash(elsewhere + "---" + configs) is None
    assert config_hashes(manifests(deployment)) == {}


def test_every_kind_of_reference_is_found() -> None:
    """Volumes (configMap, secret, projected), env valueFrom and envFrom, init containers too."""
    template = yaml.safe_load("""
spec:
  initContainers:
    - name: init
      env: [{name: A, valueFrom: {configMapKeyRef: {name: cm-init-env, key: a}}}]
      envFrom: [{secretRef: {name: s-init-envfrom}}]
  containers:
    - name: app
      env:
        - {name: B, valueFrom: {secretKeyRef: {name: s-env, key: b}}}
        - {name: C, value: plain}
      envFrom: [{configMapRef: {name: cm-envfrom}}]
  volumes:
    - {name: v1, configMap: {name: cm-volume}}
    - {name: v2, secret: {secretName: s-volume}}
    - name: v3
      projected:
        sources:
          - {configMap: {name: cm-projected}}
          - {secret: {name: s-projected}}
          - {downwardAPI: {items: []}}
    - {name: v4, emptyDir: {}}
""")
    assert referenced_configs(template) == (
        {"cm-init-env", "cm-envfrom", "cm-volume", "cm-projected"},
        {"s-init-envfrom", "s-env", "s-volume", "s-projected"},
    )


def test_malformed_pod_specs_from_a_repository_find_nothing_rather_than_crash() -> None:
    """Manifests come from a repository: odd shapes are skipped (the API server will name
    the bad field when they are applied), never an exception in the executor."""
    template = yaml.safe_load("""
spec:
  volumes: oops
  initContainers: {not: a list}
  containers:
    - null
    - 3
    - {name: a, env: [null, {name: X, valueFrom: 7}], envFrom: [{configMapRef: "web"}]}
    - {name: b, envFrom: [{configMapRef: {name: 42}}, {secretRef: {name: ok}}]}
""")
    assert referenced_configs(template) == (set(), {"ok"})
    assert referenced_configs({"spec": None}) == (set(), set())
    odd = manifests(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {n: 1, b: true}\n"
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: not base64!}\n"
    )
    assert len(hash_configs(odd)) == 10


def test_other_workload_kinds_and_secret_string_data() -> None:
    """A CronJob's pod template (under its job template) and a StatefulSet get the hash, a
    bare Job does not; a Secret's `stringData` change rolls them as a `data` change would."""
    text = """
apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: r, image: r:v1, envFrom: [{secretRef: {name: creds}}]}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  template:
    spec:
      containers: [{name: d, image: d:v1, envFrom: [{secretRef: {name: creds}}]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      containers: [{name: m, image: m:v1, envFrom: [{secretRef: {name: creds}}]}]
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: one}
"""
    hashes = config_hashes(manifests(text))
    # Not the Job: its pod template is immutable, a new hash would make its apply fail.
    assert set(hashes) == {"batch/CronJob//report", "apps/StatefulSet//db"}
    changed = config_hashes(manifests(text.replace("password: one", "password: two")))
    assert changed["batch/CronJob//report"] != hashes["batch/CronJob//report"]


def test_apply_body_carries_pipecds_annotations_and_the_hash() -> None:
    """`prepare_for_apply` writes PipeCD's builtin annotations on the object and the config
    hash on the pod template; the resource key takes the input namespace, as PipeCD's does."""
    web = manifests(APP_MANIFESTS)[0]
    body = prepare_for_apply(
        web,
        namespace="prd",
        application_id=APP,
        deployment_id="d1",
        commit_hash="c1",
        variant="primary",
        input_namespace="prd",
        config_hash="k9h2m4t5b6",
    )
    annotations = body["metadata"]["annotations"]
    assert annotations["pipecd.dev/resource-key"] == "apps/v1:Deployment:prd:web"
    assert annotations["pipecd.dev/original-api-version"] == "apps/v1"
    assert annotations["pipecd.dev/variant"] == "primary"
    assert annotations["pipecd.dev/managed-by"] == "piped"
    assert body["spec"]["template"]["metadata"]["annotations"] == {HASH: "k9h2m4t5b6"}
    namespace = Manifest(
        api_version="v1", kind="Namespace", name="prd", namespace="", body={"metadata": {}}
    )
    cluster_scoped = prepare_for_apply(
        namespace,
        namespace="",
        application_id=APP,
        deployment_id="d1",
        commit_hash="c1",
        variant=None,
    )
    # PipeCD keys an object without a namespace as `default`, cluster-scoped ones too.
    assert cluster_scoped["metadata"]["annotations"]["pipecd.dev/resource-key"] == (
        "v1:Namespace:default:prd"
    )
    assert "pipecd.dev/variant" not in cluster_scoped["metadata"]["annotations"]
    # No piped named: no `pipecd.dev/piped`; the provider's pipedID: the piped's annotation.
    assert "pipecd.dev/piped" not in annotations
    # `pipecd.dev/application` is the application's id, or the PipeCD id it was adopted from.
    assert annotations["pipecd.dev/application"] == APP
    adopted = prepare_for_apply(
        web,
        namespace="prd",
        application_id=APP,
        deployment_id="d1",
        commit_hash="c1",
        variant="primary",
        pipecd_application_id="pipecd-web-uuid",
    )
    assert adopted["metadata"]["annotations"]["pipecd.dev/application"] == "pipecd-web-uuid"
    assert adopted["metadata"]["labels"]["slipway.dev/application"] == APP
    cut_over = prepare_for_apply(
        web,
        namespace="prd",
        application_id=APP,
        deployment_id="d1",
        commit_hash="c1",
        variant="primary",
        piped_id="4c3b1a2e-piped",
    )
    assert cut_over["metadata"]["annotations"]["pipecd.dev/piped"] == "4c3b1a2e-piped"


# On kubesim


@pytest.fixture
async def kubesim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.05) as sim:
        yield sim


@pytest.fixture
async def platform(kubesim: KubeSim, tmp_path: Path) -> AsyncIterator[KubernetesPlatform]:
    async with KubernetesPlatform(kubesim.write_kubeconfig(tmp_path / "kubeconfig")) as p:
        yield p


async def _sync(platform: KubernetesPlatform, text: str, commit: str) -> dict[str, Any]:
    """Apply as a quick sync does, wait for the rollout; the live `web` Deployment."""
    await platform.apply(
        manifests(text),
        application_id=APP,
        deployment_id=f"d-{commit}",
        commit_hash=commit,
        auto_create_namespace=True,
    )
    await platform.wait_rollout("shop", "web", kind="Deployment", timeout_s=10)
    live = await platform.get("apps/Deployment/shop/web")
    assert live is not None
    return live


async def _replicasets(kubesim: KubeSim) -> set[str]:
    async with aiohttp.ClientSession() as http:
        url = f"{kubesim.url}/apis/apps/v1/namespaces/shop/replicasets"
        async with http.get(url) as response:
            assert response.status == 200
            listed = await response.json()
    return {item["metadata"]["name"] for item in listed["items"]}


async def test_a_config_map_only_change_rolls_the_pods(
    platform: KubernetesPlatform, kubesim: KubeSim
) -> None:
    """v1, then a commit changing only the used ConfigMap: the pod template's hash changes and
    the Deployment controller makes a new ReplicaSet; a commit changing only an unused
    ConfigMap leaves the hash and the ReplicaSets as they were. Drift stays SYNCED."""
    v1 = await _sync(platform, APP_MANIFESTS, "c1")
    first = v1["spec"]["template"]["metadata"]["annotations"][HASH]
    assert first == _hash(APP_MANIFESTS)
    assert len(await _replicasets(kubesim)) == 1
    config_change = APP_MANIFESTS.replace("hello", "hi")
    v2 = await _sync(platform, config_change, "c2")
    second = v2["spec"]["template"]["metadata"]["annotations"][HASH]
    assert second != first
    rollouts = await _replicasets(kubesim)
    assert len(rollouts) == 2
    neighbour_change = config_change.replace('x: "1"', 'x: "2"')
    v3 = await _sync(platform, neighbour_change, "c3")
    assert v3["spec"]["template"]["metadata"]["annotations"][HASH] == second
    assert await _replicasets(kubesim) == rollouts
    live = await platform.live_resources(APP)
    assert detect_drift(manifests(neighbour_change), live).state == "SYNCED"
