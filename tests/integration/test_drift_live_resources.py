"""The drift service records an application's live tree on kubesim, once per change; the API
answers it (`GET /applications/{id}/live`) and `slipway app get --live` prints it nested."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from kubesim import KubeSim
from kubesim.testing import Kubectl, eventually, find_kubectl
from services.drift.decider import DRIFT
from services.drift.service import DriftDetector
from shared.config.control import KubernetesProviderConfig
from shared.deploysource import load_deploy_source
from shared.eventlog import EventStore
from shared.eventlog.execute import load
from shared.eventlog.store import new_events
from shared.events.catalog import (
    ApplicationLiveResourcesObserved,
    ApplicationRegistered,
    LiveResource,
)
from shared.events.streams import drift_stream, live_resources_stream
from shared.git import GitCache
from shared.platform import KubernetesPlatform
from tests.support.api import running_projection, served_api
from tests.support.cli import slipway
from tests.support.executor import APP_PATH, app_files
from tests.support.git_helpers import WorkRepo

OTHER_PATH = "api/prd"


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.05) as sim:
        yield sim


@pytest.fixture
def kubeconfig(sim: KubeSim, tmp_path: Path) -> Path:
    return sim.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    binary = find_kubectl()
    if binary is None:
        pytest.skip("kubectl is not installed")
    return Kubectl(binary, kubeconfig, tmp_path / "kcache")


async def _apply(
    kubeconfig: Path, work: WorkRepo, tmp: Path, head: str, apps: dict[str, str]
) -> None:
    repo = GitCache(tmp / "applycache").repository(work.url)
    await repo.fetch()
    async with KubernetesPlatform(kubeconfig) as platform:
        for app_id, path in apps.items():
            source = await load_deploy_source(repo, head, path, ".pipe.yaml")
            await platform.apply(
                source.manifests,
                application_id=app_id,
                deployment_id="d1",
                commit_hash=head,
                namespace="shop",
                auto_create_namespace=True,
            )


async def _recorded(store: EventStore, app_id: str) -> list[ApplicationLiveResourcesObserved]:
    return [
        r.event
        for r in await store.read_stream(live_resources_stream(app_id))
        if isinstance(r.event, ApplicationLiveResourcesObserved)
    ]


def _of(event: ApplicationLiveResourcesObserved, kind: str) -> list[LiveResource]:
    return [r for r in event.resources if r.kind == kind]


async def test_the_live_tree_is_recorded_on_change_and_served(
    store: EventStore,
    projector_store: EventStore,
    api_pool: asyncpg.Pool,
    kubeconfig: Path,
    kubectl: Kubectl,
    tmp_path: Path,
) -> None:
    work = WorkRepo(tmp_path / "config")
    other = {k.replace(APP_PATH, OTHER_PATH): v for k, v in app_files(config_map=True).items()}
    other = {k: (v.replace("web", "api") if isinstance(v, str) else v) for k, v in other.items()}
    head = work.commit({**app_files(config_map=True), **other})
    async with running_projection(projector_store), served_api(store, api_pool) as url:
        ids: dict[str, str] = {}
        for name, path in (("web-prd", APP_PATH), ("api-prd", OTHER_PATH)):
            added = await slipway(
                "app", "add", "--name", name, "--repo", "config", "--path", path,
                "--config-filename", ".pipe.yaml", "--platform-provider", "kubesim", "--json",
                api_url=url,
            )  # fmt: skip
            assert added.code == 0, added.err
            ids[name] = json.loads(added.out)["application_id"]
        web = ids["web-prd"]
        before = await slipway("app", "get", "web-prd", "--live", api_url=url)
        assert "live resources: not recorded yet" in before.out, before.err
        await _apply(kubeconfig, work, tmp_path, head, {web: APP_PATH, ids["api-prd"]: OTHER_PATH})
        await kubectl("rollout", "status", "deploy/web", "-n", "shop", "--timeout=60s")
        detector = DriftDetector(
            store=store,
            git=GitCache(tmp_path / "gitcache"),
            repositories={"config": work.url},
            platforms={"kubesim": KubernetesProviderConfig(kubeconfig_path=str(kubeconfig))},
        )
        await detector.check_all()
        await detector.check_all()  # nothing changed: nothing more recorded
        recorded = await _recorded(store, web)
        assert len(recorded) == 1, [
            [(r.kind, r.name, r.health, r.reason) for r in e.resources] for e in recorded
        ]
        first = recorded[0]
        [deployment] = _of(first, "Deployment")
        [replicaset] = _of(first, "ReplicaSet")
        pods = _of(first, "Pod")
        assert (deployment.name, deployment.health, deployment.reason) == (
            "web",
            "HEALTHY",
            "2/2 ready",
        )
        assert replicaset.owners == (deployment.uid,) and replicaset.name.startswith("web-")
        assert len(pods) == 2 and all(p.owners == (replicaset.uid,) for p in pods)
        assert all(p.health == "HEALTHY" for p in pods)
        assert {(r.kind, r.name) for r in first.resources} >= {
            ("Service", "web"),
            ("ConfigMap", "web-extra"),
        }
        assert not [r for r in first.resources if r.name.startswith("api")]  # the other app's
        assert first.truncated == 0

        # A pod replaced by its ReplicaSet is a change: recorded again, once.
        gone = pods[0].name
        await kubectl("-n", "shop", "delete", "pod", gone, "--wait=false")

        async def replaced() -> ApplicationLiveResourcesObserved | None:
            await detector.check_all()
            newest = (await _recorded(store, web))[-1]
            pods = _of(newest, "Pod")
            healthy = {p.name for p in pods if p.health == "HEALTHY"}
            # The deleted pod gone from the tree too, not merely unhealthy while it terminates:
            # its disappearance would be one more change, recorded by the next round.
            gone_yet = gone not in {p.name for p in pods}
            # And the controllers caught up: the Deployment's and ReplicaSet's status count
            # the new pod ready (their update after the pod's was one more change: seen in CI).
            controllers = _of(newest, "Deployment") + _of(newest, "ReplicaSet")
            settled = all(r.health == "HEALTHY" and r.reason == "2/2 ready" for r in controllers)
            return newest if len(healthy) == 2 and gone_yet and settled else None

        newest = await eventually(replaced, within=30, interval=0.1, message="pod replaced")
        count = len(await _recorded(store, web))
        assert count >= 2
        await detector.check_all()
        assert len(await _recorded(store, web)) == count

        answer = await slipway("app", "get", "web-prd", "--live", "--json", api_url=url)
        live = json.loads(answer.out)["live"]
        assert live["application_id"] == web and live["observed_at"] and live["truncated"] == 0
        assert {r["name"] for r in live["resources"]} == {r.name for r in newest.resources}
        printed = await slipway("app", "get", "web-prd", "--live", api_url=url)
        lines = printed.out.splitlines()
        at = lines.index(next(line for line in lines if line.startswith("  Deployment shop/web ")))
        assert lines[at + 1].startswith("    ReplicaSet shop/web-")
        assert lines[at + 2].startswith("      Pod shop/web-") and "HEALTHY" in lines[at + 2]
        missing = await slipway("app", "get", "nope", "--live", api_url=url)
        assert missing.code != 0 and "no application" in missing.err


async def test_a_round_reads_the_cluster_once_for_the_tree_and_the_drift_check(
    store: EventStore, sim: KubeSim, kubeconfig: Path, kubectl: Kubectl, tmp_path: Path
) -> None:
    work = WorkRepo(tmp_path / "config")
    head = work.commit(app_files(config_map=True))
    app_id = "web01"
    registered = ApplicationRegistered(
        application_id=app_id,
        name="web-prd",
        repository_id="config",
        path=APP_PATH,
        config_filename=".pipe.yaml",
        platform_provider="kubesim",
    )
    await store.append(f"application-{app_id}", new_events([registered]), expected_version=-1)
    await _apply(kubeconfig, work, tmp_path, head, {app_id: APP_PATH})
    await kubectl("rollout", "status", "deploy/web", "-n", "shop", "--timeout=60s")
    detector = DriftDetector(
        store=store,
        git=GitCache(tmp_path / "gitcache"),
        repositories={"config": work.url},
        platforms={"kubesim": KubernetesProviderConfig(kubeconfig_path=str(kubeconfig))},
    )
    await detector.check_all()
    assert len(await _recorded(store, app_id)) == 1
    sim.api.requests.clear()
    await detector.check_all()
    requests = dict(sim.api.requests)
    # Each kind listed (and discovery read) once, not once for the tree and again for
    # the drift check; the tree's own lists (Pods, ReplicaSets, Jobs in shop) once too.
    assert requests["GET /apis/apps/v1/deployments"] == 1, requests
    assert requests["GET /api/v1/namespaces/shop/pods"] == 1, requests
    twice = {path: count for path, count in requests.items() if count > 1}
    assert not twice, twice
    assert (await load(store, drift_stream(app_id), DRIFT)).state.state == "SYNCED"
