"""kubesim at scale: a write costs what it concerns, not the size of the cluster.

Its controllers used to reconcile every Deployment, ReplicaSet and pod after
every write and every tick, each Deployment scanning every ReplicaSet of the
cluster: with a few hundred applications the event loop (which also serves the
API) spent seconds per pass, and `python -m benchmarks.scale`'s 1,000 quick
syncs slowed to a crawl after ~600. Now a pass looks only at the objects the
writes since the last pass concern (`kubesim.workqueue`) and at those waiting
on the clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from kubesim import ImageRule, KubeSim
from kubesim.testing import eventually

SETTLED = 40  # Deployments already rolled out, each in its own namespace


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
                "spec": {"containers": [{"name": "web", "image": "ghcr.io/acme/web:v1"}]},
            },
        },
    }


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.0) as sim:
        yield sim


async def _post(http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> None:
    async with http.post(path, data=json.dumps(body)) as reply:
        assert reply.status == 201, await reply.text()


async def _available(http: aiohttp.ClientSession, namespace: str, name: str) -> int:
    async with http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}") as reply:
        body = await reply.json()
    return int((body.get("status") or {}).get("availableReplicas", 0))


def _counting(sync: Callable[[dict[str, Any]], bool], calls: list[str]) -> Callable[..., bool]:
    def counted(obj: dict[str, Any]) -> bool:
        calls.append(obj["metadata"]["namespace"])
        return sync(obj)

    return counted


async def test_a_write_reconciles_what_it_concerns_not_every_object(sim: KubeSim) -> None:
    async with aiohttp.ClientSession(base_url=sim.url) as http:
        for i in range(SETTLED):
            await _post(http, "/api/v1/namespaces", {"metadata": {"name": f"ns{i}"}})
            await _post(http, f"/apis/apps/v1/namespaces/ns{i}/deployments", _deployment("web"))

        async def all_available() -> bool:
            return all([await _available(http, f"ns{i}", "web") == 1 for i in range(SETTLED)])

        await eventually(all_available, within=30)
        deployments: list[str] = []
        replicasets: list[str] = []
        sim.deployments._sync = _counting(sim.deployments._sync, deployments)  # type: ignore[method-assign]
        sim.replicasets._sync = _counting(sim.replicasets._sync, replicasets)  # type: ignore[method-assign]

        scale = {"spec": {"replicas": 2}}
        async with http.patch(
            "/apis/apps/v1/namespaces/ns7/deployments/web",
            data=json.dumps(scale),
            headers={"Content-Type": "application/merge-patch+json"},
        ) as reply:
            assert reply.status == 200, await reply.text()

        async def scaled() -> bool:
            return await _available(http, "ns7", "web") == 2

        await eventually(scaled, within=10)

    # The scaled Deployment and its ReplicaSet, once per write that concerned them (a
    # handful); never the other 39 (each pass over everything was 40 of each).
    assert set(deployments) == {"ns7"}, sorted(set(deployments))
    assert set(replicasets) == {"ns7"}, sorted(set(replicasets))
    assert len(deployments) < 10 and len(replicasets) < 10, (len(deployments), len(replicasets))


async def test_the_clock_still_moves_what_waits_on_it() -> None:
    """A readiness delay, `minReadySeconds` and a progress deadline end with no write."""
    never = ImageRule("never:*", never_ready=True)
    async with (
        KubeSim(ready_delay_s=0.3, rules=[never]) as sim,
        aiohttp.ClientSession(base_url=sim.url) as http,
    ):
        slow = _deployment("slow")
        slow["spec"]["minReadySeconds"] = 1
        await _post(http, "/apis/apps/v1/namespaces/default/deployments", slow)
        stuck = _deployment("stuck")
        stuck["spec"]["progressDeadlineSeconds"] = 1
        stuck["spec"]["template"]["spec"]["containers"][0]["image"] = "never:ready"
        await _post(http, "/apis/apps/v1/namespaces/default/deployments", stuck)

        async def slow_available() -> bool:
            return await _available(http, "default", "slow") == 1

        async def stuck_reason() -> bool:
            path = "/apis/apps/v1/namespaces/default/deployments/stuck"
            async with http.get(path) as reply:
                body = await reply.json()
            conditions = (body.get("status") or {}).get("conditions") or []
            return any(c.get("reason") == "ProgressDeadlineExceeded" for c in conditions)

        await eventually(slow_available, within=10)
        await eventually(stuck_reason, within=10)
