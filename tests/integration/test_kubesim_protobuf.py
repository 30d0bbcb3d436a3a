"""kubectl ≥ 1.32's imperative `create` sends protobuf bodies; kubesim stores what the same
command stores when kubectl sends JSON (kubectl 1.31 and older).

Before, kubesim answered every protobuf body 415 and `kubectl.1.33 create deployment`
failed; kubectl does not retry such a body as JSON, as a real API server never refuses
protobuf for a built-in kind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubesim import KubeSim
from kubesim.testing import Kubectl, find_kubectl, versioned_kubectls

VERSIONS = versioned_kubectls(found) if (found := find_kubectl()) else {}
PROTOBUF_SENDERS = [v for v in VERSIONS if int(v.split(".")[1]) >= 32]
JSON_SENDERS = [v for v in VERSIONS if int(v.split(".")[1]) < 32]

pytestmark = pytest.mark.skipif(
    not (PROTOBUF_SENDERS and JSON_SENDERS),
    reason="needs a side-by-side kubectl.1.NN from 1.32 on and one before it",
)

# `{n}` names each object after the kubectl that made it; -n names the namespace.
COMMANDS = [
    ["create", "namespace", "team-{n}"],
    ["create", "configmap", "settings-{n}", "--from-literal=mode=fast", "--from-literal=x="],
    ["create", "secret", "generic", "token-{n}", "--from-literal=key=s3cr3t"],
    ["create", "deployment", "web-{n}", "--image=nginx:1.27", "--replicas=3", "--port=8080"],
    ["create", "deployment", "idle-{n}", "--image=nginx:1.27", "--replicas=0"],
    ["create", "service", "clusterip", "web-{n}", "--tcp=80:8080"],
    ["create", "service", "nodeport", "edge-{n}", "--tcp=443:8443", "--node-port=30443"],
    ["create", "serviceaccount", "robot-{n}"],
    ["create", "job", "once-{n}", "--image=busybox", "--", "echo", "hi"],
    ["create", "cronjob", "tick-{n}", "--image=busybox", "--schedule=*/5 * * * *"],
    ["create", "role", "reader-{n}", "--verb=get,list", "--resource=pods,configmaps"],
    ["create", "rolebinding", "reader-{n}", "--role=reader-{n}", "--user=alice"],
    ["create", "clusterrole", "viewer-{n}", "--verb=get", "--resource=nodes"],
    ["create", "clusterrolebinding", "viewer-{n}", "--clusterrole=viewer-{n}", "--group=ops"],
    ["create", "pdb", "web-{n}", "--selector=app=web", "--min-available=50%"],
    ["create", "ingress", "web-{n}", "--rule=shop.example/api*=web-{n}:80,tls=cert"],
]
KINDS = (
    "ns,cm,secret,deploy,svc,sa,job,cronjob,role,rolebinding,clusterrole,clusterrolebinding,pdb,ing"
)
_VOLATILE = ("uid", "creationTimestamp", "resourceVersion", "managedFields", "namespace")


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.05) as sim:
        yield sim


def _kubectl(sim: KubeSim, version: str, tmp_path: Path) -> Kubectl:
    kubeconfig = sim.write_kubeconfig(tmp_path / f"kubeconfig-{version}")
    return Kubectl(VERSIONS[version], kubeconfig, tmp_path / f"cache-{version}")


async def _created(kubectl: Kubectl, tag: str) -> dict[str, Any]:
    """Run every command with names tagged `tag` in namespace `tag`; what the server stored,
    by kind and name, with the tag taken out and what differs between two objects dropped."""
    await kubectl("create", "namespace", tag)
    await asyncio.gather(
        *(kubectl("--namespace", tag, *(word.format(n=tag) for word in c)) for c in COMMANDS)
    )
    listed = (await kubectl("get", KINDS, "-A", "-o", "json")).json()["items"]
    stored: dict[str, Any] = {}
    for item in listed:
        name = item["metadata"]["name"]
        if not name.endswith(f"-{tag}") or item["kind"] == "ReplicaSet":
            continue
        for field in _VOLATILE:
            item["metadata"].pop(field, None)
        item.pop("status", None)
        for field in ("clusterIP", "clusterIPs"):  # allocated one after the other
            item.get("spec", {}).pop(field, None)
        key = f"{item['kind']}/{name.removesuffix('-' + tag)}-X"
        stored[key] = json.loads(json.dumps(item).replace(f"-{tag}", "-X"))
    return stored


async def test_kubectl_create_stores_the_same_objects_from_protobuf_as_from_json(
    sim: KubeSim, tmp_path: Path
) -> None:
    newest, oldest = PROTOBUF_SENDERS[-1], JSON_SENDERS[-1]
    from_protobuf = await _created(_kubectl(sim, newest, tmp_path), "pb")
    from_json = await _created(_kubectl(sim, oldest, tmp_path), "js")
    assert len(from_protobuf) == len(COMMANDS)
    assert from_protobuf.keys() == from_json.keys()
    for key, stored in from_json.items():
        assert json.dumps(from_protobuf[key], sort_keys=True) == json.dumps(stored, sort_keys=True)
    deployment = from_protobuf["Deployment/web-X"]
    assert deployment["spec"]["replicas"] == 3
    assert from_protobuf["Deployment/idle-X"]["spec"]["replicas"] == 0
    ingress = from_protobuf["Ingress/web-X"]["spec"]["rules"][0]
    assert ingress["http"]["paths"][0]["pathType"] == "Prefix"
