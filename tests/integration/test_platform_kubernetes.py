"""The Kubernetes platform adapter against kubesim, over HTTP, as against a real cluster."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kubesim import KubeSim
from kubesim.access import ForbiddenRule
from kubesim.rules import ImageRule
from shared.config.manifests import Manifest
from shared.errors import (
    ConfigError,
    Forbidden,
    Invalid,
    NotFound,
    PlatformUnavailable,
    Rejected,
    RolloutFailed,
    Unavailable,
)
from shared.platform import KubernetesPlatform, prepare_for_apply, rollout_status

APP = "01app0000000000000000000aa"
OTHER_APP = "01app0000000000000000000bb"
NEVER_READY = "registry.example/never:*"

BASE = """
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: registry.example/web:v1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
data:
  greeting: hello
"""

WIDGETS = """
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w
  namespace: default
spec:
  size: 3
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: web
  namespace: default
spec:
  hosts: [web]
  http:
    - route:
        - destination: {host: web}
          weight: 100
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
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""


def manifests(text: str, **replace: str) -> list[Manifest]:
    for old, new in replace.items():
        text = text.replace(old, new)
    out = []
    for body in yaml.safe_load_all(text):
        meta = body["metadata"]
        out.append(
            Manifest(
                api_version=body["apiVersion"],
                kind=body["kind"],
                name=meta["name"],
                namespace=meta.get("namespace", ""),
                body=body,
            )
        )
    return out


def by_kind(items: list[Manifest], kind: str) -> Manifest:
    return next(m for m in items if m.kind == kind)


def deployment(name: str, image: str, *, deadline_s: int = 600, replicas: int = 1) -> Manifest:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": deadline_s,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }
    return Manifest(
        api_version="apps/v1", kind="Deployment", name=name, namespace="default", body=body
    )


@pytest.fixture
async def kubesim() -> AsyncIterator[KubeSim]:
    sim = KubeSim(
        rules=[ImageRule(image=NEVER_READY, never_ready=True)],
        ready_delay_s=0.2,
        forbidden=[ForbiddenRule(namespace="prod")],
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
def kubeconfig(kubesim: KubeSim, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    kubesim.write_kubeconfig(path)
    return path


@pytest.fixture
async def platform(kubeconfig: Path) -> AsyncIterator[KubernetesPlatform]:
    async with KubernetesPlatform(kubeconfig) as p:
        yield p


async def apply(
    platform: KubernetesPlatform, items: list[Manifest], *, app: str = APP, commit: str = "c1"
) -> list[Any]:
    return await platform.apply(
        items, application_id=app, deployment_id="d-" + commit, commit_hash=commit
    )


# applying


async def test_apply_stores_objects_with_slipway_and_pipecd_metadata(
    platform: KubernetesPlatform,
) -> None:
    """A multi-document set reads back labelled and annotated with app, deployment and commit."""
    applied = await apply(platform, manifests(BASE))
    assert [a.key for a in applied] == [
        "/Namespace//shop",
        "apps/Deployment/shop/web",
        "/Service/shop/web",
        "/ConfigMap/shop/web-config",
    ]
    assert all(a.created and a.uid and a.resource_version for a in applied)
    live = await platform.get("apps/Deployment/shop/web")
    assert live is not None
    meta = live["metadata"]
    assert meta["labels"] == {
        "app": "web",
        "slipway.dev/application": APP,
        "pipecd.dev/variant": "primary",
    }
    assert meta["annotations"] == {
        "slipway.dev/application": APP,
        "slipway.dev/deployment": "d-c1",
        "slipway.dev/commit": "c1",
        "pipecd.dev/application": APP,
        "pipecd.dev/commit-hash": "c1",
        "pipecd.dev/managed-by": "piped",
        "pipecd.dev/resource-key": "apps/v1:Deployment:shop:web",
        "pipecd.dev/original-api-version": "apps/v1",
        "pipecd.dev/variant": "primary",
    }
    assert live["spec"]["template"]["metadata"]["labels"]["pipecd.dev/variant"] == "primary"
    assert live["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert any(m.get("manager") == "slipway" for m in meta["managedFields"])
    service = await platform.get(by_kind(manifests(BASE), "Service"))
    assert service is not None
    assert service["metadata"]["annotations"]["slipway.dev/commit"] == "c1"
    assert "pipecd.dev/variant" not in service["metadata"].get("labels", {})


async def test_reapply_updates_in_place_and_rollout_becomes_healthy(
    platform: KubernetesPlatform,
) -> None:
    """Re-applying a changed image updates in place; `wait_rollout` returns once it is healthy."""
    first = await apply(platform, manifests(BASE))
    await platform.wait_rollout("shop", "web", timeout_s=10, poll_s=0.1)
    again = await apply(platform, manifests(BASE, **{"web:v1": "web:v2"}), commit="c2")
    assert not any(a.created for a in again)
    assert again[1].generation == first[1].generation + 1
    status = await platform.wait_rollout("shop", "web", timeout_s=10, poll_s=0.1)
    assert status.healthy and not status.failed
    assert (status.desired, status.updated, status.available) == (2, 2, 2)
    assert status.observed_generation >= status.generation == again[1].generation
    live = await platform.get("apps/Deployment/shop/web")
    assert live is not None
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/web:v2"
    assert live["metadata"]["annotations"]["slipway.dev/commit"] == "c2"


async def test_namespace_override_and_auto_creation(platform: KubernetesPlatform) -> None:
    """`namespace` overrides the manifests' and `auto_create_namespace` creates it, unlabelled."""
    items = [m for m in manifests(BASE) if m.kind != "Namespace"]
    applied = await platform.apply(
        items,
        application_id=APP,
        deployment_id="d1",
        commit_hash="c1",
        namespace="staging",
        auto_create_namespace=True,
    )
    assert {a.namespace for a in applied} == {"staging"}
    namespace = await platform.get("/Namespace//staging")
    assert namespace is not None
    assert "slipway.dev/application" not in (namespace["metadata"].get("labels") or {})


async def test_scale_changes_replicas(platform: KubernetesPlatform) -> None:
    """`scale` sets a Deployment's replicas and the rollout settles at the new count."""
    await apply(platform, [deployment("api", "registry.example/api:v1")])
    await platform.scale("default", "api", 3)
    status = await platform.wait_rollout("default", "api", timeout_s=10, poll_s=0.1)
    assert (status.desired, status.available) == (3, 3)


# rollout failures


async def test_never_ready_image_fails_at_the_progress_deadline(
    platform: KubernetesPlatform,
) -> None:
    """A never-ready image raises RolloutFailed naming the deployment, readiness and deadline."""
    await apply(
        platform, [deployment("stuck", "registry.example/never:v1", deadline_s=1, replicas=2)]
    )
    with pytest.raises(RolloutFailed) as caught:
        await platform.wait_rollout("default", "stuck", timeout_s=15, poll_s=0.1)
    message = str(caught.value)
    assert "Deployment default/stuck exceeded its progress deadline of 1s" in message
    assert "0 of 2 replicas ready" in message
    assert "has timed out progressing" in message
    assert caught.value.reason == "ProgressDeadlineExceeded"
    assert caught.value.resource == "Deployment default/stuck"


async def test_rollout_wait_gives_up_at_its_own_timeout(platform: KubernetesPlatform) -> None:
    """`timeout_s` passing before the deadline raises RolloutFailed saying how far it got."""
    await apply(platform, [deployment("slow", "registry.example/never:v1")])
    with pytest.raises(RolloutFailed) as caught:
        await platform.wait_rollout("default", "slow", timeout_s=0.5, poll_s=0.1)
    message = str(caught.value)
    assert "Deployment default/slow did not become healthy within 0.5s" in message
    assert "0 of 1 replicas ready" in message
    assert caught.value.reason == "Timeout"


async def test_waiting_for_a_missing_deployment_is_not_found(platform: KubernetesPlatform) -> None:
    """`wait_rollout` on a Deployment that does not exist raises NotFound naming it."""
    with pytest.raises(NotFound, match="Deployment default/ghost"):
        await platform.wait_rollout("default", "ghost", timeout_s=1)


# deleting and live state


async def test_delete_removes_objects_and_tolerates_gone_ones(platform: KubernetesPlatform) -> None:
    """`delete` returns the keys it deleted, Namespace last, and skips objects already gone."""
    items = manifests(BASE)
    await apply(platform, items)
    deleted = await platform.delete(items)
    assert deleted == [
        "apps/Deployment/shop/web",
        "/Service/shop/web",
        "/ConfigMap/shop/web-config",
        "/Namespace//shop",
    ]
    assert await platform.get("apps/Deployment/shop/web") is None
    assert await platform.delete(["apps/Deployment/shop/web", "example.com/Widget/shop/w"]) == []


async def test_live_resources_finds_only_what_slipway_applied_for_the_app(
    platform: KubernetesPlatform, kubesim: KubeSim
) -> None:
    """`live_resources` lists the app's labelled objects, not another app's nor unlabelled ones."""
    await apply(platform, manifests(BASE))
    await apply(platform, [deployment("other", "registry.example/other:v1")], app=OTHER_APP)
    stray = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stray"}}
    async with aiohttp.ClientSession() as http:
        url = f"{kubesim.url}/api/v1/namespaces/shop/configmaps"
        async with http.post(url, json=stray) as response:
            assert response.status == 201
    live = await platform.live_resources(APP)
    assert [m.key for m in live] == [  # no ReplicaSet nor Pod: their Deployment's
        "/ConfigMap/shop/web-config",
        "/Namespace//shop",
        "/Service/shop/web",
        "apps/Deployment/shop/web",
    ]
    web = live[-1]
    assert web.api_version == "apps/v1" and web.body["kind"] == "Deployment"
    assert "managedFields" not in web.body["metadata"]
    assert [m.name for m in await platform.live_resources(OTHER_APP)] == ["other"]


async def test_custom_kinds_apply_after_their_crd_and_show_in_live_state(
    platform: KubernetesPlatform,
) -> None:
    """A CRD and its object apply in one batch (discovery refreshes); live state lists them."""
    await platform.live_resources(APP)  # discovery cached before the CRD exists
    applied = await apply(platform, manifests(WIDGETS))
    assert [a.key for a in applied] == [
        "apiextensions.k8s.io/CustomResourceDefinition//widgets.example.com",
        "example.com/Widget/default/w",
        "networking.istio.io/VirtualService/default/web",
    ]
    live = await platform.live_resources(
        APP, kinds=[("example.com", "Widget"), ("networking.istio.io", "VirtualService")]
    )
    assert [m.key for m in live] == [
        "example.com/Widget/default/w",
        "networking.istio.io/VirtualService/default/web",
    ]
    assert live[0].body["spec"] == {"size": 3}


# errors


async def test_invalid_object_is_invalid_naming_the_resource(platform: KubernetesPlatform) -> None:
    """A container without an image is Invalid (a Rejected), naming the Deployment and the field."""
    broken = deployment("broken", "")
    with pytest.raises(Invalid) as caught:
        await apply(platform, [broken])
    assert isinstance(caught.value, Rejected)
    assert str(caught.value).startswith("apply Deployment default/broken: ")
    assert "spec.template.spec.containers[0].image" in str(caught.value)
    assert caught.value.code == 422 and caught.value.reason == "Invalid"


async def test_variant_on_an_existing_selector_is_invalid(platform: KubernetesPlatform) -> None:
    """Adding the variant to a live Deployment's selector is Invalid: selectors are immutable."""
    await apply(platform, [deployment("api", "registry.example/api:v1")])
    with pytest.raises(Invalid, match=r"Deployment default/api: .*spec.selector.*immutable"):
        await platform.apply(
            [deployment("api", "registry.example/api:v1")],
            application_id=APP,
            deployment_id="d2",
            commit_hash="c2",
            add_variant_to_selector=True,
        )


async def test_forbidden_namespace_is_forbidden(platform: KubernetesPlatform) -> None:
    """Applying where RBAC says no is Forbidden (a Rejected), naming the resource and the user."""
    items = [by_kind(manifests(BASE), "ConfigMap")]
    with pytest.raises(Forbidden) as caught:
        await platform.apply(
            items, application_id=APP, deployment_id="d1", commit_hash="c1", namespace="prod"
        )
    assert isinstance(caught.value, Rejected)
    assert str(caught.value).startswith("apply ConfigMap prod/web-config: ")
    assert "forbidden" in str(caught.value) and caught.value.code == 403


async def test_missing_namespace_is_not_found(platform: KubernetesPlatform) -> None:
    """Applying into a missing namespace is NotFound, with the way out in the message."""
    items = [by_kind(manifests(BASE), "ConfigMap")]
    with pytest.raises(
        NotFound, match=r"apply ConfigMap nowhere/web-config: .*nowhere.*autoCreate"
    ):
        await platform.apply(
            items, application_id=APP, deployment_id="d1", commit_hash="c1", namespace="nowhere"
        )


async def test_unknown_kind_is_not_found(platform: KubernetesPlatform) -> None:
    """A kind the cluster does not serve is NotFound, suggesting its CRD is missing."""
    widget = Manifest(
        api_version="example.com/v1",
        kind="Widget",
        name="w",
        namespace="default",
        body={"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
    )
    with pytest.raises(NotFound, match="Widget default/w: the cluster serves no kind Widget"):
        await apply(platform, [widget])


async def test_unreachable_cluster_is_unavailable(tmp_path: Path, kubesim: KubeSim) -> None:
    """A cluster nothing answers for is PlatformUnavailable, an Unavailable the caller retries."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "kubeconfig"
    kubesim.write_kubeconfig(path)
    path.write_text(path.read_text().replace(kubesim.url, f"http://127.0.0.1:{port}"))
    async with KubernetesPlatform(path, request_timeout_s=2) as platform:
        with pytest.raises(PlatformUnavailable) as caught:
            await platform.get("apps/Deployment/default/web")
    assert isinstance(caught.value, Unavailable)
    assert "cannot reach the Kubernetes API server" in str(caught.value)


async def test_bad_kubeconfig_is_a_config_error(kubeconfig: Path) -> None:
    """A missing kubeconfig or an unknown context is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        await KubernetesPlatform(kubeconfig.parent / "missing.yaml").open()
    with pytest.raises(ConfigError, match="context 'nope'"):
        await KubernetesPlatform(kubeconfig, "nope").open()


async def test_no_kubeconfig_outside_a_pod_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a kubeconfig the in-cluster account is used; outside a pod that error says so."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    for kubeconfig in (None, ""):
        with pytest.raises(ConfigError, match=r"not a Kubernetes pod.*kubeconfigPath"):
            await KubernetesPlatform(kubeconfig).open()


# the pure parts


def test_prepare_leaves_selector_and_non_workloads_alone() -> None:
    """Unless asked, the variant goes on workloads and pod templates only, never on selectors."""
    items = manifests(BASE)

    def as_canary(kind: str) -> dict[str, Any]:
        return prepare_for_apply(
            by_kind(items, kind),
            namespace="shop",
            application_id=APP,
            deployment_id="d1",
            commit_hash="c1",
            variant="canary",
        )

    web = as_canary("Deployment")
    assert web["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert web["spec"]["template"]["metadata"]["labels"]["pipecd.dev/variant"] == "canary"
    config = as_canary("ConfigMap")
    assert config["metadata"]["labels"] == {"slipway.dev/application": APP}
    assert by_kind(items, "Deployment").body["metadata"]["labels"] == {"app": "web"}


def test_rollout_status_waits_for_old_replicas_to_go() -> None:
    """A Deployment whose new replicas are available but old ones still run is not yet healthy."""
    status = rollout_status(
        {
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "generation": 2},
            "spec": {"replicas": 2},
            "status": {
                "observedGeneration": 2,
                "replicas": 3,
                "updatedReplicas": 2,
                "readyReplicas": 3,
                "availableReplicas": 3,
            },
        }
    )
    assert not status.healthy
    assert status.message == "Deployment shop/web: 1 old replicas are pending termination"
