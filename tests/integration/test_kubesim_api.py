"""kubesim's REST semantics over plain HTTP: versions, watch, deletion, discovery, CRDs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from kubesim import KubeSim
from kubesim.testing import eventually

CM = "/api/v1/namespaces/default/configmaps"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.05, watch_history=20, namespace_grace_s=0.05) as sim:
        yield sim


@pytest.fixture
async def http(sim: KubeSim) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sim.url) as session:
        yield session


async def _call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    *,
    expect: int = 200,
    content_type: str = "application/json",
) -> Any:
    data = json.dumps(body) if body is not None else None
    async with http.request(method, path, data=data, headers={"Content-Type": content_type}) as r:
        payload = await r.json()
        assert r.status == expect, payload
        return payload


def _configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}


def _deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": f"acme/{name}:v1"}]},
            },
        },
    }


async def test_discovery_documents(http: aiohttp.ClientSession) -> None:
    """/version, /api, /apis and a group-version list carry what clients read."""
    version = await _call(http, "GET", "/version")
    assert (version["major"], version["minor"]) == ("1", "32")
    assert (await _call(http, "GET", "/api"))["versions"] == ["v1"]
    groups = {g["name"] for g in (await _call(http, "GET", "/apis"))["groups"]}
    assert {"apps", "networking.k8s.io", "networking.istio.io"} <= groups
    apps = await _call(http, "GET", "/apis/apps/v1")
    by_name = {r["name"]: r for r in apps["resources"]}
    assert by_name["deployments"]["shortNames"] == ["deploy"]
    assert by_name["deployments/scale"]["group"] == "autoscaling"
    assert by_name["deployments/scale"]["kind"] == "Scale"
    openapi = await _call(http, "GET", "/openapi/v3")
    assert "apis/apps/v1" in openapi["paths"]


async def test_generation_follows_spec_and_resource_version_follows_writes(
    http: aiohttp.ClientSession,
) -> None:
    """A label change bumps resourceVersion only, a spec change generation; a no-op neither."""
    created = await _call(http, "POST", DEPLOYMENTS, _deployment("gen"), expect=201)
    path = f"{DEPLOYMENTS}/gen"
    merge = "application/merge-patch+json"
    labelled = await _call(
        http, "PATCH", path, {"metadata": {"labels": {"x": "1"}}}, content_type=merge
    )
    assert labelled["metadata"]["generation"] == 1
    assert int(labelled["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    scaled = await _call(http, "PATCH", path, {"spec": {"replicas": 3}}, content_type=merge)
    assert scaled["metadata"]["generation"] == 2
    first = await _call(http, "POST", CM, _configmap("still"), expect=201)
    same = await _call(http, "PUT", f"{CM}/still", first)
    assert same["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    first["data"] = {"changed": "yes"}
    await _call(http, "PUT", f"{CM}/still", first)
    conflict = await _call(http, "PUT", f"{CM}/still", first, expect=409)
    assert conflict["reason"] == "Conflict"


async def test_list_selectors_and_list_resource_version(
    http: aiohttp.ClientSession, sim: KubeSim
) -> None:
    """Lists filter by label and field selectors and report the store's resourceVersion."""
    for name, tier in (("a", "web"), ("b", "api"), ("c", "")):
        labels = {"tier": tier} if tier else {}
        await _call(http, "POST", CM, _configmap(name, **labels), expect=201)

    async def names(query: str) -> list[str]:
        listed = await _call(http, "GET", f"{CM}?{query}")
        assert listed["metadata"]["resourceVersion"] == str(sim.store.resource_version)
        return [item["metadata"]["name"] for item in listed["items"]]

    assert await names("labelSelector=tier%3Dweb") == ["a"]
    assert await names("labelSelector=tier%3D%3Dweb") == ["a"]
    assert await names("labelSelector=tier!%3Dweb") == ["b", "c"]
    assert await names("labelSelector=tier+in+(web,api)") == ["a", "b"]
    assert await names("labelSelector=tier+notin+(web)") == ["b", "c"]
    assert await names("labelSelector=tier") == ["a", "b"]
    assert await names("labelSelector=!tier") == ["c"]
    assert await names("fieldSelector=metadata.name%3Db") == ["b"]
    assert await names("fieldSelector=metadata.namespace!%3Ddefault") == []
    bad = await _call(http, "GET", f"{CM}?labelSelector=tier+in+web", expect=400)
    assert bad["reason"] == "BadRequest"


async def _watch(
    http: aiohttp.ClientSession, query: str, count: int
) -> list[tuple[str, str, dict[str, Any]]]:
    events: list[tuple[str, str, dict[str, Any]]] = []
    async with http.get(f"{CM}?watch=1&timeoutSeconds=5&{query}") as response:
        while len(events) < count:
            line = await asyncio.wait_for(response.content.readline(), 5)
            event = json.loads(line)
            name = event["object"].get("metadata", {}).get("name", "")
            events.append((event["type"], name, event["object"]))
    return events


async def test_watch_reports_objects_entering_and_leaving_a_selector(
    http: aiohttp.ClientSession, sim: KubeSim
) -> None:
    """Through a label selector, a relabelled object is ADDED or DELETED, not MODIFIED."""
    await _call(http, "POST", CM, _configmap("moving", tier="web"), expect=201)
    start = str(sim.store.resource_version)
    merge = "application/merge-patch+json"
    watcher = asyncio.create_task(
        _watch(http, f"labelSelector=tier%3Dweb&resourceVersion={start}", 3)
    )
    await eventually(lambda: sim.store.subscribers(), message="watch subscribed")
    for tier in ("api", "web"):
        patch = {"metadata": {"labels": {"tier": tier}}}
        await _call(http, "PATCH", f"{CM}/moving", patch, content_type=merge)
    await _call(http, "DELETE", f"{CM}/moving")
    events = await watcher
    assert [(kind, name) for kind, name, _ in events] == [
        ("DELETED", "moving"),
        ("ADDED", "moving"),
        ("DELETED", "moving"),
    ]


async def test_watch_without_resource_version_starts_with_current_objects(
    http: aiohttp.ClientSession,
) -> None:
    """A watch with no resourceVersion first reports every existing object as ADDED."""
    await _call(http, "POST", CM, _configmap("existing"), expect=201)
    events = await _watch(http, "", 1)
    assert events[0][:2] == ("ADDED", "existing")


async def test_watch_from_a_compacted_resource_version_is_expired(
    http: aiohttp.ClientSession,
) -> None:
    """Watching from before the kept history yields an ERROR event with a 410 Expired Status."""
    for n in range(30):
        await _call(http, "POST", CM, _configmap(f"cm{n}"), expect=201)
    events = await _watch(http, "resourceVersion=1", 1)
    kind, _, status = events[0]
    assert kind == "ERROR"
    assert (status["code"], status["reason"]) == (410, "Expired")


@pytest.mark.usefixtures("sim")
async def test_delete_propagation_policies(http: aiohttp.ClientSession) -> None:
    """Background deletes dependents, Orphan keeps them without the owner reference."""
    await _call(http, "POST", DEPLOYMENTS, _deployment("kept", replicas=2), expect=201)
    pods_path = "/api/v1/namespaces/default/pods"

    async def pods(selector: str) -> list[dict[str, Any]]:
        listed = await _call(http, "GET", f"{pods_path}?labelSelector={selector}")
        items: list[dict[str, Any]] = listed["items"]
        return items

    await eventually(lambda: _count(pods("app%3Dkept"), 2), message="two pods")
    rs = (await _call(http, "GET", "/apis/apps/v1/namespaces/default/replicasets"))["items"][0]
    await _call(http, "DELETE", f"{DEPLOYMENTS}/kept", {"propagationPolicy": "Orphan"})
    orphan = await _call(
        http, "GET", f"/apis/apps/v1/namespaces/default/replicasets/{rs['metadata']['name']}"
    )
    assert "ownerReferences" not in orphan["metadata"]
    assert len(await pods("app%3Dkept")) == 2
    await _call(
        http,
        "DELETE",
        f"/apis/apps/v1/namespaces/default/replicasets/{rs['metadata']['name']}",
        {"propagationPolicy": "Background"},
    )
    assert await pods("app%3Dkept") == []


async def _count(items: Any, n: int) -> bool:
    return len(await items) == n


async def test_finalizers_hold_deletion_until_removed(http: aiohttp.ClientSession) -> None:
    """An object with finalizers is only marked for deletion until the last one goes."""
    body = _configmap("held") | {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    await _call(http, "POST", CM, body, expect=201)
    marked = await _call(http, "DELETE", f"{CM}/held")
    assert marked["metadata"]["deletionTimestamp"]
    assert (await _call(http, "GET", f"{CM}/held"))["metadata"]["deletionTimestamp"]
    json_patch = [{"op": "remove", "path": "/metadata/finalizers"}]
    await _call(http, "PATCH", f"{CM}/held", json_patch, content_type="application/json-patch+json")
    gone = await _call(http, "GET", f"{CM}/held", expect=404)
    assert gone["reason"] == "NotFound"


async def test_dry_run_validates_without_storing(http: aiohttp.ClientSession) -> None:
    """`dryRun=All` answers as if created, and nothing is stored."""
    answered = await _call(http, "POST", f"{CM}?dryRun=All", _configmap("dry"), expect=201)
    assert answered["metadata"]["name"] == "dry"
    await _call(http, "GET", f"{CM}/dry", expect=404)


async def test_namespace_deletion_removes_its_content(http: aiohttp.ClientSession) -> None:
    """A deleted namespace turns Terminating, then disappears with everything in it."""
    await _call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": "temp"}}, expect=201)
    temp_cm = "/api/v1/namespaces/temp/configmaps"
    await _call(http, "POST", temp_cm, _configmap("inside"), expect=201)
    terminating = await _call(http, "DELETE", "/api/v1/namespaces/temp")
    assert terminating["status"]["phase"] == "Terminating"
    refused = await _call(http, "POST", temp_cm, _configmap("late"), expect=403)
    assert refused["reason"] == "Forbidden"

    async def gone() -> bool:
        async with http.get("/api/v1/namespaces/temp") as response:
            return response.status == 404

    await eventually(gone, message="namespace removed")
    assert (await _call(http, "GET", "/api/v1/configmaps"))["items"] == []


async def test_custom_resource_definition_serves_its_kind(http: aiohttp.ClientSession) -> None:
    """Creating a CRD serves its kind at once (discovery, CRUD); deleting it removes both."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    await _call(http, "POST", crds, crd, expect=201)
    established = await _call(http, "GET", f"{crds}/widgets.example.com")
    assert {c["type"] for c in established["status"]["conditions"]} >= {"Established"}
    kinds = await _call(http, "GET", "/apis/example.com/v1")
    assert [r["kind"] for r in kinds["resources"]] == ["Widget"]
    widgets = "/apis/example.com/v1/namespaces/default/widgets"
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1},
    }
    await _call(http, "POST", widgets, widget, expect=201)
    await _call(http, "DELETE", f"{crds}/widgets.example.com")
    await _call(http, "GET", widgets, expect=404)


async def test_forbidden_rules_are_replaced_at_run_time(http: aiohttp.ClientSession) -> None:
    """PUT /kubesim/forbidden makes matching requests answer 403 with a Forbidden Status."""
    rules = [{"namespace": "default", "verbs": ["delete"], "resources": ["configmaps"]}]
    async with http.put("/kubesim/forbidden", json=rules) as response:
        assert response.status == 200
    await _call(http, "POST", CM, _configmap("guarded"), expect=201)
    refused = await _call(http, "DELETE", f"{CM}/guarded", expect=403)
    assert refused["message"] == (
        'configmaps "guarded" is forbidden: User "kubesim" cannot delete resource "configmaps"'
        ' in API group "" in the namespace "default"'
    )


async def test_a_json_token_request_is_answered_as_older_kubectl_and_client_go_send_it(
    http: aiohttp.ClientSession, sim: KubeSim
) -> None:
    """A TokenRequest in JSON (kubectl < 1.32, client libraries): 201 with the token for the
    asked audiences; a lifetime beyond 2^32 s is 422 naming the field; discovery lists the
    subresource as kubectl and client-go expect (TokenRequest, authentication.k8s.io/v1)."""
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ci"}}
    await _call(http, "POST", "/api/v1/namespaces/default/serviceaccounts", sa, expect=201)
    path = "/api/v1/namespaces/default/serviceaccounts/ci/token"
    request: dict[str, Any] = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": ["vault"], "expirationSeconds": 600},
    }
    answer = await _call(http, "POST", path, request, expect=201)
    assert answer["spec"] == {
        "audiences": ["vault"],
        "expirationSeconds": 600,
        "boundObjectRef": None,
    }
    claims = sim.api.tokens.verify(answer["status"]["token"], datetime.now(UTC))
    assert claims is not None and claims["aud"] == ["vault"]
    request["spec"]["expirationSeconds"] = (1 << 32) + 1
    refused = await _call(http, "POST", path, request, expect=422)
    assert refused["details"]["causes"][0]["field"] == "spec.expirationSeconds"
    assert (await _call(http, "GET", path, expect=405))["reason"] == "MethodNotAllowed"
    core = await _call(http, "GET", "/api/v1")
    (token,) = [r for r in core["resources"] if r["name"] == "serviceaccounts/token"]
    assert (token["kind"], token["group"], token["version"], token["verbs"]) == (
        "TokenRequest",
        "authentication.k8s.io",
        "v1",
        ["create"],
    )
