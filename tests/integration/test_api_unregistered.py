"""Unregistered applications over the API and the CLI: the list, its pages and who may read
it, and registering one through the one registration command."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.api.routes import API_PREFIX
from shared.apikeys import create_api_key
from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import ApplicationConfigDiscovered
from tests.support.api import api_key_for, auth_headers, running_projection, served_api
from tests.support.cli import slipway

UNREGISTERED = f"{API_PREFIX}/unregistered-applications"
APPS = f"{API_PREFIX}/applications"


def found(path: str, name: str, filename: str = "app.pipecd.yaml") -> ApplicationConfigDiscovered:
    return ApplicationConfigDiscovered(
        repository_id="config",
        path=path,
        config_filename=filename,
        name=name,
        labels=(("env", "dev"),),
        commit_hash="c0ffee",
    )


async def discover(store: EventStore, *events: ApplicationConfigDiscovered) -> int:
    """Append what the gitwatcher would; the position of the last."""
    recorded = await store.append(
        "repository-config", new_events(list(events)), expected_version=ANY
    )
    return recorded.global_positions[-1]


@pytest.fixture
async def api(
    store: EventStore, projector_store: EventStore, api_pool: asyncpg.Pool
) -> AsyncIterator[str]:
    async with running_projection(projector_store), served_api(store, api_pool) as url:
        yield url


async def call(
    url: str, method: str, path: str, *, key: str | None = None, body: Any = None, **params: Any
) -> tuple[int, Any]:
    headers = auth_headers(api_key_for(url) if key is None else key) if key != "" else {}
    async with (
        aiohttp.ClientSession(base_url=url, headers=headers) as http,
        http.request(method, path, json=body, params=params or None) as reply,
    ):
        return reply.status, await reply.json()


async def test_the_list_pages_in_discovery_order_for_any_reader_and_filters_by_repository(
    api: str, store: EventStore
) -> None:
    seen = await discover(
        store, found("a", "a"), found("b", "b"), found("c", "c"), found("", "root", ".pipe.yaml")
    )
    viewer = await create_api_key(store, "read-only", "viewer")
    status, first = await call(api, "GET", UNREGISTERED, key=viewer, limit=2, min_position=seen)
    assert status == 200, first
    assert [i["path"] for i in first["items"]] == ["a", "b"]
    item = first["items"][0]
    assert item["repository_id"] == "config" and item["config_filename"] == "app.pipecd.yaml"
    assert (item["name"], item["labels"], item["commit_hash"]) == ("a", {"env": "dev"}, "c0ffee")
    assert len(item["id"]) == 32 and item["discovered_at"]
    status, rest = await call(api, "GET", UNREGISTERED, key=viewer, cursor=first["next_cursor"])
    # The root is '.', as registering takes it.
    assert [(i["path"], i["name"]) for i in rest["items"]] == [("c", "c"), (".", "root")]
    assert rest["next_cursor"] is None

    status, other = await call(api, "GET", UNREGISTERED, repository_id="other")
    assert (status, other["items"]) == (200, [])
    status, bad = await call(api, "GET", UNREGISTERED, cursor="x")
    assert (status, bad["error"]["field"]) == (400, "cursor")
    status, bad = await call(api, "GET", UNREGISTERED, limit=0)
    assert (status, bad["error"]["field"]) == (400, "limit")
    # The application list's rule: a key, of any role.
    status, refused = await call(api, "GET", UNREGISTERED, key="")
    assert (status, refused["error"]["code"]) == (401, "unauthorized")


async def test_registering_one_is_the_registration_and_takes_it_off_until_deleted(
    api: str, store: EventStore
) -> None:
    seen = await discover(store, found("web/dev", "web-dev"), found("bad", "Not A Name!"))
    status, listed = await call(api, "GET", UNREGISTERED, min_position=seen)
    web, bad = listed["items"]

    viewer = await create_api_key(store, "read-only", "viewer")
    status, refused = await call(api, "POST", f"{UNREGISTERED}/{web['id']}/register", key=viewer)
    assert (status, refused["error"]["code"]) == (403, "forbidden")

    writer = await create_api_key(store, "read-write", "writer")
    status, app = await call(api, "POST", f"{UNREGISTERED}/{web['id']}/register", key=writer)
    assert status == 201, app
    assert (app["name"], app["repository_id"], app["path"], app["config_filename"]) == (
        "web-dev",
        "config",
        "web/dev",
        "app.pipecd.yaml",
    )
    status, listed = await call(api, "GET", UNREGISTERED, min_position=app["position"])
    assert [i["id"] for i in listed["items"]] == [bad["id"]]
    status, gone = await call(api, "POST", f"{UNREGISTERED}/{web['id']}/register")
    assert (status, gone["error"]["code"]) == (404, "not_found")

    # A repository's name is checked as any registration's, and may be replaced.
    status, invalid = await call(api, "POST", f"{UNREGISTERED}/{bad['id']}/register")
    assert (status, invalid["error"]["field"]) == (400, "name")
    status, renamed = await call(
        api, "POST", f"{UNREGISTERED}/{bad['id']}/register", body={"name": "web-dev"}
    )
    assert (status, renamed["error"]["code"]) == (409, "name_taken")

    # Deleting the application hands its config back to the list.
    status, deleted = await call(api, "DELETE", f"{APPS}/web-dev")
    assert status == 200, deleted
    status, listed = await call(api, "GET", UNREGISTERED, min_position=deleted["position"])
    assert sorted(i["id"] for i in listed["items"]) == sorted([web["id"], bad["id"]])


async def test_slipway_app_unregistered_lists_and_add_from_unregistered_registers(
    api: str, store: EventStore
) -> None:
    seen = await discover(store, found("shop/prd", "shop-prd"), found("x", "x\x1b[2J"))
    status, _ = await call(api, "GET", UNREGISTERED, min_position=seen)
    listed = await slipway("app", "unregistered", api_url=api)
    assert listed.code == 0, listed.err
    header, *rows = listed.out.splitlines()
    assert header.split()[:4] == ["ID", "NAME", "REPOSITORY", "PATH"]
    assert rows[0].split()[1:6] == ["shop-prd", "config", "shop/prd", "app.pipecd.yaml", "env=dev"]
    assert "\x1b" not in listed.out and "x\\x1b[2J" in rows[1]
    as_json = await slipway("app", "unregistered", "--json", "--repo", "config", api_url=api)
    shop = json.loads(as_json.out)[0]
    assert shop["path"] == "shop/prd"

    added = await slipway("app", "add", "--from-unregistered", shop["id"], api_url=api)
    assert (added.code, added.out.startswith("registered shop-prd (id ")) == (0, True), added.err
    status, app = await call(api, "GET", f"{APPS}/shop-prd")
    assert (status, app["path"], app["config_filename"]) == (200, "shop/prd", "app.pipecd.yaml")

    mixed = await slipway("app", "add", "--from-unregistered", "x", "--path", "p", api_url=api)
    assert (mixed.code, "leave out --path" in mixed.err) == (2, True)
    missing = await slipway("app", "add", "--name", "web", api_url=api)
    assert (missing.code, "--repo, --path" in missing.err) == (2, True)
    unknown = await slipway("app", "add", "--from-unregistered", shop["id"], api_url=api)
    assert (unknown.code, "404 not_found" in unknown.err) == (1, True)
