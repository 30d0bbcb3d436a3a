"""The first hour with applications, as `slipway app …` against real services (issue 19, 1-2).

The API is served with a control config (one repository, one platform
provider: kubesim), its read models kept live, and the drift service runs
in-process against kubesim, so each command meets what it would in the
sandbox: misregistrations are refused with the reason, an application
registered without `--platform-provider` is drift-checked and cascade-deleted
on the config's first provider, and a cascade delete prints only what it saw
happen.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import msgspec
import pytest

from kubesim import ForbiddenRule, KubeSim
from kubesim.testing import Kubectl, eventually, find_kubectl
from services.api.decider import (
    RegisterApplication,
    StateConflict,
    decide_claim,
    evolve_name,
)
from services.api.deps import PlanPreviewSource
from services.drift.decider import DriftState, RecordDeletion, decide
from services.drift.service import DriftDetector
from shared.config.control import KubernetesProviderConfig, platform_provider_of
from shared.deploysource import load_deploy_source
from shared.errors import ConfigError
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.eventlog.asof import fold
from shared.events.catalog import (
    ApplicationDeleted,
    ApplicationRegistered,
    ApplicationResourcesDeleted,
    ApplicationResourcesDeletionFailed,
    ApplicationSyncStateChanged,
    SyncRequested,
)
from shared.events.streams import config_claim_stream, drift_stream
from shared.git import GitCache
from shared.ids import new_id
from shared.platform import KubernetesPlatform
from tests.support import running
from tests.support.api import running_projection, served_api
from tests.support.cli import slipway, wait_projected
from tests.support.executor import APP_PATH, app_files
from tests.support.git_helpers import WorkRepo

PROVIDER = "kubesim"
# Everything the app's manifests make, and what kubesim makes from them (pods).
KINDS = "deployments,replicasets,pods,services,configmaps"


@dataclass
class World:
    url: str
    store: EventStore
    work: WorkRepo
    kubeconfig: Path
    kubectl: Kubectl
    sim: KubeSim
    drift: DriftDetector
    tmp_path: Path

    async def add(self, *args: str) -> str:
        """Register through the CLI (which must succeed); the new application's id."""
        done = await slipway("app", "add", *args, "--json", api_url=self.url)
        assert done.code == 0, done.err
        app = json.loads(done.out)
        await wait_projected(self.url, app["position"])
        return str(app["application_id"])

    async def apply(self, application_id: str) -> None:
        """Apply the app's manifests at the head, labelled for `application_id` (as the executor
        does)."""
        repo = GitCache(self.tmp_path / "applycache").repository(self.work.url)
        await repo.fetch()
        head = await repo.branch_head("main")
        source = await load_deploy_source(repo, head, APP_PATH, ".pipe.yaml")
        async with KubernetesPlatform(self.kubeconfig) as platform:
            await platform.apply(
                source.manifests,
                application_id=application_id,
                deployment_id="d1",
                commit_hash=head,
                namespace="shop",
                auto_create_namespace=True,
            )

    async def live(self) -> list[str]:
        """Every object of the app's kinds in namespace shop, as `kind/name`."""
        done = await self.kubectl("-n", "shop", "get", KINDS, "-o", "name")
        return sorted(done.stdout.split())


@pytest.fixture
async def world(
    store: EventStore, projector_store: EventStore, api_pool: asyncpg.Pool, tmp_path: Path
) -> AsyncIterator[World]:
    binary = find_kubectl()
    if binary is None:
        pytest.skip("kubectl is not installed")
    work = WorkRepo(tmp_path / "config")
    work.commit(app_files(config_map=True))
    control = PlanPreviewSource(
        repositories={"config": (work.url, "main")},
        cache=GitCache(tmp_path / "apicache"),
        platform_providers=(PROVIDER,),
    )
    async with KubeSim(ready_delay_s=0.05) as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        drift = DriftDetector(
            store=store,
            git=GitCache(tmp_path / "driftcache"),
            repositories={"config": work.url},
            platforms={PROVIDER: KubernetesProviderConfig(kubeconfig_path=str(kubeconfig))},
            interval_s=0.05,
        )
        async with (
            running_projection(projector_store),
            served_api(store, api_pool, plan_preview=control) as url,
        ):
            yield World(
                url=url,
                store=store,
                work=work,
                kubeconfig=kubeconfig,
                kubectl=Kubectl(binary, kubeconfig, tmp_path / "kcache"),
                sim=sim,
                drift=drift,
                tmp_path=tmp_path,
            )


# --- item 2: `app add` refuses what cannot work ----------------------------------------------


async def test_misregistrations_exit_1_naming_the_field_and_register_nothing(world: World) -> None:
    """Unknown repository or provider, no config at the head, a taken config file: each refused."""
    base = ("app", "add", "--config-filename", ".pipe.yaml")
    repo = await slipway(*base, "--name", "a", "--repo", "nosuch", "--path", APP_PATH,
                         api_url=world.url)  # fmt: skip
    assert repo.code == 1
    assert "[repository_id]" in repo.err and "'nosuch'" in repo.err and "known: config" in repo.err

    provider = await slipway(
        *base, "--name", "b", "--repo", "config", "--path", APP_PATH, "--platform-provider", "gke",
        api_url=world.url,
    )  # fmt: skip
    assert provider.code == 1
    assert "[platform_provider]" in provider.err and "'gke'" in provider.err
    assert "known: kubesim" in provider.err

    no_dir = await slipway(*base, "--name", "c", "--repo", "config", "--path", "web/stg",
                           api_url=world.url)  # fmt: skip
    assert no_dir.code == 1
    assert "[path]" in no_dir.err and "web/stg/.pipe.yaml" in no_dir.err
    assert "--no-verify" in no_dir.err
    no_file = await slipway(
        "app", "add", "--name", "d", "--repo", "config", "--path", APP_PATH, api_url=world.url
    )  # fmt: skip  (default app.pipecd.yaml: not there)
    assert no_file.code == 1 and "web/prd/app.pipecd.yaml" in no_file.err
    assert "the directory has '.pipe.yaml': set config_filename" in no_file.err

    first = await world.add(*base[2:], "--name", "web-prd", "--repo", "config", "--path", APP_PATH)
    twin = await slipway(*base, "--name", "web-twin", "--repo", "config", "--path", APP_PATH,
                         api_url=world.url)  # fmt: skip
    assert twin.code == 1
    assert "409 config_taken" in twin.err and first in twin.err

    listed = await slipway("app", "list", "--json", api_url=world.url)
    assert [app["name"] for app in json.loads(listed.out)] == ["web-prd"]


async def test_no_verify_registers_a_config_not_yet_merged(world: World) -> None:
    """`--no-verify` skips only the git check: the path may come later, the repository may not."""
    later = await world.add("--name", "web-stg", "--repo", "config", "--path", "web/stg",
                            "--no-verify")  # fmt: skip
    assert later
    still = await slipway(
        "app", "add", "--name", "x", "--repo", "nosuch", "--path", "x", "--no-verify",
        api_url=world.url,
    )  # fmt: skip
    assert still.code == 1 and "[repository_id]" in still.err


async def test_a_sync_that_cannot_be_triggered_answers_why_without_a_deployment_id(
    world: World,
) -> None:
    """An app whose repository left the control config: sync exits 1, says so, records nothing."""
    app_id = new_id()
    # Registered while the repository was still configured (no API would accept it now).
    await world.store.append(
        f"application-{app_id}",
        new_events(
            [
                ApplicationRegistered(
                    application_id=app_id,
                    name="old-app",
                    repository_id="retired",
                    path="old",
                    config_filename=".pipe.yaml",
                )
            ]
        ),
        expected_version=NO_STREAM,
    )
    synced = await slipway("app", "sync", app_id, api_url=world.url)
    assert synced.code == 1
    assert "409 repository_not_watched" in synced.err and "'retired'" in synced.err
    assert "deployment" not in synced.out
    recorded = [r.event for r in await world.store.read_stream(f"application-{app_id}")]
    assert not [e for e in recorded if isinstance(e, SyncRequested)]

    await world.add("--name", "web-prd", "--repo", "config", "--path", APP_PATH,
                    "--config-filename", ".pipe.yaml")  # fmt: skip
    assert (await slipway("app", "disable", "web-prd", api_url=world.url)).code == 0
    disabled = await slipway("app", "sync", "web-prd", api_url=world.url)
    assert disabled.code == 1
    assert "409 application_disabled" in disabled.err and "enable it" in disabled.err
    assert "deployment" not in disabled.out


# --- item 1: one platform-provider rule; cascade delete reports what it did ------------------


async def test_an_app_without_provider_is_drift_checked_and_cascade_deleted(world: World) -> None:
    """No `--platform-provider`: drift judges it on kubesim, `delete --cascade` empties kubesim."""
    app_id = await world.add("--name", "web-prd", "--repo", "config", "--path", APP_PATH,
                             "--config-filename", ".pipe.yaml")  # fmt: skip
    await world.apply(app_id)
    await eventually(lambda: _has_pods(world), message="the app's pods running")

    await world.drift.check_all()
    states = [
        r.event
        for r in await world.store.read_stream(drift_stream(app_id))
        if isinstance(r.event, ApplicationSyncStateChanged)
    ]
    assert [s.state for s in states] == ["SYNCED"]

    async with running(world.drift.run):
        deleted = await slipway("app", "delete", "web-prd", "--cascade", api_url=world.url)
    assert deleted.code == 0, deleted.err
    assert deleted.out.startswith("deleted web-prd and its 3 live resources: ")
    assert "Deployment shop/web" in deleted.out and "Service shop/web" in deleted.out
    # Pods go with their Deployment (background propagation): wait on the cluster.
    await eventually(lambda: _emptied(world), message="kubesim emptied of the app's objects")


async def _has_pods(world: World) -> bool:
    return any(name.startswith("pod/") for name in await world.live())


async def _emptied(world: World) -> bool:
    return not await world.live()


async def test_a_refused_cascade_delete_exits_1_saying_what_is_left(world: World) -> None:
    """kubesim forbids deleting Deployments: exit 1 naming it; lifted, the next round deletes."""
    app_id = await world.add("--name", "web-prd", "--repo", "config", "--path", APP_PATH,
                             "--config-filename", ".pipe.yaml")  # fmt: skip
    await world.apply(app_id)
    world.sim.forbidden.append(
        ForbiddenRule(namespace="shop", verbs=("delete",), resources=("deployments",))
    )
    async with running(world.drift.run):
        refused = await slipway("app", "delete", "web-prd", "--cascade", api_url=world.url)
    assert refused.code == 1
    assert "deleted web-prd" not in refused.out
    assert "not all its live resources" in refused.err and "forbidden" in refused.err
    assert "still live: Deployment shop/web" in refused.err
    assert "deployment.apps/web" in await world.live()

    world.sim.forbidden.clear()
    async with running(world.drift.run):
        done = await eventually(
            lambda: _outcome(world.store, app_id), message="the retried cascade delete"
        )
    assert done.resources == ("apps/Deployment/shop/web",)


async def _outcome(store: EventStore, app_id: str) -> ApplicationResourcesDeleted | None:
    for recorded in await store.read_stream(drift_stream(app_id)):
        if isinstance(recorded.event, ApplicationResourcesDeleted):
            return recorded.event
    return None


async def test_a_cascade_delete_nobody_confirms_exits_4(world: World) -> None:
    """Without a drift service at work the CLI cannot know: it says so and exits 4, not 0."""
    await world.add("--name", "web-prd", "--repo", "config", "--path", APP_PATH,
                    "--config-filename", ".pipe.yaml")  # fmt: skip
    waited = await slipway(
        "app", "delete", "web-prd", "--cascade", "--timeout", "0.5", api_url=world.url
    )
    assert waited.code == 4
    assert waited.out == ""
    assert "nothing confirmed its live resources were deleted" in waited.err


# --- the rules themselves (pure) --------------------------------------------------------------


def test_platform_provider_of_falls_back_to_the_first_and_names_the_known_ones() -> None:
    """The named provider, else the first one; an unknown or absent one is a ConfigError."""
    providers = {"prd": 1, "stg": 2}
    assert platform_provider_of("stg", providers) == ("stg", 2)
    assert platform_provider_of("", providers) == ("prd", 1)
    with pytest.raises(ConfigError, match=r"'gke' is not in the control config \(known: prd, stg"):
        platform_provider_of("gke", providers)
    with pytest.raises(ConfigError, match="has none"):
        platform_provider_of("", {})


def test_decide_deletion_records_each_new_outcome_once() -> None:
    """Success records what went; a failure is recorded once until something changes."""
    state = DriftState()
    (done,) = decide(state, RecordDeletion(application_id="a", deleted=["/Service/shop/web"]))
    assert done == ApplicationResourcesDeleted(application_id="a", resources=("/Service/shop/web",))
    failures = [("apps/Deployment/shop/web", "forbidden"), ("/Service/shop/web", "forbidden")]
    refused = RecordDeletion(application_id="a", failures=failures)
    (failed,) = decide(state, refused)
    assert isinstance(failed, ApplicationResourcesDeletionFailed)
    assert failed.reason == "forbidden (and 1 more refused)"
    assert failed.remaining == ("apps/Deployment/shop/web", "/Service/shop/web")
    again = DriftState(deletion_failure=failed.reason)
    assert decide(again, refused) == []
    (changed,) = decide(again, RecordDeletion(application_id="a", error="no provider"))
    assert isinstance(changed, ApplicationResourcesDeletionFailed)


async def test_a_cascade_delete_of_an_app_never_deployed_says_there_was_nothing(
    world: World,
) -> None:
    """Nothing live: the drift service confirms it, and the CLI says so rather than a count."""
    await world.add("--name", "web-prd", "--repo", "config", "--path", APP_PATH,
                    "--config-filename", ".pipe.yaml")  # fmt: skip
    async with running(world.drift.run):
        done = await slipway("app", "delete", "web-prd", "--cascade", api_url=world.url)
    assert (done.code, done.out) == (0, "deleted web-prd (it had no live resources to delete)\n")


def test_a_config_file_is_claimed_once_and_freed_by_its_holders_deletion() -> None:
    """`decide_claim` refuses a second claim naming the holder; the holder's deletion frees it."""
    first = RegisterApplication(application_id="a1", name="one", repository_id="config", path="p")
    second = msgspec.structs.replace(first, application_id="a2", name="two")
    (claimed,) = decide_claim(None, first)
    holder = fold(evolve_name, None, [claimed])
    with pytest.raises(StateConflict, match="already deployed by application a1") as caught:
        decide_claim(holder, second)
    assert caught.value.code == "config_taken"
    freed = fold(evolve_name, None, [claimed, ApplicationDeleted(application_id="a1")])
    assert decide_claim(freed, second)
    assert config_claim_stream("config", "p", "app.pipecd.yaml") != config_claim_stream(
        "config", "p", ".pipe.yaml"
    )
