"""The event log over the API: by stream, by position range, a commit-order tail, time travel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.api.routes import API_PREFIX
from shared.eventlog import EventStore, new_events
from shared.events.catalog import ApplicationDisabled, ApplicationRegistered, SyncRequested
from shared.ids import new_id
from tests.support.api import api_key_for, auth_headers, served_api

EVENTS = f"{API_PREFIX}/events"


@pytest.fixture
async def api(store: EventStore, api_pool: asyncpg.Pool) -> AsyncIterator[str]:
    async with served_api(store, api_pool) as url:
        yield url


async def call(url: str, path: str, **params: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(base_url=url, headers=auth_headers(api_key_for(url))) as http,
        http.get(path, params=params or None) as reply,
    ):
        return reply.status, await reply.json()


async def registered(store: EventStore) -> tuple[str, list[int]]:
    app = new_id()
    stream = f"application-{app}"
    positions = []
    for event in (
        ApplicationRegistered(application_id=app, name="web", repository_id="config", path="web"),
        SyncRequested(application_id=app, request_id=new_id()),
        ApplicationDisabled(application_id=app),
    ):
        result = await store.append(stream, new_events([event]), expected_version=None)
        positions.append(result.global_positions[0])
    return app, positions


async def test_a_stream_reads_in_version_order_with_decoded_data(
    api: str, store: EventStore
) -> None:
    """GET /events/streams/{id} answers its events with type, version, position and data."""
    app, positions = await registered(store)
    status, page = await call(api, f"{EVENTS}/streams/application-{app}")
    assert status == 200
    assert [e["event_type"] for e in page["items"]] == [
        "application_registered",
        "sync_requested",
        "application_disabled",
    ]
    assert [e["global_position"] for e in page["items"]] == positions
    assert page["items"][0]["data"]["name"] == "web" and "type" not in page["items"][0]["data"]
    _, later = await call(api, f"{EVENTS}/streams/application-{app}", from_version=2)
    assert [e["stream_version"] for e in later["items"]] == [2]
    status, bad = await call(api, f"{EVENTS}/streams/NOT A STREAM")
    assert status == 400 and bad["error"]["field"] == "stream_id"


async def test_a_position_range_and_a_tail_from_head_in_commit_order(
    api: str, store: EventStore
) -> None:
    """from/to_position reads a range; after=head then next_cursor tails only what comes later."""
    _, positions = await registered(store)
    _, ranged = await call(api, EVENTS, from_position=positions[1], to_position=positions[2])
    assert [e["global_position"] for e in ranged["items"]] == positions[1:]
    _, head = await call(api, EVENTS, after="head")
    assert head["items"] == [] and head["next_cursor"]
    _, nothing = await call(api, EVENTS, after=head["next_cursor"])
    assert nothing["items"] == []
    _, later = await registered(store)
    _, tail = await call(api, EVENTS, after=head["next_cursor"], category="application")
    assert [e["global_position"] for e in tail["items"]] == later
    status, bad = await call(api, EVENTS, after="yesterday")
    assert status == 400 and bad["error"]["field"] == "after"


async def test_state_as_of_a_position_and_a_time(api: str, store: EventStore) -> None:
    """…/state folds the stream up to a position or a time; before its first event it is null."""
    app, positions = await registered(store)
    path = f"{EVENTS}/streams/application-{app}/state"
    _, now = await call(api, path)
    assert now["kind"] == "application" and now["state"]["disabled"] is True
    _, before = await call(api, path, position=positions[1])
    assert before["state"]["disabled"] is False and before["events"] == 2
    _, nothing = await call(api, path, position=positions[0] - 1)
    assert nothing["state"] is None and nothing["version"] == -1
    history = await store.read_stream(f"application-{app}")
    at = history[0].recorded_at.isoformat()
    _, then = await call(api, path, at=at)
    assert then["events"] == 1 and then["state"]["name"] == "web"
    status, bad = await call(api, path, at="2026-01-01T00:00:00")  # no zone
    assert status == 400 and bad["error"]["field"] == "at"
