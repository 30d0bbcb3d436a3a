"""The annotations a config's author writes on a manifest for PipeCD's piped, on kubesim:
`pipecd.dev/order` (apply order), `pipecd.dev/sync-by-replace` (a whole-object PUT) and
`pipecd.dev/force-sync-by-replace` (delete and create)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubesim import KubeSim
from shared.config.manifests import Manifest
from shared.platform import KubernetesPlatform

APP = "01app0000000000000000000aa"


def config_map(name: str, data: dict[str, str], **annotations: str) -> Manifest:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "data": data,
    }
    return Manifest(api_version="v1", kind="ConfigMap", name=name, namespace="default", body=body)


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim() as sim:
        yield sim


@pytest.fixture
async def platform(sim: KubeSim, tmp_path: Path) -> AsyncIterator[KubernetesPlatform]:
    async with KubernetesPlatform(sim.write_kubeconfig(tmp_path / "kubeconfig")) as p:
        yield p


async def apply(platform: KubernetesPlatform, items: list[Manifest], commit: str) -> list[Any]:
    return await platform.apply(
        items, application_id=APP, deployment_id=f"d-{commit}", commit_hash=commit
    )


async def test_order_annotation_sorts_the_apply_as_pipecd_does(
    platform: KubernetesPlatform,
) -> None:
    """Lower `pipecd.dev/order` first, unset (or not a number) counts as 0, ties keep the
    rendered order; Namespaces still go before everything."""
    items = [
        config_map("late", {}, **{"pipecd.dev/order": "10"}),
        config_map("plain", {}),
        config_map("early", {}, **{"pipecd.dev/order": "-1"}),
        config_map("garbled", {}, **{"pipecd.dev/order": "soon"}),
    ]
    applied = await apply(platform, items, "c1")
    assert [a.name for a in applied] == ["early", "plain", "garbled", "late"]


async def test_sync_by_replace_puts_the_whole_object(
    platform: KubernetesPlatform, sim: KubeSim
) -> None:
    """A key another field manager added survives an apply but not a replace, which sends
    the object whole; a missing object is created."""
    replace = {"pipecd.dev/sync-by-replace": "enabled"}
    created = await apply(platform, [config_map("cfg", {"a": "1"}, **replace)], "c1")
    assert created[0].created  # not there yet: created
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}
    url = f"{sim.url}/api/v1/namespaces/default/configmaps/cfg?fieldManager=someone-else"
    async with (
        aiohttp.ClientSession() as http,  # another field manager adds a key
        http.patch(
            url,
            json=other | {"data": {"extra": "x"}},
            headers={"Content-Type": "application/apply-patch+yaml"},
        ) as response,
    ):
        assert response.status == 200
    await apply(platform, [config_map("cfg", {"a": "2"})], "c2")  # apply: both managers' keys
    live = await platform.get("/ConfigMap/default/cfg")
    assert live is not None and live["data"] == {"a": "2", "extra": "x"}
    replaced = await apply(platform, [config_map("cfg", {"a": "3"}, **replace)], "c3")
    live = await platform.get("/ConfigMap/default/cfg")
    assert live is not None and live["data"] == {"a": "3"}
    assert not replaced[0].created and replaced[0].uid == created[0].uid
    assert live["metadata"]["annotations"]["pipecd.dev/commit-hash"] == "c3"


async def test_force_sync_by_replace_deletes_and_creates(platform: KubernetesPlatform) -> None:
    """`force-sync-by-replace: enabled` (it wins over sync-by-replace): a new object, new uid."""
    force = {
        "pipecd.dev/force-sync-by-replace": "enabled",
        "pipecd.dev/sync-by-replace": "enabled",
    }
    first = await apply(platform, [config_map("job-spec", {"v": "1"})], "c1")
    again = await apply(platform, [config_map("job-spec", {"v": "2"}, **force)], "c2")
    assert again[0].created and again[0].uid != first[0].uid
    live = await platform.get("/ConfigMap/default/job-spec")
    assert live is not None and live["data"] == {"v": "2"}
    assert live["metadata"]["labels"]["slipway.dev/application"] == APP
