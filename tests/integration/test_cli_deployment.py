"""The CLI over a real API: `app sync --wait-status` exit codes, deployments, events, API keys.

The deployment events are appended here, as the gitwatcher, planner and
executor would append them (a sync's deployment id is derived from its
request, so the test "triggers" exactly the deployment the CLI waits for).
The whole stack — gitwatcher, planner, executor on kubesim — running a sync
to SUCCESS and to FAILURE is the end-to-end test of the demo.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from shared.eventlog import EventStore
from shared.events import vocabulary
from shared.events.catalog import (
    DeploymentCancelRequested,
    DeploymentCompleted,
    DeploymentTriggered,
    StageSkipRequested,
)
from shared.events.ids import on_command_deployment_id
from shared.ids import new_id
from shared.stagelog import Severity, StageLogs
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support.api import api_key_for, running_projection, served_api
from tests.support.cli import REPO, Cli, Done, started
from tests.support.deployment_events import write


@pytest.fixture
async def cli(
    store: EventStore,
    projector_store: EventStore,
    api_pool: asyncpg.Pool,
    nc: NatsClient,
    subjects: Subjects,
) -> AsyncIterator[Cli]:
    async with (
        running_projection(projector_store),
        served_api(store, api_pool, nc=nc, subjects=subjects) as url,
    ):
        yield Cli(url, api_key_for(url))


async def sync_and_finish(cli: Cli, store: EventStore, ending: str, *wait: str) -> Done:
    """`app sync web --wait-status …` while the deployment it caused runs and ends `ending`."""
    app_id = json.loads((await cli("app", "get", "web", "--json")).out)["application_id"]
    before = len(await store.read_stream(f"application-{app_id}"))
    process = await cli.start("app", "sync", "web", "--timeout", "30", *wait)

    async def requested() -> str | None:
        # The sync's request is the event its command appends to the application's stream.
        history = await store.read_stream(f"application-{app_id}")
        return getattr(history[-1].event, "request_id", None) if len(history) > before else None

    request_id = await wait_until(requested, within_s=30, what="the sync request")
    assert request_id is not None
    deployment_id = on_command_deployment_id(app_id, request_id)
    # Not triggered yet: the CLI polls a 404 first and says so.
    await cli.read_until(process, "waiting for the deployment to be triggered")
    await started(store, deployment_id, app_id)
    await write(
        store,
        deployment_id,
        DeploymentCompleted(
            deployment_id=deployment_id,
            application_id=app_id,
            status=vocabulary.DeploymentStatus(ending),
            reason="because",
        ),
    )
    done = await cli.finish(process)
    assert deployment_id in done.err  # the progress names it
    return done


async def test_sync_wait_status_exit_codes_follow_the_deployments_outcome(
    cli: Cli, store: EventStore
) -> None:
    """--wait-status: SUCCESS exits 0; FAILURE exits 1 even if waited for; unwanted CANCELLED 1."""
    added = await cli("app", "add", "--name", "web", "--repo", "config", "--path", "web")
    assert added.code == 0, added.err

    ok = await sync_and_finish(cli, store, "SUCCESS", "--wait-status", "SUCCESS")
    assert ok.code == 0, ok.err
    assert "SUCCESS" in ok.out and "waiting for the deployment to be triggered" in ok.err

    failed = await sync_and_finish(cli, store, "FAILURE", "--wait-status", "SUCCESS,FAILURE")
    assert failed.code == 1, failed.err
    assert "FAILURE: because" in failed.out

    cancelled = await sync_and_finish(cli, store, "CANCELLED", "--wait-status", "SUCCESS", "--json")
    assert cancelled.code == 1
    assert json.loads(cancelled.out)["status"] == "CANCELLED"
    assert "not waited for" in cancelled.err


async def test_wait_status_times_out_with_4_and_reaches_running_with_0(
    cli: Cli, store: EventStore
) -> None:
    """wait-status exits 4 when time runs out, 0 when a wanted non-terminal status is reached."""
    d = new_id()
    timed_out = await cli(
        "deployment", "wait-status", d, "--wait-status", "SUCCESS", "--timeout", "2"
    )
    assert timed_out.code == 4 and "timed out" in timed_out.err
    await started(store, d)
    running = await cli(
        "deployment", "wait-status", d, "--wait-status", "RUNNING", "--timeout", "30"
    )
    assert running.code == 0, running.err
    bad = await cli("deployment", "wait-status", d, "--wait-status", "DONE")
    assert bad.code == 2


async def test_deployment_get_list_commands_and_follow(
    cli: Cli, store: EventStore, pool: asyncpg.Pool, nc: NatsClient, subjects: Subjects
) -> None:
    """get/list show it, with the version it deploys (a repository's tag: no terminal escape
    reaches the terminal); skip, cancel record requests; logs --follow prints lines, exits 0."""
    d = new_id()
    await started(store, d, version="v2\x1b[2J")
    got = await cli("deployment", "get", d)
    assert got.code == 0, got.err
    assert "RUNNING" in got.out and "stage-0" in got.out and "WAIT" in got.out
    assert "version:     v2\\x1b[2J" in got.out.splitlines()

    async def listed() -> bool:
        done = await cli("deployment", "list", "--app", "app1", "--json")
        return [x["deployment_id"] for x in json.loads(done.out)] == [d]

    await wait_until(listed, within_s=30, what="the deployment listed")
    as_json = json.loads((await cli("deployment", "list", "--json")).out)
    assert as_json[0]["deployed_version"] == "v2\x1b[2J"
    header, row = (await cli("deployment", "list")).out.splitlines()
    assert header.split()[5] == "VERSION"
    assert row.split()[5] == "v2\\x1b[2J" and "\x1b" not in row

    skipped = await cli("deployment", "skip", d, "--stage", "stage-0")
    assert skipped.code == 0 and "recorded" in skipped.out
    refused = await cli("deployment", "skip", d, "--stage", "stage-1")
    assert refused.code == 1 and "cannot be skipped" in refused.err
    cancelled = await cli("deployment", "cancel", d, "--no-rollback")
    assert cancelled.code == 0, cancelled.err
    events = [e.event for e in await store.read_stream(f"deployment-{d}")][-2:]
    assert events == [
        StageSkipRequested(deployment_id=d, stage_id="stage-0", commander="test-admin"),
        DeploymentCancelRequested(deployment_id=d, with_rollback=False, commander="test-admin"),
    ]

    logs = StageLogs(pool, nc, subjects)
    await logs.write(d, "stage-0", Severity.INFO, "waiting 30s")
    follow = await cli.start("deployment", "logs", d, "--follow")
    await cli.read_until(follow, "waiting 30s", stream="stdout")  # following: the next is live
    await logs.write(d, "stage-1", Severity.SUCCESS, "rolled out")
    await write(
        store,
        d,
        DeploymentCompleted(
            deployment_id=d, application_id="app1", status=vocabulary.DeploymentStatus("SUCCESS")
        ),
    )
    followed = await cli.finish(follow)
    assert followed.code == 0, followed.err
    assert [line.split(maxsplit=3)[-1] for line in followed.out.splitlines()] == [
        "waiting 30s",
        "rolled out",
    ]


async def test_events_show_and_apikeys(cli: Cli, store: EventStore) -> None:
    """events show lists a stream and its state as of a position; apikey create/list/revoke work."""
    d = new_id()
    await started(store, d)
    shown = await cli("events", "show", f"deployment-{d}")
    assert shown.code == 0 and "deployment_planned" in shown.out
    first = (await store.read_stream(f"deployment-{d}"))[0].global_position
    state = await cli("events", "show", f"deployment-{d}", "--position", str(first), "--json")
    assert json.loads(state.out)["state"]["status"] == "PENDING"
    before = await cli("events", "show", f"deployment-{d}", "--at", "2000-01-01T00:00:00Z")
    assert before.code == 0, before.err
    assert "no event of it yet" in before.out and "null" not in before.out

    created = await cli("apikey", "create", "--role", "read-only", "--name", "viewer", "--json")
    assert created.code == 0, created.err
    made = json.loads(created.out)
    viewer = Cli("", made["secret"])
    viewer.env = cli.env | {"SLIPWAY_API_KEY": made["secret"]}
    assert (await viewer("deployment", "get", d)).code == 0
    denied = await viewer("deployment", "cancel", d)
    assert denied.code == 1 and "HTTP 403" in denied.err
    listed = await cli("apikey", "list")
    assert "viewer" in listed.out and "read-only" in listed.out
    revoked = await cli("apikey", "revoke", made["key"]["key_id"])
    assert revoked.code == 0 and "revoked" in revoked.out

    async def refused() -> bool:
        return (await viewer("deployment", "get", d)).code == 1

    await wait_until(refused, within_s=30, what="the revoked key refused")
    nobody = Cli("", "")
    nobody.env = cli.env | {"SLIPWAY_API_KEY": ""}
    anonymous = await nobody("deployment", "get", d)
    assert anonymous.code == 1 and "HTTP 401" in anonymous.err


@pytest.mark.usefixtures("store")
async def test_apikey_create_direct_bootstraps_an_admin_key(
    cli: Cli, app_database_url: str, schema: str
) -> None:
    """`apikey create --direct` writes an admin key into the database; the API accepts it."""
    env = cli.env | {"SLIPWAY_DATABASE_URL": app_database_url, "SLIPWAY_DATABASE_SCHEMA": schema}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slipway_cli", "apikey", "create", "--direct", "--role", "admin",
        "--name", "first", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    secret = out.decode().strip()
    admin = Cli("", secret)
    admin.env = cli.env | {"SLIPWAY_API_KEY": secret}
    listed = await admin("apikey", "list", "--json")
    assert listed.code == 0, listed.err
    assert "first" in {k["name"] for k in json.loads(listed.out)}
    assert secret not in listed.out


async def test_events_tail_prints_what_is_committed_from_a_position(
    cli: Cli, store: EventStore
) -> None:
    """`events tail --from-position N --count 2` prints the next two events, in order, as JSON."""
    old = new_id()
    await started(store, old)
    after_old = (await store.read_stream(f"deployment-{old}"))[-1].global_position + 1
    tail = await cli.start(
        "events", "tail", "--category", "deployment", "--from-position", str(after_old),
        "--count", "2", "--json",
    )  # fmt: skip
    d = new_id()
    triggered = DeploymentTriggered(
        deployment_id=d,
        application_id="a",
        trigger=vocabulary.Trigger("on_commit"),
        commit_hash="c",
    )
    await write(store, d, triggered)
    # Printed: the range is read, so the second event can only reach it by tailing.
    await cli.read_until(tail, "deployment_triggered", stream="stdout")
    await write(
        store,
        d,
        DeploymentCompleted(
            deployment_id=d, application_id="a", status=vocabulary.DeploymentStatus("FAILURE")
        ),
    )
    done = await cli.finish(tail)
    assert done.code == 0, done.err
    printed = [json.loads(line) for line in done.out.splitlines()]
    assert [(e["stream_id"], e["event_type"]) for e in printed] == [
        (f"deployment-{d}", "deployment_triggered"),
        (f"deployment-{d}", "deployment_completed"),
    ]


async def test_sync_says_triggered_only_once_the_deployment_exists(
    cli: Cli, store: EventStore
) -> None:
    """A plain `app sync` prints the deployment as triggered only once the log holds it; a
    deployment that never appears (no gitwatcher) is exit 4 naming why, not a phantom id."""
    added = await cli("app", "add", "--name", "web", "--repo", "config", "--path", "web")
    assert added.code == 0, added.err
    app_id = json.loads((await cli("app", "get", "web", "--json")).out)["application_id"]

    nobody_opens_it = await cli("app", "sync", "web", "--confirm-within", "1")
    assert nobody_opens_it.code == 4
    assert "did not appear within 1 s" in nobody_opens_it.err
    assert nobody_opens_it.out == ""

    before = len(await store.read_stream(f"application-{app_id}"))
    process = await cli.start("app", "sync", "web", "--confirm-within", "30")

    async def requested() -> str | None:
        history = await store.read_stream(f"application-{app_id}")
        return getattr(history[-1].event, "request_id", None) if len(history) > before else None

    request_id = await wait_until(requested, within_s=30, what="the sync request")
    assert request_id is not None
    deployment_id = on_command_deployment_id(app_id, request_id)
    await write(  # what the gitwatcher does with the request
        store,
        deployment_id,
        DeploymentTriggered(
            deployment_id=deployment_id,
            application_id=app_id,
            trigger=vocabulary.Trigger("on_command"),
            commit_hash="abc1234",
        ),
    )
    done = await cli.finish(process)
    assert done.code == 0, done.err
    assert f"sync of web triggered deployment {deployment_id}" in done.out

    unconfirmed = await cli("app", "sync", "web", "--no-confirm")
    assert unconfirmed.code == 0 and unconfirmed.out.startswith("sync requested for web: ")
