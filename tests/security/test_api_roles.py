"""Roles mean what they say: what each API key may do, see and hold (DESIGN §14, "API roles").

Against the real API, PostgreSQL and NATS: each test is an attack a key of
some role could try, and checks that it is refused (or that nothing leaks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.api.routes import API_PREFIX
from shared.apikeys import create_api_key, create_key, key_id_of, revoke_api_key, secret_sha256
from shared.db import create_pool
from shared.eventlog import EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    DeploymentStarted,
    DeploymentTriggered,
    PlannedStage,
    StageStarted,
)
from shared.ids import new_id
from shared.testing import wait_until
from tests.support.api import api_key_for, auth_headers, served_api
from tests.support.deployment_events import planned, triggered

DEPLOYMENTS = f"{API_PREFIX}/deployments"
KEYS = f"{API_PREFIX}/api-keys"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STAGES = (
    PlannedStage(
        id="stage-0",
        name=vocabulary.StageName("WAIT_APPROVAL"),
        index=0,
        options_json='{"approvers": ["alice"]}',
    ),
    PlannedStage(id="stage-1", name=vocabulary.StageName("K8S_PRIMARY_ROLLOUT"), index=1),
)
TTL_S = 0.5


@pytest.fixture
async def api(store: EventStore, api_pool: asyncpg.Pool) -> AsyncIterator[str]:
    async with served_api(store, api_pool, key_cache_ttl_s=TTL_S, max_log_streams_per_key=2) as url:
        yield url


async def call(
    url: str, key: str, method: str, path: str, body: Any = None, **params: Any
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(base_url=url, headers=auth_headers(key)) as http,
        http.request(method, path, json=body, params=params or None) as reply,
    ):
        return reply.status, await reply.json(content_type=None)


async def waiting_for_approval(store: EventStore) -> str:
    """A running deployment whose WAIT_APPROVAL stage (approvers: alice) has started."""
    d = new_id()
    events: list[Event] = [
        triggered(d, commit="c0ffee1"),
        planned(
            d,
            STAGES,
            commit="c0ffee1",
            summary="image web: v1 → v2",
            reason="the pod template changed",
        ),
        DeploymentStarted(deployment_id=d, application_id="app1", started_at=T0),
        StageStarted(deployment_id=d, stage_id="stage-0", started_at=T0),
    ]
    await store.append(f"deployment-{d}", new_events(events), expected_version=None)
    return d


async def test_a_read_write_key_cannot_skip_an_approval_it_could_not_give(
    api: str, store: EventStore
) -> None:
    """Skipping WAIT_APPROVAL needs a listed approver or admin; other read-write keys get 409."""
    mallory = await create_api_key(store, "read-write", "mallory")
    alice = await create_api_key(store, "read-write", "alice")
    d = await waiting_for_approval(store)
    skip = f"{DEPLOYMENTS}/{d}/stages/stage-0/skip"
    status, refused = await call(api, mallory, "POST", skip)
    assert status == 409, refused
    assert "mallory may not skip stage stage-0" in refused["error"]["message"]
    status, _ = await call(api, mallory, "POST", f"{DEPLOYMENTS}/{d}/stages/stage-0/approve")
    assert status == 409
    # The listed approver may skip, and so may an admin (on another deployment).
    assert (await call(api, alice, "POST", skip))[0] == 202
    other = await waiting_for_approval(store)
    admin = api_key_for(api)
    assert (await call(api, admin, "POST", f"{DEPLOYMENTS}/{other}/stages/stage-0/skip"))[0] == 202


async def test_a_key_name_is_unique_among_live_keys(api: str, store: EventStore) -> None:
    """A second live key named like another is 409 name_taken; a revoked key frees its name."""
    admin = api_key_for(api)
    status, first = await call(api, admin, "POST", KEYS, {"role": "read-only", "name": "alice"})
    assert status == 201, first
    status, again = await call(api, admin, "POST", KEYS, {"role": "admin", "name": "alice"})
    assert status == 409 and again["error"]["code"] == "name_taken", again
    # Concurrent creations of one name: exactly one wins.
    results = await asyncio.gather(
        *(call(api, admin, "POST", KEYS, {"role": "read-write", "name": "bob"}) for _ in range(5))
    )
    assert sorted(s for s, _ in results) == [201, 409, 409, 409, 409]
    # Rotation: once alice's key is revoked, a new one may carry her name.
    await revoke_api_key(store, first["key"]["key_id"])
    status, rotated = await call(api, admin, "POST", KEYS, {"role": "read-only", "name": "alice"})
    assert status == 201, rotated
    assert rotated["key"]["key_id"] != first["key"]["key_id"]


async def test_no_answer_carries_a_key_hash(api: str, store: EventStore) -> None:
    """Neither the log nor a key's stream, read with any key, shows `secret_sha256`."""
    reader = await create_api_key(store, "read-only", "reader")
    key, secret = await create_key(store, role="admin", name="root")
    digest = secret_sha256(secret)
    key_id = key_id_of(secret)
    for who in (reader, api_key_for(api)):
        for path in (
            f"{API_PREFIX}/events",
            f"{API_PREFIX}/events/streams/apikey-{key_id}",
            f"{API_PREFIX}/events/streams/apikey-{key_id}/state",
        ):
            async with (
                aiohttp.ClientSession(base_url=api, headers=auth_headers(who)) as http,
                http.get(
                    path, params={"category": "apikey"} if path.endswith("events") else None
                ) as reply,
            ):
                text = await reply.text()
            assert reply.status == 200, text
            assert digest not in text and "secret_sha256" not in text, path
    assert key.key_id == key_id


async def test_a_stream_is_paged_in_sql_with_a_bounded_default(api: str, store: EventStore) -> None:
    """GET /events/streams/{id} answers a bounded page and a cursor; `after` continues it."""
    admin = api_key_for(api)
    stream = f"load-{new_id()}"
    d = new_id()
    events = [
        DeploymentTriggered(
            deployment_id=d,
            application_id=f"a{i}",
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash="c0ffee1",
        )
        for i in range(250)
    ]
    await store.append(stream, new_events(events), expected_version=None)
    status, page = await call(api, admin, "GET", f"{API_PREFIX}/events/streams/{stream}")
    assert status == 200
    assert len(page["items"]) == 100 and page["next_cursor"] == "99"
    seen = [e["stream_version"] for e in page["items"]]
    while page["next_cursor"] is not None:
        status, page = await call(
            api,
            admin,
            "GET",
            f"{API_PREFIX}/events/streams/{stream}",
            after=page["next_cursor"],
            limit=120,
        )
        assert status == 200
        seen += [e["stream_version"] for e in page["items"]]
    assert seen == list(range(250))
    status, both = await call(
        api, admin, "GET", f"{API_PREFIX}/events/streams/{stream}", after=3, from_version=1
    )
    assert status == 400 and both["error"]["field"] == "after"


async def _follow(
    url: str, key: str, deployment_id: str, received: list[str]
) -> tuple[int, list[str]]:
    """Follow the deployment's logs until the stream ends; the SSE event names in `received`."""
    async with (
        aiohttp.ClientSession(base_url=url, headers=auth_headers(key)) as http,
        http.get(f"{DEPLOYMENTS}/{deployment_id}/logs", params={"follow": "true"}) as reply,
    ):
        if reply.status != 200:
            return reply.status, [json.dumps(await reply.json())]
        received.append("open")
        async for raw in reply.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                received.append(line[7:])
    return 200, received


async def test_a_log_follow_ends_soon_after_its_key_is_revoked(api: str, store: EventStore) -> None:
    """A follow re-checks its key: revoked, the stream sends `revoked` and ends within the TTL."""
    secret = await create_api_key(store, "read-only", "watcher")
    d = await waiting_for_approval(store)
    received: list[str] = []
    follow = asyncio.create_task(_follow(api, secret, d, received))
    try:
        await wait_until(lambda: "open" in received, within_s=10, what="the follow to open")
        key_id = key_id_of(secret)
        assert key_id is not None
        await revoke_api_key(store, key_id)
        loop = asyncio.get_running_loop()
        revoked_at = loop.time()
        async with asyncio.timeout(TTL_S + 5):
            status, events = await follow
        # Within the TTL plus a poll or two (the generous slack is for a loaded machine).
        assert loop.time() - revoked_at < TTL_S + 3
        assert status == 200 and events[-1] == "revoked"
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow


async def test_one_key_holds_a_bounded_number_of_log_follows(api: str, store: EventStore) -> None:
    """Beyond `max_log_streams_per_key` open follows, another is 429; closing one frees a slot."""
    secret = await create_api_key(store, "read-only", "greedy")
    d = await waiting_for_approval(store)
    received: list[list[str]] = [[], []]
    follows = [asyncio.create_task(_follow(api, secret, d, r)) for r in received]
    try:
        await wait_until(lambda: all("open" in r for r in received), within_s=10, what="2 opens")
        async with asyncio.timeout(10):  # an uncapped server would stream on forever
            status, body = await _follow(api, secret, d, [])
        assert status == 429 and "too_many_streams" in body[0]
        # Another key is not affected by this one's streams.
        other = await create_api_key(store, "read-only", "other")
        third: list[str] = []
        extra = asyncio.create_task(_follow(api, other, d, third))
        await wait_until(lambda: "open" in third, within_s=10, what="another key's follow")
        extra.cancel()
        follows[0].cancel()
        fourth: list[str] = []

        async def reopened() -> bool:
            # The server notices the closed connection within a poll and frees the slot.
            follow = asyncio.create_task(_follow(api, secret, d, fourth))
            follows.append(follow)
            await wait_until(lambda: follow.done() or "open" in fourth, what="an answer")
            return "open" in fourth

        await wait_until(reopened, within_s=10, what="a freed slot")
    finally:
        for task in follows:
            task.cancel()
        await asyncio.gather(*follows, return_exceptions=True)


@pytest.mark.usefixtures("api")
async def test_a_server_error_names_a_request_id_not_the_driver(
    store: EventStore, api_database_url: str, schema: str
) -> None:
    """With the database gone, the 5xx answer carries the request id and no driver text."""
    doomed = await create_pool(api_database_url, schema=schema, min_size=1, max_size=2)
    broken = EventStore(doomed, store.registry)
    async with served_api(broken, doomed, admin_name="test-admin-2") as url:
        admin = api_key_for(url)
        await doomed.close()  # every query now fails inside the driver
        async with (
            aiohttp.ClientSession(base_url=url, headers=auth_headers(admin)) as http,
            http.get(f"{API_PREFIX}/events/streams/apikey-x") as reply,
        ):
            body = await reply.json()
            request_id = reply.headers["X-Request-Id"]
    assert reply.status >= 500, body
    error = body["error"]
    assert error["request_id"] == request_id
    text = json.dumps(body).lower()
    for leak in ("pool", "asyncpg", "interfaceerror", "closed", schema.lower()):
        assert leak not in text, (leak, body)


async def test_request_bodies_are_capped(store: EventStore, api_pool: asyncpg.Pool) -> None:
    """A body over `max_body_bytes` is 413 payload_too_large, declared or streamed."""
    async with served_api(store, api_pool, max_body_bytes=4096) as url:
        admin = api_key_for(url)
        big = {"role": "read-only", "name": "x", "pad": "y" * 10_000}
        status, body = await call(url, admin, "POST", KEYS, big)
        assert status == 413 and body["error"]["code"] == "payload_too_large", body

        async def endless() -> AsyncIterator[bytes]:
            for _ in range(1000):  # 64 MB if it were all read
                yield b"z" * 65536

        async with (
            aiohttp.ClientSession(base_url=url, headers=auth_headers(admin)) as http,
            http.post(KEYS, data=endless()) as reply,
        ):
            assert reply.status == 413
