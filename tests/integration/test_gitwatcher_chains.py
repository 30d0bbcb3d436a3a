"""Deployment chains in the gitwatcher, against a real git repository and PostgreSQL.

account-dev's config chains account-stg, then every env=prd application that
lets chains deploy it. The deployments' outcomes are written as the executor
writes them; the chain consumer's handler runs on each completion, inside a
transaction as its consumer runs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from services.api.routes import API_PREFIX
from services.gitwatcher.chains import ChainRunner
from services.gitwatcher.service import Gitwatcher
from shared.chains import CHAIN
from shared.decider import fold
from shared.eventlog import EventStore, new_events
from shared.events.catalog import (
    ChainStarted,
    DeploymentCancelRequested,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentTriggered,
)
from shared.events.ids import chain_id_of, on_chain_deployment_id
from shared.events.streams import chain_stream, deployment_stream
from shared.events.vocabulary import DeploymentStatus, Trigger
from shared.testing import wait_until
from tests.support.api import api_key_for, auth_headers, running_projection, served_api
from tests.support.cli import slipway
from tests.support.git_helpers import WorkRepo, app_config
from tests.support.gitwatcher import (
    events_of,
    make_gitwatcher,
    register,
    registration,
    watched,
)

CHAINED = "  trigger:\n    onChain:\n      disabled: false\n"
POST_SYNC_CHAIN = """\
  postSync:
    chain:
      applications:
        - name: account-stg
        - labels:
            env: prd
"""


async def complete(store: EventStore, runner: ChainRunner, deployment_id: str, status: str) -> None:
    """Record the deployment's end, then run the chain consumer's handler on it."""
    stream = deployment_stream(deployment_id)
    completed = DeploymentCompleted(
        deployment_id=deployment_id,
        application_id="-",
        status=DeploymentStatus(status),
    )
    await store.append(stream, new_events([completed]), expected_version=None)
    recorded = (await store.read_stream(stream))[-1]
    async with store.pool.acquire() as conn, conn.transaction():
        await runner.handle_completed(recorded, conn)


async def call(url: str, method: str, path: str) -> tuple[int, Any]:
    """(status, JSON body) of an API call with the admin key."""
    async with (
        aiohttp.ClientSession(base_url=url, headers=auth_headers(api_key_for(url))) as http,
        http.request(method, f"{API_PREFIX}{path}") as reply,
    ):
        return reply.status, await reply.json(content_type=None)


async def chain_triggers(store: EventStore) -> dict[str, DeploymentTriggered]:
    return {
        t.application_id: t
        for t in await events_of(store, DeploymentTriggered)
        if t.trigger == Trigger.ON_CHAIN
    }


async def setup(
    store: EventStore, projector_store: EventStore, tmp_path: Path
) -> tuple[Gitwatcher, ChainRunner, str]:
    work = WorkRepo(tmp_path / "config")
    head = work.commit(
        {
            "account/dev/.pipe.yaml": app_config("account-dev", "dev", POST_SYNC_CHAIN),
            "account/stg/.pipe.yaml": app_config("account-stg", "stg", CHAINED),
            "account/prd/.pipe.yaml": app_config("account-prd", "prd", CHAINED),
            # env=prd too, but it never opted in to chains (PipeCD's default).
            "billing/prd/.pipe.yaml": app_config("billing-prd", "prd"),
        },
        "layout",
    )
    apps = [registration(s, e) for s, e in (("account", "dev"), ("account", "stg"))]
    apps += [registration(s, "prd") for s in ("account", "billing")]
    await register(store, projector_store, *apps)
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()  # records each config's labels
    await register(store, projector_store)
    runner = ChainRunner(store, gitwatcher.watchers, gitwatcher.metrics)
    dev = "devdeploy1"
    trigger = DeploymentTriggered(
        deployment_id=dev,
        application_id="account-dev",
        trigger=Trigger.ON_COMMIT,
        commit_hash=head,
        repository_id="config",
    )
    await store.append(deployment_stream(dev), new_events([trigger]), expected_version=-1)
    return gitwatcher, runner, dev


async def test_a_failure_in_stg_ends_the_chain_and_prd_is_never_deployed(
    store: EventStore, projector_store: EventStore, tmp_path: Path
) -> None:
    _, runner, dev = await setup(store, projector_store, tmp_path)
    chain = chain_id_of(dev)

    await complete(store, runner, dev, "SUCCESS")
    (started,) = await events_of(store, ChainStarted)
    blocks = [[n.application_id for n in b.nodes] for b in started.blocks]
    assert blocks == [["account-dev"], ["account-stg"], ["account-prd"]]  # billing opted out
    triggers = await chain_triggers(store)
    assert list(triggers) == ["account-stg"]
    stg = triggers["account-stg"]
    assert stg.chain_id == chain and stg.deployment_id == on_chain_deployment_id(
        chain, "account-stg"
    )
    assert stg.commit_hash and stg.committed_at  # the branch head, with its time

    await complete(store, runner, dev, "SUCCESS")  # delivered again: nothing new
    assert len(await events_of(store, ChainStarted)) == 1

    await complete(store, runner, stg.deployment_id, "FAILURE")
    state = fold(CHAIN, [r.event for r in await store.read_stream(chain_stream(chain))])
    assert state.status == "FAILURE" and "account-stg" in state.reason
    assert [state.block_status(i) for i in range(3)] == ["SUCCESS", "FAILURE", "SKIPPED"]
    assert list(await chain_triggers(store)) == ["account-stg"]  # prd never triggered


async def test_when_stg_succeeds_prd_is_deployed_and_the_chain_succeeds(
    store: EventStore, projector_store: EventStore, tmp_path: Path
) -> None:
    _, runner, dev = await setup(store, projector_store, tmp_path)
    chain = chain_id_of(dev)
    await complete(store, runner, dev, "SUCCESS")
    stg = (await chain_triggers(store))["account-stg"]
    await complete(store, runner, stg.deployment_id, "SUCCESS")
    prd = (await chain_triggers(store))["account-prd"]
    assert prd.chain_id == chain
    await complete(store, runner, prd.deployment_id, "SUCCESS")
    state = fold(CHAIN, [r.event for r in await store.read_stream(chain_stream(chain))])
    assert state.status == "SUCCESS"
    # a chained deployment that succeeds starts no chain of its own
    assert len(await events_of(store, ChainStarted)) == 1


async def test_the_api_and_cli_show_a_chain_and_cancelling_it_cancels_what_runs(
    store: EventStore, projector_store: EventStore, api_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    _, runner, dev = await setup(store, projector_store, tmp_path)
    chain = chain_id_of(dev)
    await complete(store, runner, dev, "SUCCESS")
    stg = (await chain_triggers(store))["account-stg"]
    async with running_projection(projector_store), served_api(store, api_pool) as url:

        async def listed() -> bool:
            status, body = await call(url, "GET", "/chains")
            return status == 200 and any(c["chain_id"] == chain for c in body["items"])

        # the list reads the stream_stats view, which the projection fills a moment later
        await wait_until(listed, what="the chain listed")
        shown = await slipway("chain", "list", api_url=url)
        assert chain in shown.out and "RUNNING" in shown.out and "account-dev" in shown.out
        got = await slipway("chain", "get", chain, "--json", api_url=url)
        body = json.loads(got.out)
        assert [b["status"] for b in body["blocks"]] == ["SUCCESS", "RUNNING", "PENDING"]
        assert body["blocks"][1]["deployments"] == [
            {
                "application_id": "account-stg",
                "deployment_id": stg.deployment_id,
                "status": "RUNNING",
            }
        ]
        assert (await call(url, "GET", f"/chains/{'f' * 32}"))[0] == 404
        assert (await call(url, "GET", "/chains/not-a-chain"))[0] == 404

        done = await slipway("chain", "cancel", chain, api_url=url)
        assert done.code == 0, done.err
        assert stg.deployment_id in done.out
        status, again = await call(url, "POST", f"/chains/{chain}/cancel")
        assert (status, again["appended"]) == (200, False)

    (asked,) = await events_of(store, DeploymentCancelRequested)
    assert asked.deployment_id == stg.deployment_id and asked.with_rollback
    await complete(store, runner, stg.deployment_id, "CANCELLED")
    state = fold(CHAIN, [r.event for r in await store.read_stream(chain_stream(chain))])
    assert state.status == "CANCELLED" and state.outcomes[stg.deployment_id] == "CANCELLED"
    assert list(await chain_triggers(store)) == ["account-stg"]  # prd never triggered


async def test_a_chained_deployment_whose_plan_fails_fails_the_chain(
    store: EventStore, projector_store: EventStore, tmp_path: Path
) -> None:
    """A plan failure ends a deployment without `DeploymentCompleted`: the chain hears of it."""
    _, runner, dev = await setup(store, projector_store, tmp_path)
    chain = chain_id_of(dev)
    await complete(store, runner, dev, "SUCCESS")
    stg = (await chain_triggers(store))["account-stg"]
    stream = deployment_stream(stg.deployment_id)
    failed = DeploymentPlanFailed(
        deployment_id=stg.deployment_id, application_id="account-stg", reason="bad yaml"
    )
    await store.append(stream, new_events([failed]), expected_version=None)
    async with store.pool.acquire() as conn, conn.transaction():
        await runner.handle_completed((await store.read_stream(stream))[-1], conn)
    state = fold(CHAIN, [r.event for r in await store.read_stream(chain_stream(chain))])
    assert state.status == "FAILURE" and state.outcomes[stg.deployment_id] == "FAILURE"
