"""The console's unregistered applications page over the real API and its projections:
what it lists (escaped), who sees the Register form, and that registering takes a config
off the list through the API's own registration."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest

from services.api.routes import API_PREFIX
from shared.apikeys import create_api_key
from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import ApplicationConfigDiscovered
from tests.support.api import api_key_for, auth_headers, running_projection, served_api
from tests.support.console import ConsoleClient, csrf_of

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
async def api(
    store: EventStore, api_pool: asyncpg.Pool, projector_store: EventStore
) -> AsyncIterator[str]:
    found = [
        ApplicationConfigDiscovered(
            repository_id="config", path=path, config_filename="app.pipecd.yaml", name=name,
            labels=(("team", SCRIPT),) if name == SCRIPT else (), commit_hash="c0ffee1234",
        )
        for path, name in (("shop/prd", "shop-prd"), ("evil", SCRIPT))
    ]  # fmt: skip
    appended = await store.append("repository-config", new_events(found), expected_version=ANY)
    async with running_projection(projector_store), served_api(store, api_pool) as url:
        async with (
            aiohttp.ClientSession(base_url=url, headers=auth_headers(api_key_for(url))) as http,
            http.get(
                f"{API_PREFIX}/unregistered-applications",
                params={"min_position": appended.global_positions[-1]},
            ) as reply,
        ):
            assert reply.status == 200
        yield url


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr data-config="([0-9a-f]+)">', page)


async def test_a_viewer_sees_the_list_escaped_and_no_register_form(
    api: str, store: EventStore
) -> None:
    key = await create_api_key(store, "read-only", "viewer")
    async with ConsoleClient(api) as browser:
        await browser.sign_in(key)
        status, page = await browser.page("/console/unregistered")
        assert status == 200, page
        shop, evil = _rows(page)
        assert "shop/prd/app.pipecd.yaml" in page and "c0ffee1" in page
        assert SCRIPT not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "team=" not in page  # a label the label rule refuses is never recorded
        assert "Register</button>" not in page
        # The form is hidden from a viewer, and its post refused like the API's.
        status, refused = await browser.post(
            f"/console/unregistered-applications/{shop}/register", {"csrf": csrf_of(page)}
        )
        assert status == 403, refused
        assert _rows((await browser.page("/console/unregistered"))[1]) == [shop, evil]


async def test_a_writer_registers_one_and_it_leaves_the_list(api: str, store: EventStore) -> None:
    key = await create_api_key(store, "read-write", "writer")
    async with ConsoleClient(api) as browser:
        await browser.sign_in(key)
        status, page = await browser.page("/console/unregistered")
        shop, evil = _rows(page)
        assert page.count("Register</button>") == 2
        # A repository's name that is no application name: refused naming the field.
        status, refused = await browser.post(
            f"/console/unregistered-applications/{evil}/register", {"csrf": csrf_of(page)}
        )
        assert status == 400 and "name" in refused, refused
        status, _ = await browser.post(
            f"/console/unregistered-applications/{shop}/register",
            {"csrf": csrf_of(page), "name": "shop"},
        )
        assert status == 303
        async with browser.http.post(
            f"/console/unregistered-applications/{evil}/register",
            data={"csrf": csrf_of(page), "name": "evil"},
            allow_redirects=False,
        ) as reply:
            assert reply.status == 303
            target = reply.headers["Location"]
        assert urlsplit(target).path == "/console/unregistered"
        assert parse_qs(urlsplit(target).query)["done"] == ["registered evil"]
        status, after = await browser.page(target)
        assert (status, _rows(after)) == (200, [])
        assert "registered evil" in after
        status, app = await browser.page("/console/applications/shop")
        assert status == 200 and "config:shop/prd/app.pipecd.yaml" in app
