"""Issue 19, items 3 and 6, as a new user meets them: the sandbox's services, the CLI and the API.

An application's sync state moves UNKNOWN → DEPLOYING → SYNCED → (a `kubectl`
edit) OUT_OF_SYNC, visible in `app get` (with the drift diff in full), in
`app list` (a column and `--sync-state`) and in the API; replaying the read
model gives the same rows. Labels from `.pipe.yaml` are merged with the
registration's (the config's winning), filter listings, and follow a commit
that changes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubesim.testing import Kubectl, eventually, find_kubectl
from services.api.routes import API_PREFIX
from shared.db import create_pool
from shared.eventlog import ANY, EventStore, new_events
from shared.events import vocabulary
from shared.events.catalog import (
    ApplicationConfigObserved,
    ApplicationRegistered,
    DeploymentTriggered,
    default_registry,
)
from shared.events.streams import application_config_stream
from shared.projections import ProjectionRunner, replay
from shared.projections.applications import ApplicationsProjection
from shared.testing import wait_until
from slipway_sandbox.control import PLATFORM_PROVIDER, REPOSITORY_ID
from slipway_sandbox.demo_repo import app_path, image
from slipway_sandbox.sandbox import Sandbox, SandboxOptions
from slipway_sandbox.seed_layout import DEMO_DEV_CONFIG
from tests.support import Backends
from tests.support.git_helpers import WorkRepo
from tests.support.gitwatcher import events_of, make_gitwatcher, register, watched
from tests.support.notifier import notifier_running, receivers, write_config
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT
APP = "account-dev"
# Slow enough that DEPLOYING is seen, quick enough for a test.
POD_READY_S = 4


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def _cli(sandbox: Sandbox, *args: str) -> Done:
    """`slipway ARGS` as a user runs it against the sandbox's API."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slipway_cli",
        *args,
        cwd=REPO,
        env=os.environ
        | {"SLIPWAY_API_URL": sandbox.stack.api_url, "SLIPWAY_API_KEY": sandbox.stack.api_key},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


async def _api(sandbox: Sandbox, path: str, **params: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {sandbox.stack.api_key}"}
    async with (
        aiohttp.ClientSession(base_url=sandbox.stack.api_url, headers=headers) as http,
        http.get(f"{API_PREFIX}{path}", params=params) as reply,
    ):
        return reply.status, await reply.json()


async def _app(sandbox: Sandbox) -> dict[str, Any]:
    status, body = await _api(sandbox, f"/applications/{APP}")
    assert status == 200, body
    app: dict[str, Any] = body
    return app


async def _in_state(sandbox: Sandbox, state: str, within: float = 90.0) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        app = await _app(sandbox)
        return app if app["sync_state"] == state else None

    return await eventually(probe, within=within, interval=0.2, message=f"{APP} {state}")


def _slow_pods(sandbox: Sandbox) -> None:
    assert sandbox.stack.kubesim is not None
    request = urllib.request.Request(
        f"{sandbox.stack.kubesim.url}/kubesim/images",
        data=json.dumps({"images": [{"image": "*", "ready_delay_s": POD_READY_S}]}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def _names(listing: Done) -> list[str]:
    """The NAME column of an `app list` table (the header skipped)."""
    return [line.split()[0] for line in listing.out.splitlines()[1:] if line.strip()]


def _row(listing: Done, name: str) -> dict[str, str]:
    lines = listing.out.splitlines()
    header = lines[0].split()
    row = next(line.split() for line in lines[1:] if line.split()[0] == name)
    return dict(zip(header, row, strict=True))


async def test_sync_state_and_config_labels_where_users_look(
    tmp_path: Path, sandbox_dir: Path
) -> None:
    """UNKNOWN → DEPLOYING → SYNCED → OUT_OF_SYNC in `app get`, `app list` and the API; labels
    from the config merged, filtered on, followed on a commit; a replay gives the same rows."""
    kubectl_binary = find_kubectl()
    if kubectl_binary is None:
        pytest.skip("kubectl is not installed")
    said: list[str] = []
    options = SandboxOptions(
        data_dir=sandbox_dir,
        say=said.append,
        service_settings={"SLIPWAY_DRIFT_INTERVAL_S": "1"},
    )
    await _play(options, kubectl_binary, tmp_path)


async def _play(options: SandboxOptions, kubectl_binary: str, tmp_path: Path) -> None:
    async with Sandbox(options) as sandbox:
        assert sandbox.stack.kubesim is not None
        kubectl = Kubectl(kubectl_binary, sandbox.stack.kubesim.kubeconfig, tmp_path / "kcache")

        # Registered as the README shows; `env` is given here and in the config.
        added = await _cli(
            sandbox,
            "app", "add", "--name", APP, "--repo", REPOSITORY_ID, "--path", app_path("dev"),
            "--config-filename", ".pipe.yaml", "--platform-provider", PLATFORM_PROVIDER,
            "--label", "env=registered", "--label", "team=payments", "--json",
        )  # fmt: skip
        assert added.code == 0, added.err
        assert added.json()["sync_state"] == "UNKNOWN"
        assert added.json()["sync"]["last_deployment"] is None

        # Item 6: the config's `spec.labels` (env: dev) win over the registration's.
        async def labelled() -> dict[str, Any] | None:
            # The read model is eventually consistent: until the projector has the
            # registration, the application is not found yet (a 404 to wait through).
            status, app = await _api(sandbox, f"/applications/{APP}")
            return app if status == 200 and app["config_labels"] else None

        app = await eventually(labelled, within=60, interval=0.2, message="config labels")
        assert app["labels"] == {"env": "dev", "team": "payments"}
        assert app["config_labels"] == {"env": "dev"}
        assert app["registered_labels"] == {"env": "registered", "team": "payments"}
        by_config = await _cli(sandbox, "app", "list", "--label", "env=dev")
        assert (by_config.code, _names(by_config)) == (0, [APP])
        assert _row(by_config, APP)["LABELS"] == "env=dev,team=payments"
        overridden = await _cli(sandbox, "app", "list", "--label", "env=registered")
        assert (overridden.code, overridden.out.strip()) == (0, "no applications")

        # Item 3: a sync is DEPLOYING until it ends, then SYNCED at the head it deployed.
        _slow_pods(sandbox)
        synced = await _cli(sandbox, "app", "sync", APP, "--json")
        assert synced.code == 0, synced.err
        deployment_id = synced.json()["deployment_id"]
        deploying = await _in_state(sandbox, "DEPLOYING")
        assert deploying["sync"]["last_deployment"]["deployment_id"] == deployment_id
        assert deployment_id in deploying["sync"]["reason"]
        app = await _in_state(sandbox, "SYNCED")
        head = await asyncio.to_thread(sandbox.repo.head)
        assert app["sync"]["running_commit"] == head
        last = app["sync"]["last_deployment"]
        assert (last["deployment_id"], last["status"], last["commit_hash"]) == (
            deployment_id,
            "SUCCESS",
            head,
        )
        shown = await _cli(sandbox, "app", "get", APP)
        assert shown.code == 0, shown.err
        assert "sync:              SYNCED since " in shown.out
        assert f"running commit:    {head}" in shown.out
        assert f"last deployment:   {deployment_id} SUCCESS at " in shown.out
        listed = await _cli(sandbox, "app", "list")
        assert _row(listed, APP)["SYNC"] == "SYNCED"
        only_synced = await _cli(sandbox, "app", "list", "--sync-state", "synced")
        assert _names(only_synced) == [APP]
        none_drifted = await _cli(sandbox, "app", "list", "--sync-state", "OUT_OF_SYNC")
        assert none_drifted.out.strip() == "no applications"

        # Someone edits the live Deployment: drift detection makes it OUT_OF_SYNC.
        await kubectl("set", "image", "-n", "dev", "deployment/account", "account=hacked:v666")
        app = await _in_state(sandbox, "OUT_OF_SYNC", within=60)
        drift = app["sync"]["drift"]
        assert drift["state"] == "OUT_OF_SYNC" and drift["commit_hash"] == head
        assert "hacked:v666" in drift["diff"] and image("v1") in drift["diff"]
        assert app["sync"]["running_commit"] == head  # what was deployed has not changed
        shown = await _cli(sandbox, "app", "get", APP)
        assert "sync:              OUT_OF_SYNC since " in shown.out
        assert f"drift:             OUT_OF_SYNC at {drift['at']}: {drift['summary']}" in shown.out
        # The diff in full, every line, not cut short.
        printed = shown.out.split(f"drift diff (at commit {head[:12]}):\n", 1)[1]
        assert printed.splitlines() == [f"  {line}" for line in drift["diff"].splitlines()]
        listed = await _cli(sandbox, "app", "list")
        assert _row(listed, APP)["SYNC"] == "OUT_OF_SYNC"
        drifted = await _cli(sandbox, "app", "list", "--sync-state", "OUT_OF_SYNC,DEPLOYING")
        assert _names(drifted) == [APP]
        status, body = await _api(sandbox, "/applications", sync_state="OUT_OF_SYNC")
        assert status == 200 and [a["name"] for a in body["items"]] == [APP]
        status, body = await _api(sandbox, "/applications", sync_state="SYNCED")
        assert status == 200 and body["items"] == []
        status, body = await _api(sandbox, "/applications", sync_state="DRIFTING")
        assert (status, body["error"]["field"]) == (400, "sync_state")
        wrong = await _cli(sandbox, "app", "list", "--sync-state", "DRIFTING")
        assert wrong.code == 2 and "OUT_OF_SYNC" in wrong.err

        # Replaying the read model from position 0 gives the same rows.
        pool = await create_pool(sandbox.stack.projector_database_url, schema=sandbox.stack.schema)
        try:
            query = "SELECT * FROM applications ORDER BY application_id"
            before = [dict(row) for row in await pool.fetch(query)]
            await replay(EventStore(pool, default_registry()), ApplicationsProjection())
            after = [dict(row) for row in await pool.fetch(query)]
            assert len(after) == len(before)
            for old, new in zip(before, after, strict=True):
                assert {k: (v, new[k]) for k, v in old.items() if new[k] != v} == {}
        finally:
            await pool.close()

        # A commit changing the config's labels: they follow (and it deploys, back to SYNCED).
        config = DEMO_DEV_CONFIG.format(name=APP, env="dev").replace(
            "    env: dev\n", "    env: dev\n    tier: web\n"
        )
        await asyncio.to_thread(
            sandbox.repo.commit, {f"{app_path('dev')}/.pipe.yaml": config}, "label tier"
        )

        async def relabelled() -> dict[str, Any] | None:
            app = await _app(sandbox)
            return app if app["config_labels"].get("tier") == "web" else None

        app = await eventually(relabelled, within=60, interval=0.2, message="new config labels")
        assert app["labels"] == {"env": "dev", "team": "payments", "tier": "web"}
        by_tier = await _cli(sandbox, "app", "list", "--label", "tier=web")
        assert _names(by_tier) == [APP]
        await _in_state(sandbox, "SYNCED")


_WEB_CONFIG = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: web
  labels:
    env: {env}
    "bad key": x
    nul: "a\\0b"
    long: {long}
"""


async def test_config_labels_follow_commits_within_the_label_rule(
    store: EventStore, projector_store: EventStore, tmp_path: Path
) -> None:
    """Config labels are recorded once per change and merged over the registration's; ones that
    break the label rule (a space, a NUL, too long) are left out of the log and the read model."""
    work = WorkRepo(tmp_path / "config")
    work.commit({"web/prd/.pipe.yaml": _WEB_CONFIG.format(env="prd", long="x" * 64)}, "web")
    app = ApplicationRegistered(
        application_id="web-prd",
        name="web-prd",
        repository_id="config",
        path="web/prd",
        config_filename=".pipe.yaml",
        labels=(("env", "registered"), ("team", "web")),
    )
    await register(store, projector_store, app)
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    projection = ProjectionRunner(projector_store, ApplicationsProjection())

    async def labels() -> Any:
        await projection.run_until_caught_up()
        row = await store.pool.fetchrow(
            "SELECT labels, config_labels FROM applications WHERE application_id = 'web-prd'"
        )
        return json.loads(row["labels"]), json.loads(row["config_labels"])

    await gitwatcher.poll_all()
    await gitwatcher.poll_all()  # nothing new: nothing recorded again
    observed = await events_of(store, ApplicationConfigObserved)
    assert [(o.commit_hash, o.labels) for o in observed] == [(work.head(), (("env", "prd"),))]
    assert await labels() == ({"env": "prd", "team": "web"}, {"env": "prd"})

    work.commit({"web/prd/.pipe.yaml": _WEB_CONFIG.format(env="stg", long="y")}, "relabel")
    await gitwatcher.poll_all()
    observed = await events_of(store, ApplicationConfigObserved)
    assert [o.labels for o in observed] == [
        (("env", "prd"),),
        (("env", "stg"), ("long", "y")),
    ]
    assert await labels() == (
        {"env": "stg", "long": "y", "team": "web"},
        {"env": "stg", "long": "y"},
    )


async def test_notification_routes_match_labels_from_the_config(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    """A route on `env: prd` reaches an app registered as `env: dev` whose config says `prd`
    (recorded before the deployment), and the message shows the merged labels."""
    async with receivers() as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[
                {
                    "name": "prd",
                    "receiver": "slack",
                    "events": ["DEPLOYMENT_TRIGGERED"],
                    "labels": {"env": "prd"},
                }
            ],
        )
        registered = ApplicationRegistered(
            application_id="web1", name="web", repository_id="config", path="web",
            labels=(("env", "dev"), ("team", "web")),
        )  # fmt: skip
        await store.append("application-web1", new_events([registered]), expected_version=ANY)
        observed = ApplicationConfigObserved(
            repository_id="config", application_id="web1", commit_hash="c1",
            labels=(("env", "prd"),),
        )  # fmt: skip
        await store.append(
            application_config_stream("web1"), new_events([observed]), expected_version=ANY
        )
        async with notifier_running(control, backends):
            trigger = DeploymentTriggered(
                deployment_id="d1",
                application_id="web1",
                trigger=vocabulary.Trigger("on_commit"),
                commit_hash="c1",
            )
            await store.append("deployment-d1", new_events([trigger]), expected_version=ANY)
            await wait_until(
                lambda: len(server.at("/slack")) >= 1, within_s=30.0, what="a Slack message"
            )
        message = json.dumps(server.at("/slack")[0].body)
        assert "env: prd" in message and "team: web" in message
