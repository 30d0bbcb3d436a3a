"""The drift service on kubesim: SYNCED, kubectl edits → OUT_OF_SYNC, ignores, cascade delete."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from kubesim import KubeSim
from kubesim.rules import ImageRule
from kubesim.testing import Kubectl, eventually, find_kubectl
from services.drift.service import DriftDetector
from services.notifier.notify.catalog import NotificationType, notification_type_of
from shared.config.control import KubernetesProviderConfig
from shared.deploysource import load_deploy_source
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.catalog import (
    ApplicationDeleted,
    ApplicationHealthChanged,
    ApplicationRegistered,
    ApplicationResourcesDeleted,
    ApplicationSyncStateChanged,
    DeploymentCompleted,
    DeploymentTriggered,
)
from shared.events.ids import drift_deployment_id
from shared.events.streams import drift_stream
from shared.git import GitCache
from shared.platform import KubernetesPlatform
from tests.support import running
from tests.support.api import running_projection, served_api
from tests.support.cli import slipway, wait_projected
from tests.support.executor import APP, APP_PATH, app_files
from tests.support.git_helpers import WorkRepo

OTHER = "app02api"
OTHER_PATH = "api/prd"
IMAGE_FIELD = "apps/v1:Deployment:shop:web#spec.template.spec.containers.0.image"


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.05) as sim:
        yield sim


@pytest.fixture
def work(tmp_path: Path) -> WorkRepo:
    return WorkRepo(tmp_path / "config")


@pytest.fixture
def kubeconfig(sim: KubeSim, tmp_path: Path) -> Path:
    return sim.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    binary = find_kubectl()
    if binary is None:
        pytest.skip("kubectl is not installed")
    return Kubectl(binary, kubeconfig, tmp_path / "kcache")


def _detector(store: EventStore, work: WorkRepo, kubeconfig: Path, tmp_path: Path) -> DriftDetector:
    return DriftDetector(
        store=store,
        git=GitCache(tmp_path / "gitcache"),
        repositories={"config": work.url},
        platforms={"kubesim": KubernetesProviderConfig(kubeconfig_path=str(kubeconfig))},
    )


def _commit_both(work: WorkRepo, extra: str = "") -> str:
    """Commit APP (with `extra` config) at APP_PATH and a twin named `api` at OTHER_PATH."""
    other = {k.replace(APP_PATH, OTHER_PATH): v for k, v in app_files(config_map=True).items()}
    other = {k: (v.replace("web", "api") if isinstance(v, str) else v) for k, v in other.items()}
    return work.commit({**app_files(config_map=True, extra=extra), **other})


async def _apply(
    work: WorkRepo, kubeconfig: Path, tmp_path: Path, head: str, apps: dict[str, str]
) -> None:
    """Apply the manifests at `head` of each application id → path, as the executor would."""
    repo = GitCache(tmp_path / "applycache").repository(work.url)
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


async def _deploy(
    store: EventStore, work: WorkRepo, kubeconfig: Path, tmp_path: Path, *, extra: str = ""
) -> str:
    """Commit both apps, register them and apply their manifests."""
    head = _commit_both(work, extra)
    for app_id, path in ((APP, APP_PATH), (OTHER, OTHER_PATH)):
        await store.append(
            f"application-{app_id}",
            new_events(
                [
                    ApplicationRegistered(
                        application_id=app_id,
                        name=app_id,
                        repository_id="config",
                        path=path,
                        config_filename=".pipe.yaml",
                        platform_provider="kubesim",
                    )
                ]
            ),
            expected_version=NO_STREAM,
        )
    await _apply(work, kubeconfig, tmp_path, head, {APP: APP_PATH, OTHER: OTHER_PATH})
    return head


async def _states(store: EventStore, app_id: str) -> list[ApplicationSyncStateChanged]:
    return [
        r.event
        for r in await store.read_stream(drift_stream(app_id))
        if isinstance(r.event, ApplicationSyncStateChanged)
    ]


async def test_kubectl_edit_is_detected_once_and_triggers_a_sync(
    store: EventStore, work: WorkRepo, kubeconfig: Path, kubectl: Kubectl, tmp_path: Path
) -> None:
    """Applied head is SYNCED; `kubectl set image` makes it OUT_OF_SYNC, recorded once."""
    extra = "  trigger:\n    onOutOfSync:\n      disabled: false\n"
    head = await _deploy(store, work, kubeconfig, tmp_path, extra=extra)
    detector = _detector(store, work, kubeconfig, tmp_path)
    await detector.check_all()
    await detector.check_all()
    assert [s.state for s in await _states(store, APP)] == ["SYNCED"]
    await kubectl("-n", "shop", "set", "image", "deployment/web", "web=ghcr.io/acme/web:hacked")
    await detector.check_all()
    await detector.check_all()
    states = await _states(store, APP)
    assert [s.state for s in states] == ["SYNCED", "OUT_OF_SYNC"]
    assert "hacked" in states[-1].summary and states[-1].commit_hash == head
    triggered = await store.read_stream(f"deployment-{drift_deployment_id(APP, head)}")
    assert isinstance(triggered[0].event, DeploymentTriggered)
    assert triggered[0].event.trigger == "on_out_of_sync"
    assert [s.state for s in await _states(store, OTHER)] == ["SYNCED"]


async def _health(store: EventStore, app_id: str) -> list[ApplicationHealthChanged]:
    return [
        r.event
        for r in await store.read_stream(drift_stream(app_id))
        if isinstance(r.event, ApplicationHealthChanged)
    ]


async def test_live_workload_health_is_recorded_as_it_changes(
    store: EventStore,
    work: WorkRepo,
    kubeconfig: Path,
    kubectl: Kubectl,
    sim: KubeSim,
    tmp_path: Path,
) -> None:
    """Ready pods are healthy; an image whose pods never get ready makes the app unhealthy;
    rolling back makes it healthy again, which is the APPLICATION_HEALTHY notification."""
    await _deploy(store, work, kubeconfig, tmp_path)
    # The first look must find the pods ready: on a loaded machine they may still be starting.
    await kubectl("rollout", "status", "deploy/web", "-n", "shop", "--timeout=60s")
    detector = _detector(store, work, kubeconfig, tmp_path)

    async def recorded(count: int) -> list[ApplicationHealthChanged] | None:
        await detector.check_all()
        found = await _health(store, APP)
        return found if len(found) >= count else None

    [first] = await eventually(lambda: recorded(1), within=20, interval=0.1, message="health")
    assert (first.healthy, first.previous) == (True, "")
    assert notification_type_of(first) is None  # a first look finding it healthy is no news
    sim.rules.replace([ImageRule(image="*:unready", never_ready=True)])
    await kubectl("-n", "shop", "set", "image", "deployment/web", "web=ghcr.io/acme/web:unready")
    found = await eventually(lambda: recorded(2), within=20, interval=0.1, message="unhealthy")
    assert (found[1].healthy, found[1].previous) == (False, "HEALTHY")
    assert "Deployment shop/web" in found[1].summary
    await kubectl("-n", "shop", "rollout", "undo", "deployment/web")
    found = await eventually(lambda: recorded(3), within=20, interval=0.1, message="healthy")
    assert (found[2].healthy, found[2].previous) == (True, "UNHEALTHY")
    assert notification_type_of(found[2]) is NotificationType.APPLICATION_HEALTHY


async def _deployment(store: EventStore, deployment_id: str, *, completed: bool) -> None:
    """Record a deployment of APP: triggered, and completed when asked."""
    events: list[DeploymentTriggered | DeploymentCompleted] = [
        DeploymentTriggered(
            deployment_id=deployment_id,
            application_id=APP,
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash="c",
        )
    ]
    if completed:
        events.append(
            DeploymentCompleted(
                deployment_id=deployment_id,
                application_id=APP,
                status=vocabulary.DeploymentStatus("SUCCESS"),
            )
        )
    stream = f"deployment-{deployment_id}"
    version = await store.stream_version(stream)
    await store.append(stream, new_events(events), expected_version=version)


async def test_drift_is_not_judged_while_a_deployment_is_active(
    store: EventStore, work: WorkRepo, kubeconfig: Path, kubectl: Kubectl, tmp_path: Path
) -> None:
    """A half-done rollout is not drift: the app is checked again once its deployment completes."""
    await _deploy(store, work, kubeconfig, tmp_path)
    detector = _detector(store, work, kubeconfig, tmp_path)
    await detector.check_all()
    await _deployment(store, "d-active", completed=False)
    await kubectl("-n", "shop", "set", "image", "deployment/web", "web=ghcr.io/acme/web:moving")
    await detector.check_all()
    assert [s.state for s in await _states(store, APP)] == ["SYNCED"]
    await _deployment(store, "d-active", completed=True)
    await detector.check_all()
    assert [s.state for s in await _states(store, APP)] == ["SYNCED", "OUT_OF_SYNC"]


async def test_out_of_sync_trigger_waits_for_min_window_after_a_deployment(
    store: EventStore, work: WorkRepo, kubeconfig: Path, kubectl: Kubectl, tmp_path: Path
) -> None:
    """`onOutOfSync.minWindow` defers the trigger after a deployment; it fires on a later round."""
    extra = "  trigger:\n    onOutOfSync:\n      disabled: false\n      minWindow: 2s\n"
    head = await _deploy(store, work, kubeconfig, tmp_path, extra=extra)
    detector = _detector(store, work, kubeconfig, tmp_path)
    await _deployment(store, "d-just-done", completed=True)
    [_, completed] = await store.read_stream("deployment-d-just-done")
    # Drift's clock, not the wall clock: 1.9 s after the deployment, then 2 s after it.
    detector.clock = lambda: completed.recorded_at + timedelta(seconds=1.9)
    await kubectl("-n", "shop", "set", "image", "deployment/web", "web=ghcr.io/acme/web:hacked")
    await detector.check_all()
    assert [s.state for s in await _states(store, APP)] == ["OUT_OF_SYNC"]
    trigger_stream = f"deployment-{drift_deployment_id(APP, head)}"
    assert await store.stream_version(trigger_stream) == NO_STREAM
    detector.clock = lambda: completed.recorded_at + timedelta(seconds=2)
    await detector.check_all()
    await detector.check_all()
    triggered = await store.read_stream(trigger_stream)
    assert [r.event.trigger for r in triggered if isinstance(r.event, DeploymentTriggered)] == [
        "on_out_of_sync"
    ]


async def test_ignore_fields_and_annotation_suppress_drift(
    store: EventStore, work: WorkRepo, kubeconfig: Path, kubectl: Kubectl, tmp_path: Path
) -> None:
    """An ignoreFields image entry hides an image edit; the ignore annotation hides a patch."""
    extra = f"  driftDetection:\n    ignoreFields: ['{IMAGE_FIELD}']\n"
    await _deploy(store, work, kubeconfig, tmp_path, extra=extra)
    detector = _detector(store, work, kubeconfig, tmp_path)
    await kubectl("-n", "shop", "set", "image", "deployment/web", "web=ghcr.io/acme/web:hacked")
    await kubectl(
        "-n", "shop", "annotate", "configmap/web-extra", "pipecd.dev/ignore-drift-detection=true"
    )
    await kubectl("-n", "shop", "patch", "configmap/web-extra", "-p", '{"data":{"a":"2"}}')
    await detector.check_all()
    assert [(s.state, s.diff) for s in await _states(store, APP)] == [("SYNCED", "")]
    await kubectl("-n", "shop", "patch", "deployment/web", "-p", '{"spec":{"replicas":5}}')
    await detector.check_all()
    assert "replicas web: 5 → 2" in (await _states(store, APP))[-1].summary


async def test_cascade_delete_removes_only_that_apps_resources(
    store: EventStore, work: WorkRepo, kubeconfig: Path, kubectl: Kubectl, tmp_path: Path
) -> None:
    """cascade=true deletes the app's Deployment/Service/ConfigMap; without, they stay."""
    await _deploy(store, work, kubeconfig, tmp_path)
    for app_id, cascade in ((APP, True), (OTHER, False)):
        await store.append(
            f"application-{app_id}",
            new_events([ApplicationDeleted(application_id=app_id, cascade=cascade)]),
            expected_version=0,
        )
    await _detector(store, work, kubeconfig, tmp_path).check_all()
    names = (await kubectl("-n", "shop", "get", "deploy,svc,cm", "-o", "name")).stdout.split()
    assert not [n for n in names if n.endswith(("/web", "/web-extra"))]
    assert {"deployment.apps/api", "service/api", "configmap/api-extra"} <= set(names)
    recorded = [r.event for r in await store.read_stream(drift_stream(APP))]
    assert isinstance(recorded[-1], ApplicationResourcesDeleted)
    assert len(recorded[-1].resources) == 3
    assert await store.read_stream(drift_stream(OTHER)) == []


async def test_cli_delete_with_and_without_cascade(
    store: EventStore,
    projector_store: EventStore,
    api_pool: asyncpg.Pool,
    work: WorkRepo,
    kubeconfig: Path,
    kubectl: Kubectl,
    tmp_path: Path,
) -> None:
    """`app delete --cascade` removes its resources, without it they run; both leave the list."""
    head = _commit_both(work)
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
        await _apply(
            work, kubeconfig, tmp_path, head, {ids["web-prd"]: APP_PATH, ids["api-prd"]: OTHER_PATH}
        )
        detector = _detector(store, work, kubeconfig, tmp_path)
        detector.interval_s = 0.05
        # The CLI waits for the drift service's verdict before it says the resources went.
        async with running(detector.run):
            cascaded = await slipway("app", "delete", "web-prd", "--cascade", api_url=url)
        assert (cascaded.code, cascaded.out) == (
            0,
            "deleted web-prd and its 3 live resources: ConfigMap shop/web-extra, "
            "Service shop/web, Deployment shop/web\n",
        )
        kept = await slipway("app", "delete", "api-prd", "--json", api_url=url)
        assert kept.code == 0, kept.err
        await detector.check_all()
        await wait_projected(url, json.loads(kept.out)["position"])
        listed = await slipway("app", "list", api_url=url)
        assert listed.out == "no applications\n"
        again = await slipway("app", "delete", "web-prd", api_url=url)
        assert again.code == 1 and "no application" in again.err
        reused = await slipway(
            "app", "add", "--name", "web-prd", "--repo", "config", "--path", APP_PATH,
            api_url=url,
        )  # fmt: skip
        assert reused.code == 0, reused.err  # the name was released
    names = (await kubectl("-n", "shop", "get", "deploy,svc,cm", "-o", "name")).stdout.split()
    assert sorted(names) == ["configmap/api-extra", "deployment.apps/api", "service/api"]
