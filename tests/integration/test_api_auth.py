"""API keys over real HTTP and PostgreSQL: deny by default, roles, revocation, the key endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.api.routes import API_PREFIX, all_routes
from shared.apikeys import create_api_key, key_id_of, revoke_api_key, secret_sha256
from shared.eventlog import EventStore
from shared.events import vocabulary
from shared.events.catalog import ApiKeyCreated, ApiKeyRevoked
from shared.testing import wait_until
from tests.support.api import api_key_for, auth_headers, running_projection, served_api

APPS = f"{API_PREFIX}/applications"
KEYS = f"{API_PREFIX}/api-keys"


@pytest.fixture
async def api(
    store: EventStore, projector_store: EventStore, api_pool: asyncpg.Pool
) -> AsyncIterator[str]:
    async with (
        running_projection(projector_store),
        served_api(store, api_pool, key_cache_ttl_s=0.5) as url,
    ):
        yield url


async def call(
    url: str, method: str, path: str, key: str | None, body: Any = None
) -> tuple[int, Any, Mapping[str, str]]:
    headers = dict(auth_headers(key)) if key is not None else {}
    async with (
        aiohttp.ClientSession(base_url=url, headers=headers) as http,
        http.request(method, path, json=body) as reply,
    ):
        return reply.status, await reply.json(content_type=None), dict(reply.headers)


async def test_every_route_but_the_document_answers_401_without_a_key(api: str) -> None:
    """Each declared route (with placeholder ids) answers 401 without a key; the documents (the
    API's and the event contract) 200."""
    for route in all_routes():
        path = API_PREFIX + route.path.replace("{", "").replace("}", "")
        status, body, headers = await call(api, route.method, path, None)
        if route.name in ("getOpenApi", "getAsyncApi"):
            assert status == 200
            continue
        assert status == 401, (route.name, body)
        assert body["error"]["code"] == "unauthorized"
        assert headers["WWW-Authenticate"] == "Bearer"
    status, body, _ = await call(api, "GET", f"{API_PREFIX}/nowhere", None)
    assert status == 401  # even an unknown path says nothing without a key


@pytest.mark.usefixtures("store")
async def test_bad_keys_are_401(api: str) -> None:
    """A malformed key, an unknown well-formed one and a wrong scheme all answer 401."""
    good = api_key_for(api)
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for key in ("nonsense", forged, "slw_" + "0" * 26 + "_" + "x" * 43):
        status, _, _ = await call(api, "GET", APPS, key)
        assert status == 401, key
    async with (
        aiohttp.ClientSession(base_url=api, headers={"Authorization": f"Basic {good}"}) as http,
        http.get(APPS) as reply,
    ):
        assert reply.status == 401


async def test_roles_read_only_read_write_admin(api: str, store: EventStore) -> None:
    """read-only may GET; read-write may also register and command; only admin deletes and keys."""
    reader = await create_api_key(store, "read-only", "reader")
    writer = await create_api_key(store, "read-write", "writer")
    admin = api_key_for(api)
    body = {"name": "web", "repository_id": "config", "path": "web"}

    assert (await call(api, "GET", APPS, reader))[0] == 200
    status, refused, _ = await call(api, "POST", APPS, reader, body)
    assert status == 403 and refused["error"]["code"] == "forbidden"
    assert "read-only" in refused["error"]["message"]

    status, app, _ = await call(api, "POST", APPS, writer, body)
    assert status == 201
    assert (await call(api, "POST", f"{APPS}/web/sync", writer))[0] == 202
    assert (await call(api, "DELETE", f"{APPS}/web", writer))[0] == 403
    assert (await call(api, "GET", KEYS, writer))[0] == 403
    assert (await call(api, "POST", KEYS, writer, {"role": "admin"}))[0] == 403

    assert (await call(api, "GET", KEYS, admin))[0] == 200
    assert (await call(api, "DELETE", f"{APPS}/web", admin))[0] == 200
    history = await store.read_stream(f"application-{app['application_id']}")
    assert history[0].metadata.actor == "writer"


async def test_keys_are_made_listed_and_revoked_and_revocation_takes_effect(
    api: str, store: EventStore
) -> None:
    """POST /api-keys shows the secret once; the log keeps its hash only; a revoked key gets 401."""
    admin = api_key_for(api)
    status, created, headers = await call(
        api, "POST", KEYS, admin, {"role": "read-only", "name": "dashboard"}
    )
    assert status == 201, created
    secret, key = created["secret"], created["key"]
    assert key["role"] == "read-only" and key["name"] == "dashboard" and not key["revoked"]
    assert key_id_of(secret) == key["key_id"]
    assert headers["Location"].endswith(key["key_id"])

    (recorded,) = await store.read_stream(f"apikey-{key['key_id']}")
    assert recorded.event == ApiKeyCreated(
        key_id=key["key_id"],
        name="dashboard",
        role=vocabulary.KeyRole.READ_ONLY,
        secret_sha256=secret_sha256(secret),
        creator="test-admin",
    )
    raw = await store.pool.fetchval(
        "SELECT payload FROM events WHERE global_position = $1", recorded.global_position
    )
    assert secret.encode() not in bytes(raw)

    assert (await call(api, "GET", APPS, secret))[0] == 200  # cached as valid now
    status, listed, _ = await call(api, "GET", KEYS, admin)
    assert key["key_id"] in {k["key_id"] for k in listed["items"]}
    assert all("secret" not in k and "secret_sha256" not in k for k in listed["items"])

    status, revoked, _ = await call(api, "DELETE", f"{KEYS}/{key['key_id']}", admin)
    assert status == 200 and revoked["revoked"] and revoked["revoker"] == "test-admin"
    assert isinstance((await store.read_stream(f"apikey-{key['key_id']}"))[-1].event, ApiKeyRevoked)

    async def refused() -> bool:
        return (await call(api, "GET", APPS, secret))[0] == 401

    await wait_until(
        refused, within_s=30, what="the revoked key refused"
    )  # within the cache's TTL (0.5 s here)
    again = await call(api, "DELETE", f"{KEYS}/{key['key_id']}", admin)
    assert again[0] == 200  # revoking twice changes nothing
    assert len(await store.read_stream(f"apikey-{key['key_id']}")) == 2
    assert (await call(api, "DELETE", f"{KEYS}/{'0' * 26}", admin))[0] == 404
    status, bad, _ = await call(api, "POST", KEYS, admin, {"role": "root"})
    assert status == 400 and bad["error"]["field"] == "role"


async def test_the_cache_notices_revocation_within_its_ttl(
    store: EventStore, api_pool: asyncpg.Pool
) -> None:
    """With the default 2 s cache, a key revoked behind the API's back stops working within it."""
    async with served_api(store, api_pool, key_cache_ttl_s=2.0) as url:
        key = await create_api_key(store, "read-only", "soon-gone")
        status, _, _ = await call(url, "GET", f"{API_PREFIX}/events?limit=1", key)
        assert status == 200
        key_id = key_id_of(key)
        assert key_id is not None
        await revoke_api_key(store, key_id, revoker="test")
        loop = asyncio.get_running_loop()
        revoked_at = loop.time()

        async def refused() -> bool:
            return (await call(url, "GET", f"{API_PREFIX}/events?limit=1", key))[0] == 401

        await wait_until(refused, within_s=30, what="the revoked key refused")
        # Not a speed assertion: the bound is the cache's design, with a wide margin.
        assert loop.time() - revoked_at < 20
