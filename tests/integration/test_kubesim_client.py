"""kubernetes-asyncio's own typed API classes work against kubesim unchanged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.rest import ApiException

from kubesim import ForbiddenRule, KubeSim
from kubesim.testing import eventually


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    forbidden = [ForbiddenRule(namespace="locked")]
    async with KubeSim(ready_delay_s=0.1, forbidden=forbidden) as sim:
        yield sim


@pytest.fixture
async def api(sim: KubeSim, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(sim.write_kubeconfig(tmp_path / "kubeconfig")),
        client_configuration=configuration,
    )
    async with client.ApiClient(configuration) as api_client:
        yield api_client


def _deployment(name: str, image: str = "ghcr.io/acme/api:v1", replicas: int = 2) -> Any:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name=name, image=image)]),
            ),
        ),
    )


def _status(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body or b"{}")
    return body


async def test_typed_create_read_patch_list_delete(api: client.ApiClient) -> None:
    """AppsV1Api and CoreV1Api create, read, patch, list and delete; delete cascades."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))
    created = await apps.create_namespaced_deployment("py", _deployment("api"))
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"  # defaulted by the server
    read = await apps.read_namespaced_deployment("api", "py")
    assert read.metadata.uid == created.metadata.uid
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "api", "image": "acme/api:v2"}]}}}
    }
    patched = await apps.patch_namespaced_deployment("api", "py", patch)
    assert patched.metadata.generation == 2
    assert patched.spec.template.spec.containers[0].image == "acme/api:v2"
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)

    async def pods_of_v2() -> list[Any]:
        pods = await core.list_namespaced_pod("py", label_selector="app=api")
        images = [p.spec.containers[0].image for p in pods.items]
        return pods.items if images == ["acme/api:v2"] * 2 else []

    await eventually(pods_of_v2, message="two v2 pods")
    await apps.delete_namespaced_deployment("api", "py")

    async def nothing_left() -> bool:
        rs = await apps.list_namespaced_replica_set("py")
        pods = await core.list_namespaced_pod("py")
        return not rs.items and not pods.items

    await eventually(nothing_left, message="ReplicaSets and Pods garbage-collected")


async def test_watch_stream_follows_a_rollout(api: client.ApiClient) -> None:
    """A kubernetes-asyncio Watch sees the Deployment go from ADDED to fully available."""
    apps = client.AppsV1Api(api)
    await apps.create_namespaced_deployment("default", _deployment("watched", replicas=2))
    seen: list[str] = []
    stream = watch.Watch()
    async with stream:
        async for event in stream.stream(
            apps.list_namespaced_deployment, "default", timeout_seconds=10
        ):
            deployment = event["object"]
            seen.append(event["type"])
            if (deployment.status.available_replicas or 0) == 2:
                break
    assert seen[0] == "ADDED"
    assert "MODIFIED" in seen


async def test_watch_resumes_after_a_resource_version(api: client.ApiClient) -> None:
    """A watch from a list's resourceVersion reports only later changes, in order."""
    core = client.CoreV1Api(api)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="before"), data={"k": "v"})
    await core.create_namespaced_config_map("default", body)
    listed = await core.list_namespaced_config_map("default")
    after = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="after"), data={"k": "v"})
    await core.create_namespaced_config_map("default", after)
    await core.delete_namespaced_config_map("after", "default")
    events = []
    stream = watch.Watch()
    async with stream:
        async for event in stream.stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=5,
        ):
            events.append((event["type"], event["object"].metadata.name))
            if len(events) == 2:
                break
    assert events == [("ADDED", "after"), ("DELETED", "after")]


async def test_errors_are_kubernetes_status_objects(api: client.ApiClient) -> None:
    """NotFound, AlreadyExists, Conflict, Invalid and Forbidden come back as real Status bodies."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    with pytest.raises(ApiException) as missing:
        await apps.read_namespaced_deployment("ghost", "default")
    assert (missing.value.status, _status(missing.value)["reason"]) == (404, "NotFound")
    assert _status(missing.value)["message"] == 'deployments.apps "ghost" not found'

    await apps.create_namespaced_deployment("default", _deployment("dup"))
    with pytest.raises(ApiException) as duplicate:
        await apps.create_namespaced_deployment("default", _deployment("dup"))
    assert (duplicate.value.status, _status(duplicate.value)["reason"]) == (409, "AlreadyExists")

    stale = await apps.read_namespaced_deployment("dup", "default")
    await apps.patch_namespaced_deployment("dup", "default", {"metadata": {"labels": {"x": "1"}}})
    stale.spec.replicas = 5
    with pytest.raises(ApiException) as conflict:
        await apps.replace_namespaced_deployment("dup", "default", stale)
    assert (conflict.value.status, _status(conflict.value)["reason"]) == (409, "Conflict")

    mismatched = _deployment("bad")
    mismatched.spec.template.metadata.labels = {"app": "other"}
    with pytest.raises(ApiException) as invalid:
        await apps.create_namespaced_deployment("default", mismatched)
    status = _status(invalid.value)
    assert (invalid.value.status, status["reason"]) == (422, "Invalid")
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.template.metadata.labels"]

    with pytest.raises(ApiException) as forbidden:
        await core.list_namespaced_pod("locked")
    assert (forbidden.value.status, _status(forbidden.value)["reason"]) == (403, "Forbidden")

    with pytest.raises(ApiException) as no_namespace:
        await apps.create_namespaced_deployment("nowhere", _deployment("api"))
    assert _status(no_namespace.value)["message"] == 'namespaces "nowhere" not found'


async def test_scale_subresource_and_server_side_apply(api: client.ApiClient) -> None:
    """The typed scale call and a server-side apply (apply-patch+yaml) both reach the object."""
    apps = client.AppsV1Api(api)
    applied = _deployment("ssa", replicas=1)
    body = api.sanitize_for_serialization(applied) | {"apiVersion": "apps/v1", "kind": "Deployment"}
    created = await apps.patch_namespaced_deployment(
        "ssa",
        "default",
        body,
        field_manager="slipway",
        # kubernetes-asyncio takes it through **kwargs that its annotations leave out.
        _content_type="application/apply-patch+yaml",  # type: ignore[call-arg]
    )
    assert created.metadata.managed_fields[0].manager == "slipway"
    assert created.metadata.managed_fields[0].operation == "Apply"
    scale = await apps.patch_namespaced_deployment_scale(
        "ssa", "default", {"spec": {"replicas": 3}}
    )
    assert scale.spec.replicas == 3
    assert scale.status.selector == "app=ssa"
    assert (await apps.read_namespaced_deployment("ssa", "default")).spec.replicas == 3


async def test_istio_virtual_service_through_custom_objects_api(api: client.ApiClient) -> None:
    """Istio kinds are custom objects: merge patch works, strategic merge is refused (415)."""
    custom = client.CustomObjectsApi(api)
    group, version, plural = "networking.istio.io", "v1beta1", "virtualservices"
    route = {
        "apiVersion": f"{group}/{version}",
        "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {
            "hosts": ["web"],
            "http": [
                {"route": [{"destination": {"host": "web", "subset": "primary"}, "weight": 100}]}
            ],
        },
    }
    await custom.create_namespaced_custom_object(group, version, "default", plural, route)
    canary = {
        "spec": {
            "http": [
                {
                    "route": [
                        {"destination": {"host": "web", "subset": "primary"}, "weight": 80},
                        {"destination": {"host": "web", "subset": "canary"}, "weight": 20},
                    ]
                }
            ]
        }
    }
    patched = await custom.patch_namespaced_custom_object(
        group,
        version,
        "default",
        plural,
        "web",
        canary,
        # kubernetes-asyncio takes it through **kwargs that its annotations leave out.
        _content_type="application/merge-patch+json",  # type: ignore[call-arg]
    )
    assert [r["weight"] for r in patched["spec"]["http"][0]["route"]] == [80, 20]
    old = await custom.get_namespaced_custom_object(group, "v1alpha3", "default", plural, "web")
    assert old["apiVersion"] == "networking.istio.io/v1alpha3"
    with pytest.raises(ApiException) as refused:
        await custom.patch_namespaced_custom_object(
            group,
            version,
            "default",
            plural,
            "web",
            canary,
            _content_type="application/strategic-merge-patch+json",  # type: ignore[call-arg]
        )
    assert refused.value.status == 415
