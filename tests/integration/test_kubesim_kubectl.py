"""kubesim's fidelity, judged by the real kubectl: apply, get, rollout status, scale, delete."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubesim import ImageRule, KubeSim
from kubesim.testing import Kubectl, eventually, find_kubectl, versioned_kubectls

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
data:
  LOG_LEVEL: info
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web, pipecd.dev/variant: primary}
    spec:
      containers:
      - name: web
        image: ghcr.io/acme/web:v1
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"""

NEVER_READY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: default}
spec:
  replicas: 2
  progressDeadlineSeconds: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      containers: [{name: api, image: "ghcr.io/acme/api:never"}]
"""


def _kubectl_binary() -> str:
    found = find_kubectl()
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("kubectl is required on CI (Debian: apt-get install kubernetes-client)")
    pytest.skip("kubectl is not installed")


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    rules = [ImageRule("*:never", never_ready=True)]
    async with KubeSim(ready_delay_s=0.1, rules=rules, namespace_grace_s=0.2) as sim:
        yield sim


@pytest.fixture
def kubectl(sim: KubeSim, tmp_path: Path) -> Kubectl:
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    return Kubectl(_kubectl_binary(), kubeconfig, tmp_path / "cache")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(MANIFEST)
    return path


async def _pods(
    kubectl: Kubectl, *selector: str, namespace: str = "shop"
) -> list[dict[str, object]]:
    result = await kubectl("get", "pods", "-n", namespace, *selector, "-o", "json")
    items: list[dict[str, object]] = result.json()["items"]
    return items


async def test_api_resources_lists_builtin_and_istio_kinds(kubectl: Kubectl) -> None:
    """`kubectl api-resources` discovers the built-in kinds, their short names and Istio's."""
    result = await kubectl("api-resources", "--no-headers")
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "deploy" in rows["deployments"].split()
    assert {"pods", "services", "configmaps", "secrets", "namespaces", "replicasets"} <= set(rows)
    assert "networking.istio.io/v1beta1" in rows["virtualservices"]


async def test_apply_multi_document_manifest_then_get_json(
    kubectl: Kubectl, manifest: Path
) -> None:
    """A plain `kubectl apply -f` creates every document; `get -o json` shows what was stored."""
    applied = await kubectl("apply", "-f", str(manifest))
    assert applied.stdout.splitlines() == [
        "namespace/shop created",
        "configmap/web-config created",
        "deployment.apps/web created",
        "service/web created",
    ]
    deployment = (await kubectl("get", "deploy", "web", "-n", "shop", "-o", "json")).json()
    meta = deployment["metadata"]
    assert meta["generation"] == 1
    assert meta["resourceVersion"].isdigit()
    assert "kubectl.kubernetes.io/last-applied-configuration" in meta["annotations"]
    assert deployment["spec"]["replicas"] == 3
    again = await kubectl("apply", "-f", str(manifest))
    assert all(line.endswith("unchanged") for line in again.stdout.splitlines())


async def test_rollout_status_succeeds_once_pods_are_ready(
    kubectl: Kubectl, manifest: Path
) -> None:
    """`kubectl rollout status` waits for readiness and reports success."""
    await kubectl("apply", "-f", str(manifest))
    status = await kubectl("rollout", "status", "deploy/web", "-n", "shop", "--timeout=30s")
    assert 'deployment "web" successfully rolled out' in status.stdout
    pods = await _pods(kubectl, "-l", "app=web")
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Running" for p in pods)  # type: ignore[index]


async def test_new_image_rolls_out_a_new_replicaset(kubectl: Kubectl, manifest: Path) -> None:
    """Re-applying with a new image (strategic merge patch) rolls out a second ReplicaSet."""
    await kubectl("apply", "-f", str(manifest))
    await kubectl("rollout", "status", "deploy/web", "-n", "shop", "--timeout=30s")
    updated = await kubectl("apply", "-f", "-", stdin=MANIFEST.replace("web:v1", "web:v2"))
    assert "deployment.apps/web configured" in updated.stdout
    await kubectl("rollout", "status", "deploy/web", "-n", "shop", "--timeout=30s")
    replicasets = (await kubectl("get", "rs", "-n", "shop", "-o", "json")).json()["items"]
    by_image = {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"]
        for rs in replicasets
    }
    assert by_image == {"ghcr.io/acme/web:v1": 0, "ghcr.io/acme/web:v2": 3}
    images = {p["spec"]["containers"][0]["image"] for p in await _pods(kubectl)}  # type: ignore[index]
    assert images == {"ghcr.io/acme/web:v2"}


async def test_never_ready_image_exceeds_the_progress_deadline(kubectl: Kubectl) -> None:
    """A never-ready image makes `rollout status` fail with the progress-deadline message."""
    await kubectl("apply", "-f", "-", stdin=NEVER_READY)
    status = await kubectl("rollout", "status", "deploy/stuck", "--timeout=30s", check=False)
    assert status.returncode != 0
    assert 'deployment "stuck" exceeded its progress deadline' in status.stderr


async def test_scale_changes_the_number_of_pods(kubectl: Kubectl, manifest: Path) -> None:
    """`kubectl scale` (the scale subresource) grows the Deployment to five pods."""
    await kubectl("apply", "-f", str(manifest))
    scaled = await kubectl("scale", "deploy/web", "-n", "shop", "--replicas=5")
    assert "deployment.apps/web scaled" in scaled.stdout

    async def five() -> bool:
        return len(await _pods(kubectl, "-l", "app=web")) == 5

    await eventually(five, message="five pods")
    await kubectl("rollout", "status", "deploy/web", "-n", "shop", "--timeout=30s")


@pytest.mark.usefixtures("sim")
async def test_delete_manifest_cascades_to_replicasets_and_pods(
    kubectl: Kubectl, manifest: Path
) -> None:
    """`kubectl delete -f` removes the Deployment, its ReplicaSets and Pods, and the namespace."""
    await kubectl("apply", "-f", str(manifest))
    await kubectl("rollout", "status", "deploy/web", "-n", "shop", "--timeout=30s")
    deleted = await kubectl("delete", "-f", str(manifest))
    assert 'deployment.apps "web" deleted' in deleted.stdout
    leftovers = await kubectl("get", "deploy,rs,pods", "-A", "-o", "json")
    assert leftovers.json()["items"] == []
    namespaces = await kubectl("get", "ns", "-o", "name")
    assert "namespace/shop" not in namespaces.stdout.split()


@pytest.mark.usefixtures("manifest")
async def test_label_selectors_filter_pods(kubectl: Kubectl) -> None:
    """`get pods -l` honours equality, inequality and set-based selectors."""
    api = NEVER_READY.replace("stuck", "api").replace("default", "shop")
    await kubectl("apply", "-f", "-", stdin=MANIFEST + "---\n" + api)

    async def five_pods() -> bool:
        return len(await _pods(kubectl)) == 5

    await eventually(five_pods, message="five pods")

    async def apps(*selector: str) -> list[str]:
        return sorted({p["metadata"]["labels"]["app"] for p in await _pods(kubectl, *selector)})  # type: ignore[index]

    assert await apps("-l", "app=web") == ["web"]
    assert await apps("-l", "app!=web") == ["api"]
    assert await apps("-l", "app in (web,api),!pipecd.dev/variant") == ["api"]
    assert len(await _pods(kubectl, "-l", "app=web,pipecd.dev/variant=primary")) == 3


async def test_server_side_apply_creates_and_prunes_fields(kubectl: Kubectl) -> None:
    """`kubectl apply --server-side` creates, records its manager, and prunes what it dropped."""
    first = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: flags, labels: {team: a, tier: b}}\n"
        "data: {first: '1', second: '2'}\n"
    )
    result = await kubectl("apply", "--server-side", "-f", "-", stdin=first)
    assert "configmap/flags serverside-applied" in result.stdout
    second = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: flags, labels: {team: a}}\n"
        "data: {first: '1'}\n"
    )
    await kubectl("apply", "--server-side", "-f", "-", stdin=second)
    live = (await kubectl("get", "cm", "flags", "-o", "json", "--show-managed-fields")).json()
    assert live["metadata"]["labels"] == {"team": "a"}
    assert live["data"] == {"first": "1"}
    managers = {(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers


VERSIONS = versioned_kubectls(found) if (found := find_kubectl()) else {}
# The oldest and the newest side by side; the one on PATH runs every other test.
EDGE_VERSIONS = [*VERSIONS][:1] + [*VERSIONS][-1:] if len(VERSIONS) > 1 else [*VERSIONS]


@pytest.mark.parametrize("version", EDGE_VERSIONS or ["none"])
async def test_each_installed_kubectl_version_applies_rolls_out_scales_and_deletes(
    version: str, sim: KubeSim, manifest: Path, tmp_path: Path
) -> None:
    """The oldest and newest side-by-side kubectl apply, wait, scale and delete too."""
    if version == "none":
        pytest.skip("no side-by-side kubectl.1.NN binaries installed")
    kubectl = Kubectl(VERSIONS[version], sim.write_kubeconfig(tmp_path / "kc"), tmp_path / "cache")
    await kubectl("apply", "-f", str(manifest))
    await kubectl("rollout", "status", "deploy/web", "-n", "shop", "--timeout=30s")
    await kubectl("scale", "deploy/web", "-n", "shop", "--replicas=1")
    await kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    await kubectl("delete", "-f", str(manifest))
    assert (await kubectl("get", "deploy,rs,pods", "-A", "-o", "json")).json()["items"] == []


async def test_a_crd_applied_with_kubectl_serves_its_kind_to_kubectl(kubectl: Kubectl) -> None:
    """`kubectl apply` a CustomResourceDefinition, then an instance: discovery lists the new
    kind, and kubectl gets, lists and deletes the custom resource by its plural."""
    crd = (
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: gadgets.example.com}\n"
        "spec:\n  group: example.com\n  scope: Namespaced\n"
        "  names: {plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd]}\n"
        "  versions:\n  - name: v1\n    served: true\n    storage: true\n"
        "    schema:\n      openAPIV3Schema:\n"
        "        {type: object, x-kubernetes-preserve-unknown-fields: true}\n"
    )
    await kubectl("apply", "-f", "-", stdin=crd)
    resources = await kubectl("api-resources", "--api-group=example.com", "--no-headers")
    assert "gadgets" in resources.stdout and "Gadget" in resources.stdout
    gadget = (
        "apiVersion: example.com/v1\nkind: Gadget\n"
        "metadata: {name: g1, labels: {slipway.dev/application: a1}}\nspec: {size: 2}\n"
    )
    applied = await kubectl("apply", "-f", "-", stdin=gadget)
    assert "gadget.example.com/g1 created" in applied.stdout
    listed = (await kubectl("get", "gd", "-l", "slipway.dev/application=a1", "-o", "json")).json()
    assert [(g["metadata"]["name"], g["spec"]) for g in listed["items"]] == [("g1", {"size": 2})]
    await kubectl("delete", "gadget", "g1")
    assert (await kubectl("get", "gadgets", "-o", "json")).json()["items"] == []


async def test_create_token_issues_a_signed_token_for_the_service_account(
    sim: KubeSim, kubectl: Kubectl
) -> None:
    """`kubectl create token NAME -n NS [--duration]` gets a token for that namespace's service
    account, signed by kubesim, expiring when asked; out-of-bounds durations are refused as
    Kubernetes refuses them, and an unknown account (or one in another namespace) is a 404."""
    await kubectl("create", "namespace", "shop")
    await kubectl("create", "serviceaccount", "deployer", "-n", "shop")
    before = datetime.now(UTC).replace(microsecond=0)
    token = (await kubectl("create", "token", "deployer", "-n", "shop")).stdout.strip()
    claims = sim.api.tokens.verify(token, datetime.now(UTC))
    assert claims is not None
    assert claims["sub"] == "system:serviceaccount:shop:deployer"
    assert claims["kubernetes.io"]["namespace"] == "shop"
    assert claims["exp"] - claims["iat"] == 3600
    header, _, signature = token.split(".")
    forged = json.dumps({**claims, "sub": "system:serviceaccount:kube-system:admin"}).encode()
    forged_token = f"{header}.{base64.urlsafe_b64encode(forged).decode().rstrip('=')}.{signature}"
    assert sim.api.tokens.verify(forged_token, before) is None

    answer = (
        await kubectl("create", "token", "deployer", "-n", "shop", "--duration=2h", "-o", "json")
    ).json()
    assert answer["kind"] == "TokenRequest"
    assert answer["spec"]["expirationSeconds"] == 7200
    expires = datetime.fromisoformat(answer["status"]["expirationTimestamp"])
    assert before + timedelta(hours=2) <= expires <= datetime.now(UTC) + timedelta(hours=2)
    # Presented back as a bearer token: kubesim has no authentication, so it is never refused.
    await kubectl("get", "serviceaccounts", "-n", "shop", f"--token={token}")

    short = await kubectl("create", "token", "deployer", "-n", "shop", "--duration=5m", check=False)
    assert short.returncode != 0
    assert "may not specify a duration less than 10 minutes" in short.stderr
    for name, namespace in (("nobody", "shop"), ("deployer", "default")):
        missing = await kubectl("create", "token", name, "-n", namespace, check=False)
        assert missing.returncode != 0
        assert f'serviceaccounts "{name}" not found' in missing.stderr


async def test_create_token_bound_to_a_pod_names_it_and_needs_it(kubectl: Kubectl) -> None:
    """`--bound-object-kind Pod` binds the token to an existing pod (its name and uid echoed);
    a pod that does not exist is a 404, as on a real server."""
    await kubectl("create", "serviceaccount", "runner")
    await kubectl("run", "job", "--image=ghcr.io/acme/job:v1")
    uid = (await kubectl("get", "pod", "job", "-o", "jsonpath={.metadata.uid}")).stdout
    bound = (
        await kubectl(
            "create",
            "token",
            "runner",
            "--bound-object-kind=Pod",
            "--bound-object-name=job",
            f"--bound-object-uid={uid}",
            "-o",
            "json",
        )
    ).json()
    assert bound["spec"]["boundObjectRef"]["uid"] == uid
    missing = await kubectl(
        "create",
        "token",
        "runner",
        "--bound-object-kind=Pod",
        "--bound-object-name=gone",
        check=False,
    )
    assert 'pods "gone" not found' in missing.stderr
