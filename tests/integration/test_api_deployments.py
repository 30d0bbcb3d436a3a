"""Deployments over the API against real PostgreSQL and NATS: list, get, commands, logs, follow.

Deployment streams are written here the way the gitwatcher, planner and
executor write them (appended events); the API's answers and the requests it
appends are then checked. The fold and the request rules themselves are
`shared.deployments`, tested in `tests/unit/test_deployments_fold.py`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from services.api.routes import API_PREFIX
from shared.apikeys import create_api_key
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.catalog import (
    ApplicationRegistered,
    DeploymentCancelRequested,
    DeploymentCompleted,
    DeploymentRollingBack,
    DeploymentStarted,
    StageApproved,
    StageCompleted,
    StageSkipRequested,
    StageStarted,
)
from shared.ids import new_id
from shared.projections import ProjectionRunner, replay
from shared.projections.deployments import DeploymentsProjection
from shared.stagelog import Severity, StageLogs
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support.api import api_key_for, auth_headers, running_projection, served_api
from tests.support.deployment_events import T0, deployment, write

DEPLOYMENTS = f"{API_PREFIX}/deployments"


@pytest.fixture
async def api(
    store: EventStore,
    projector_store: EventStore,
    api_pool: asyncpg.Pool,
    nc: NatsClient,
    subjects: Subjects,
) -> AsyncIterator[str]:
    async with (
        running_projection(projector_store),
        served_api(store, api_pool, nc=nc, subjects=subjects) as url,
    ):
        yield url


async def call(url: str, method: str, path: str, body: Any = None, **params: Any) -> Any:
    """(status, JSON body) with the admin key."""
    key = _acting_as.get(url) or api_key_for(url)
    async with (
        aiohttp.ClientSession(base_url=url, headers=auth_headers(key)) as http,
        http.request(method, path, json=body, params=params or None) as reply,
    ):
        return reply.status, await reply.json(content_type=None)


_acting_as: dict[str, str] = {}
"""A key to call an API with instead of its admin key."""


async def test_get_folds_the_stream_into_a_deployment_with_its_stages(
    api: str, store: EventStore
) -> None:
    """GET /deployments/{id} answers status, stages with status/times/reasons, from the stream."""
    d = await deployment(store)
    await write(
        store,
        d,
        StageCompleted(
            deployment_id=d,
            stage_id="stage-0",
            status=vocabulary.StageStatus("SUCCESS"),
            reason="approved",
            completed_at=T0,
        ),
        StageStarted(deployment_id=d, stage_id="stage-1", started_at=T0),
    )
    status, got = await call(api, "GET", f"{DEPLOYMENTS}/{d}")
    assert status == 200, got
    assert got["status"] == "RUNNING" and got["application_id"] == "app1"
    assert got["summary"] == "image web: v1 → v2" and got["trigger"] == "on_commit"
    stages = {s["stage_id"]: s for s in got["stages"]}
    assert stages["stage-0"]["status"] == "SUCCESS" and stages["stage-0"]["reason"] == "approved"
    assert stages["stage-1"]["status"] == "RUNNING" and stages["stage-1"]["started_at"]
    assert stages["stage-3"]["visible"] is False
    assert (await call(api, "GET", f"{DEPLOYMENTS}/{new_id()}"))[0] == 404
    assert (await call(api, "GET", f"{DEPLOYMENTS}/not-an-id!"))[0] == 404


async def test_list_filters_by_application_and_status_and_pages_newest_first(
    api: str, store: EventStore
) -> None:
    """GET /deployments lists from the projection with application, status, limit and cursor,
    each with the version its plan deploys (a repository's tag: sent as is, clipped)."""
    registered = ApplicationRegistered(
        application_id="app1", name="shop-web", repository_id="config", path="web"
    )
    await store.append("application-app1", new_events([registered]), expected_version=NO_STREAM)
    first = await deployment(store, "app1", version="<!channel>")
    second = await deployment(store, "app1", version="v2.1.0")
    other = await deployment(store, "app2", version="9" * 5000)
    last = await write(
        store,
        second,
        DeploymentCompleted(
            deployment_id=second,
            application_id="app1",
            status=vocabulary.DeploymentStatus("SUCCESS"),
        ),
    )

    async def projected() -> bool:
        _, page = await call(api, "GET", DEPLOYMENTS, status="SUCCESS")
        return [d["deployment_id"] for d in page["items"]] == [second]

    await wait_until(projected, within_s=30, what="the completion projected")
    assert last > 0
    _, everything = await call(api, "GET", DEPLOYMENTS)
    assert [d["deployment_id"] for d in everything["items"]] == [other, second, first]
    _, mine = await call(api, "GET", DEPLOYMENTS, application="app1")
    assert [d["deployment_id"] for d in mine["items"]] == [second, first]
    _, running = await call(api, "GET", DEPLOYMENTS, status="RUNNING,PLANNED")
    assert [d["deployment_id"] for d in running["items"]] == [other, first]
    _, page = await call(api, "GET", DEPLOYMENTS, limit=2)
    assert len(page["items"]) == 2 and page["next_cursor"]
    _, rest = await call(api, "GET", DEPLOYMENTS, limit=2, cursor=page["next_cursor"])
    assert [d["deployment_id"] for d in rest["items"]] == [first] and rest["next_cursor"] is None
    done = next(d for d in everything["items"] if d["deployment_id"] == second)
    assert done["status"] == "SUCCESS" and done["completed_at"]
    names = {d["application_id"]: d["application_name"] for d in everything["items"]}
    assert names == {"app1": "shop-web", "app2": ""}  # app2 was never registered
    versions = [d["deployed_version"] for d in everything["items"]]
    assert versions == ["9" * 199 + "…", "v2.1.0", "<!channel>"]
    status, bad = await call(api, "GET", DEPLOYMENTS, status="DONE")
    assert status == 400 and bad["error"]["field"] == "status"


async def test_commands_append_the_requests_the_executor_consumes(
    api: str, store: EventStore
) -> None:
    """cancel / approve / skip append the request events the executor consumes, as the actor."""
    d = await deployment(store)
    alice = await create_api_key(store, "read-write", "alice")
    _acting_as[api] = alice
    try:
        status, approved = await call(api, "POST", f"{DEPLOYMENTS}/{d}/stages/stage-0/approve")
        assert status == 202, approved
        assert approved["appended"] and approved["command"] == "approve"
    finally:
        _acting_as.pop(api)
    status, again = await call(api, "POST", f"{DEPLOYMENTS}/{d}/stages/stage-0/approve")
    assert status == 409 and "test-admin may not approve" in again["error"]["message"]

    status, skipped = await call(api, "POST", f"{DEPLOYMENTS}/{d}/stages/stage-0/skip")
    assert status == 202, skipped
    status, twice = await call(api, "POST", f"{DEPLOYMENTS}/{d}/stages/stage-0/skip")
    assert status == 200 and twice["appended"] is False
    status, refused = await call(api, "POST", f"{DEPLOYMENTS}/{d}/stages/stage-1/skip")
    assert status == 409 and "cannot be skipped" in refused["error"]["message"]

    status, cancelled = await call(api, "POST", f"{DEPLOYMENTS}/{d}/cancel", {"rollback": False})
    assert status == 202, cancelled
    status, bad = await call(api, "POST", f"{DEPLOYMENTS}/{d}/cancel", {"rollback": "no"})
    assert status == 400 and bad["error"]["field"] == "rollback"

    requests = [e.event for e in await store.read_stream(f"deployment-{d}")][-3:]
    assert requests == [
        StageApproved(deployment_id=d, stage_id="stage-0", approver="alice"),
        StageSkipRequested(deployment_id=d, stage_id="stage-0", commander="test-admin"),
        DeploymentCancelRequested(deployment_id=d, with_rollback=False, commander="test-admin"),
    ]
    await write(
        store,
        d,
        DeploymentCompleted(
            deployment_id=d, application_id="app1", status=vocabulary.DeploymentStatus("CANCELLED")
        ),
    )
    status, late = await call(api, "POST", f"{DEPLOYMENTS}/{d}/cancel")
    assert status == 409 and "already completed (CANCELLED)" in late["error"]["message"]
    assert (await call(api, "POST", f"{DEPLOYMENTS}/{new_id()}/cancel"))[0] == 404


async def test_logs_list_and_follow_backlog_then_live_lines_until_completion(
    api: str, store: EventStore, pool: asyncpg.Pool, nc: NatsClient, subjects: Subjects
) -> None:
    """logs answers the stored lines; ?follow=true streams them, then live lines, then `end`."""
    d = await deployment(store)
    logs = StageLogs(pool, nc, subjects)
    await logs.write(d, "stage-0", Severity.INFO, "waiting for approval")
    status, listed = await call(api, "GET", f"{DEPLOYMENTS}/{d}/logs")
    assert status == 200 and [line["message"] for line in listed["items"]] == [
        "waiting for approval"
    ]

    received: list[tuple[str, dict[str, Any]]] = []
    async with (
        aiohttp.ClientSession(base_url=api, headers=auth_headers(api_key_for(api))) as http,
        http.get(f"{DEPLOYMENTS}/{d}/logs", params={"follow": "true"}) as reply,
    ):
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/event-stream")

        async def read_events() -> None:
            event = ""
            async for raw in reply.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    received.append((event, json.loads(line[6:])))

        reader = asyncio.create_task(read_events())
        await wait_until(lambda: len(received) >= 1, within_s=30, what="the backlog line")
        await logs.write(d, "stage-1", Severity.SUCCESS, "rolled out 3/3")
        await wait_until(lambda: len(received) >= 2, within_s=30, what="the live line")
        await write(
            store,
            d,
            DeploymentCompleted(
                deployment_id=d,
                application_id="app1",
                status=vocabulary.DeploymentStatus("SUCCESS"),
            ),
        )
        async with asyncio.timeout(30):
            await reader
    assert [(e, data.get("message", data.get("status"))) for e, data in received] == [
        ("log", "waiting for approval"),
        ("log", "rolled out 3/3"),
        ("end", "SUCCESS"),
    ]
    assert (await call(api, "GET", f"{DEPLOYMENTS}/{new_id()}/logs"))[0] == 404


async def test_the_deployments_projection_rebuilt_by_replay_equals_the_live_one(
    store: EventStore, projector_store: EventStore
) -> None:
    """`slipway replay`'s rebuild of `deployments` gives exactly the rows the live runner kept."""
    first = await deployment(store, "app1", version="v3 (web), 1.30 (envoy)")
    second = await deployment(store, "app2", running_stage=None)
    await write(
        store,
        first,
        DeploymentRollingBack(deployment_id=first, application_id="app1", reason="analysis"),
        DeploymentCompleted(
            deployment_id=first,
            application_id="app1",
            status=vocabulary.DeploymentStatus("FAILURE"),
        ),
        # A late duplicate must not move a completed deployment back.
        DeploymentStarted(deployment_id=first, application_id="app1", started_at=T0),
    )
    runner = ProjectionRunner(projector_store, DeploymentsProjection(), idle_sleep_s=0.01)
    await runner.install()
    await runner.run_until_caught_up()
    query = "SELECT * FROM deployments ORDER BY deployment_id"
    live = [dict(r) for r in await store.pool.fetch(query)]
    assert {r["deployment_id"]: r["status"] for r in live} == {first: "FAILURE", second: "RUNNING"}
    assert next(r for r in live if r["deployment_id"] == first)["completed_at"] is not None
    versions = {r["deployment_id"]: r["deployed_version"] for r in live}
    assert versions == {first: "v3 (web), 1.30 (envoy)", second: ""}
    await replay(projector_store, DeploymentsProjection())
    assert [dict(r) for r in await store.pool.fetch(query)] == live
