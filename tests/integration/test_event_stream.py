"""`GET /api/v1/events/stream`: the log as server-sent events, in commit order, resumable,
filtered, in three formats, with heartbeats; bad input answered 400 naming the part."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.api.routes import API_PREFIX, event_stream
from shared.apikeys import create_api_key, key_id_of, revoke_api_key
from shared.eventlog import EventStore
from tests.support.api import api_key_for, auth_headers, served_api
from tests.support.subscriber import all_events, append_story

STREAM = f"{API_PREFIX}/events/stream"
Message = tuple[str, str, dict[str, Any]]


@pytest.fixture
async def api(store: EventStore, api_pool: asyncpg.Pool) -> AsyncIterator[str]:
    async with served_api(store, api_pool) as url:
        yield url


async def read(
    url: str,
    count: int,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    comments: list[str] | None = None,
) -> list[Message]:
    """The first `count` messages (id, event, data) of a stream, then disconnect."""
    out: list[Message] = []
    fields: dict[str, str] = {}
    async with (
        aiohttp.ClientSession(base_url=url) as http,
        http.get(
            STREAM, params=params, headers={**auth_headers(api_key_for(url)), **(headers or {})}
        ) as reply,
    ):
        assert reply.status == 200, await reply.text()
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        async with asyncio.timeout(20):
            async for raw in reply.content:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    if comments is not None:
                        comments.append(line)
                        if count == 0:
                            return out
                elif line:
                    key, _, value = line.partition(": ")
                    fields[key] = value
                else:
                    out.append((fields["id"], fields["event"], json.loads(fields["data"])))
                    fields = {}
                    if len(out) == count:
                        return out
    raise AssertionError(f"the stream ended after {len(out)} of {count} messages")


async def test_follows_in_commit_order_and_resumes_after_last_event_id(
    api: str, store: EventStore
) -> None:
    """A follower that disconnects and comes back with `Last-Event-ID` gets every event once,
    in the `after=` tail's order, including those appended while it was away and after."""
    await append_story(store)
    total = len(await all_events(store))
    first = await read(api, 7)
    await append_story(store)  # while it is away
    follow = asyncio.create_task(
        read(api, 2 * total - 7 + 5, headers={"Last-Event-ID": first[-1][0]})
    )
    await asyncio.sleep(0)
    await append_story(store)  # while it follows (only the first 5 of these are awaited)
    rest = await follow
    expected = [str(e.event_id) for e in await all_events(store)]
    got = [data["event_id"] for _, _, data in first + rest]
    assert got == expected[: len(got)]
    assert [m[0] for m in first + rest] == [
        f"{e.tx_id}:{e.global_position}" for e in (await all_events(store))[: len(got)]
    ]
    assert first[0][1] == first[0][2]["event_type"]  # `event` is the event type


async def test_filters_by_category_type_and_application(api: str, store: EventStore) -> None:
    """`application` selects a deployment's stage events too, which do not name it."""
    mine = await append_story(store)
    await append_story(store)  # another application's: never selected
    events = await all_events(store)
    stage_events = [e for e in events if e.event_type == "stage_started" and mine in e.stream_id]
    got = await read(
        api,
        len(stage_events),
        {"category": "deployment", "type": "stage_started,stage_completed", "application": mine},
    )
    wanted = [
        str(e.event_id)
        for e in events
        if e.event_type in ("stage_started", "stage_completed") and f"-{mine}-" in f"-{e.stream_id}"
    ]
    assert [d["event_id"] for _, _, d in got] == wanted[: len(got)]
    assert all(d["stream_id"].startswith(f"deployment-{mine}") for _, _, d in got)


async def test_cdevents_resume_inside_an_event_that_maps_to_several(
    api: str, store: EventStore
) -> None:
    """An event that maps to several CDEvents sends `<cursor>/<part>` ids; a reconnect with one
    goes on with the event's next part: the same sequence as one uninterrupted read."""
    await append_story(store)
    whole = await read(api, 25, {"format": "cdevents"})
    split = next(i for i, (event_id, _, _) in enumerate(whole) if "/" in event_id)
    head = whole[: split + 1]
    tail = await read(api, 25 - len(head), {"format": "cdevents"}, {"Last-Event-ID": head[-1][0]})
    assert [m[2]["id"] for m in head + tail] == [m[2]["id"] for m in whole]
    assert all(m[1].startswith("dev.cdevents.") and m[1] == m[2]["type"] for m in whole)


async def test_cloudevents_format(api: str, store: EventStore) -> None:
    await append_story(store)
    (message,) = await read(api, 1, {"format": "cloudevents", "type": "deployment_triggered"})
    _, event, data = message
    assert event == "deployment_triggered"
    assert data["specversion"] == "1.0" and data["type"] == "dev.slipway.deployment_triggered.v1"
    assert data["data"]["trigger"] == "on_commit"


@pytest.mark.usefixtures("store")
async def test_heartbeats_while_quiet(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_stream, "HEARTBEAT_S", 0.05)
    comments: list[str] = []
    await read(api, 0, {"after": "head"}, comments=comments)
    assert comments and comments[0].startswith(": heartbeat ")


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({"type": "deployment_triggered,nope"}, {}, "type"),
        ({"format": "xml"}, {}, "format"),
        ({"category": "Bad!"}, {}, "category"),
        ({"application": "a b"}, {}, "application"),
        ({"after": "12"}, {}, "after"),
        ({}, {"Last-Event-ID": "x:1"}, "Last-Event-ID"),
        ({}, {"Last-Event-ID": "1:2/zz"}, "Last-Event-ID"),
    ],
)
async def test_bad_input_is_a_400_naming_the_part(
    api: str, params: dict[str, str], headers: dict[str, str], field: str
) -> None:
    async with (
        aiohttp.ClientSession(base_url=api) as http,
        http.get(
            STREAM, params=params, headers={**auth_headers(api_key_for(api)), **headers}
        ) as reply,
    ):
        body = await reply.json()
    assert reply.status == 400, body
    assert body["error"]["field"] == field, body


async def test_needs_an_api_key(api: str) -> None:
    async with aiohttp.ClientSession(base_url=api) as http, http.get(STREAM) as reply:
        assert reply.status == 401


async def test_a_revoked_key_stream_ends(api: str, store: EventStore) -> None:
    """A follower whose key is revoked is told so and the stream ends (within the key cache's
    TTL), as a log follow does."""
    secret = await create_api_key(store, "read-only", "follower")
    async with (
        aiohttp.ClientSession(base_url=api) as http,
        http.get(STREAM, params={"after": "head"}, headers=auth_headers(secret)) as reply,
    ):
        assert reply.status == 200
        key_id = key_id_of(secret)
        assert key_id is not None
        await revoke_api_key(store, key_id)
        async with asyncio.timeout(15):
            body = await reply.content.read()  # to the end: the server closes it
    assert b"event: revoked" in body
