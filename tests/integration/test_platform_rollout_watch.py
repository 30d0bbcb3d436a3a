"""`wait_rollout` watches the workload instead of polling it, against kubesim (and, for a
server that sends garbage, a bare HTTP server), as against a real cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from kubesim import KubeSim
from kubesim.access import ForbiddenRule
from kubesim.rules import ImageRule
from shared.config.manifests import Manifest
from shared.errors import Invalid, NotFound
from shared.platform import KubernetesPlatform
from shared.testing import wait_until

APP = "01app0000000000000000000aa"
NEVER_READY = "registry.example/never:*"
OBJECT = "GET /apis/apps/v1/namespaces/default/deployments/web"
COLLECTION = "GET /apis/apps/v1/namespaces/default/deployments"


def deployment(image: str) -> Manifest:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }
    return Manifest(
        api_version="apps/v1", kind="Deployment", name="web", namespace="default", body=body
    )


async def started(
    tmp_path: Path, forbidden: list[ForbiddenRule] | None = None
) -> AsyncIterator[tuple[KubeSim, KubernetesPlatform]]:
    sim = KubeSim(
        rules=[ImageRule(image=NEVER_READY, never_ready=True)],
        ready_delay_s=0.3,
        forbidden=forbidden or [],
    )
    await sim.start()
    try:
        async with KubernetesPlatform(sim.write_kubeconfig(tmp_path / "kubeconfig")) as p:
            yield sim, p
    finally:
        await sim.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[KubeSim, KubernetesPlatform]]:
    async for both in started(tmp_path):
        yield both


@pytest.fixture
async def no_watch(tmp_path: Path) -> AsyncIterator[tuple[KubeSim, KubernetesPlatform]]:
    rule = ForbiddenRule(verbs=("watch",), resources=("deployments",))
    async for both in started(tmp_path, [rule]):
        yield both


async def apply(platform: KubernetesPlatform, image: str) -> None:
    await platform.apply(
        [deployment(image)], application_id=APP, deployment_id="d1", commit_hash="c1"
    )


async def test_a_rollout_is_read_once_then_watched(
    cluster: tuple[KubeSim, KubernetesPlatform],
) -> None:
    """One read and one watch see a rollout through (polling it took four or five reads)."""
    sim, platform = cluster
    await apply(platform, "registry.example/web:v1")
    sim.api.requests.clear()
    status = await platform.wait_rollout("default", "web", timeout_s=10, poll_s=0.05)
    assert status.healthy and (status.desired, status.available) == (2, 2)
    assert (sim.api.requests[OBJECT], sim.api.requests[COLLECTION]) == (1, 1)


async def test_a_cluster_that_forbids_watching_is_polled(
    no_watch: tuple[KubeSim, KubernetesPlatform],
) -> None:
    """Without RBAC's `watch` the rollout is still waited for, by reading it again."""
    sim, platform = no_watch
    await apply(platform, "registry.example/web:v1")
    sim.api.requests.clear()
    status = await platform.wait_rollout("default", "web", timeout_s=10, poll_s=0.05)
    assert status.healthy
    assert sim.api.requests[OBJECT] > 1


async def test_a_workload_deleted_while_watched_is_not_found_at_once(
    cluster: tuple[KubeSim, KubernetesPlatform],
) -> None:
    """Its DELETED event ends the watch and the read after it says NotFound, long before
    the rollout's own timeout."""
    sim, platform = cluster
    await apply(platform, "registry.example/never:v1")
    sim.api.requests.clear()
    waiting = asyncio.ensure_future(platform.wait_rollout("default", "web", timeout_s=60))
    await wait_until(lambda: sim.api.requests[COLLECTION] >= 1, what="the watch")
    await platform.delete(["apps/Deployment/default/web"])
    with pytest.raises(NotFound, match="Deployment default/web"):
        await asyncio.wait_for(waiting, 10)


async def test_a_watch_event_that_is_not_an_event_is_invalid(tmp_path: Path) -> None:
    """A server whose watch sends something other than `{"type", "object"}` lines gets a
    clear `Invalid` naming the workload, not a crash or a hang."""
    unready = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
        "spec": {"replicas": 1},
        "status": {},
    }

    async def read(_request: web.Request) -> web.Response:
        return web.json_response(unready)

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'["not", "an", "event"]\n')
        await response.write_eof()
        return response

    async def discovery(_request: web.Request) -> web.Response:
        resources = [{"name": "deployments", "kind": "Deployment", "namespaced": True}]
        return web.json_response({"groupVersion": "apps/v1", "resources": resources})

    app = web.Application()
    app.router.add_get("/apis/apps/v1", discovery)
    app.router.add_get("/apis/apps/v1/namespaces/default/deployments/web", read)
    app.router.add_get("/apis/apps/v1/namespaces/default/deployments", watch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                    "users": [{"name": "u", "user": {}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        async with KubernetesPlatform(kubeconfig) as platform:
            with pytest.raises(Invalid, match=r"watch Deployment default/web: .*\[\"not\""):
                await platform.wait_rollout("default", "web", timeout_s=10)
    finally:
        await runner.cleanup()


async def test_kubesim_wakes_only_the_watches_that_can_see_a_change(tmp_path: Path) -> None:
    """A change in one namespace is queued for that namespace's watches and the
    cluster-wide ones, not for every watch of the kind (1,000 rollouts watched at once
    in 1,000 namespaces would each wake all the others)."""
    async with KubeSim(ready_delay_s=0.3) as sim:
        deployments = sim.registry.by_plural("apps", "v1", "deployments")
        assert deployments is not None
        here = sim.store.subscribe(deployments, "default")
        elsewhere = sim.store.subscribe(deployments, "other")
        everywhere = sim.store.subscribe(deployments)
        async with KubernetesPlatform(sim.write_kubeconfig(tmp_path / "kubeconfig")) as platform:
            await apply(platform, "registry.example/web:v1")
        assert here.queue.qsize() >= 1 and everywhere.queue.qsize() == here.queue.qsize()
        assert elsewhere.queue.empty()
        for subscription in (here, elsewhere, everywhere):
            sim.store.unsubscribe(subscription)
        assert sim.store.subscribers() == 0


async def test_a_rollout_is_watched_from_the_object_its_apply_returned(
    cluster: tuple[KubeSim, KubernetesPlatform],
) -> None:
    """Given the applied object, no read at all: one watch from its version; an object
    without its kind (nothing to judge it by) is read first."""
    sim, platform = cluster
    applied = await platform.apply(
        [deployment("registry.example/web:v1")],
        application_id=APP,
        deployment_id="d1",
        commit_hash="c1",
    )
    sim.api.requests.clear()
    status = await platform.wait_rollout("default", "web", timeout_s=10, seen=applied[0].body)
    assert status.healthy
    assert (sim.api.requests[OBJECT], sim.api.requests[COLLECTION]) == (0, 1)
    sim.api.requests.clear()
    kindless = {k: v for k, v in applied[0].body.items() if k != "kind"}
    assert (await platform.wait_rollout("default", "web", timeout_s=10, seen=kindless)).healthy
    assert sim.api.requests[OBJECT] == 1
