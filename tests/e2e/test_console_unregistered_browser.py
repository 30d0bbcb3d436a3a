"""A person registers an unregistered application from the console, in headless Chromium.

The API is served with its projections live (no whole sandbox: the page reads the
`discovered_configs` view, fed here with what the gitwatcher records). A config whose
name is a `<script>` stays text; a viewer gets no Register button; a writer names one
and clicks Register, lands back on the list with the config gone, and finds the
application among the registered ones.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg

from services.api.routes import API_PREFIX
from shared.apikeys import create_api_key
from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import ApplicationConfigDiscovered
from tests.support.api import api_key_for, auth_headers, running_projection, served_api
from tests.support.browser import axe_violations, chromium, shoot

SCRIPT = "<script>window.pwned = 1</script>"


async def test_a_writer_registers_from_the_unregistered_page_and_a_viewer_cannot(
    store: EventStore, api_pool: asyncpg.Pool, projector_store: EventStore
) -> None:
    found = [
        ApplicationConfigDiscovered(
            repository_id="config", path=path, config_filename=".pipe.yaml", name=name,
            labels=(("env", "dev"),), commit_hash="c0ffee1234",
        )
        for path, name in (("shop/prd", "shop-prd"), ("evil", SCRIPT))
    ]  # fmt: skip
    appended = await store.append("repository-config", new_events(found), expected_version=ANY)
    viewer = await create_api_key(store, "read-only", "viewer")
    writer = await create_api_key(store, "read-write", "writer")
    async with (
        running_projection(projector_store),
        served_api(store, api_pool) as api,
        chromium() as browser,
    ):
        async with (
            aiohttp.ClientSession(base_url=api, headers=auth_headers(api_key_for(api))) as http,
            http.get(
                f"{API_PREFIX}/unregistered-applications",
                params={"min_position": appended.global_positions[-1]},
            ) as reply,
        ):
            assert reply.status == 200  # the view holds both configs
        problems: list[str] = []

        async def signed_in(key: str) -> Any:
            page = await (await browser.new_context()).new_page()
            page.on(
                "console",
                lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
            )
            page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
            await page.goto(f"{api}/console/sign-in?next=/console/unregistered")
            await page.fill("#api_key", key)
            await page.click("form.signin button[type=submit]")
            await page.wait_for_url("**/console/unregistered")
            return page

        page = await signed_in(viewer)
        assert await page.locator("tr[data-config]").count() == 2
        assert await page.get_by_text(SCRIPT).count() == 1  # shown as text
        assert await page.evaluate("window.pwned") is None  # and never run
        assert await page.get_by_role("button", name="Register").count() == 0
        await shoot(page, "unregistered-viewer")
        assert await axe_violations(page) == []

        page = await signed_in(writer)
        assert await page.get_by_role("button", name="Register").count() == 2
        row = page.locator("tr[data-config]", has_text="shop/prd/.pipe.yaml")
        await row.get_by_role("textbox", name="Name").fill("shop")
        await row.get_by_role("button", name="Register").click()
        await page.wait_for_url("**/console/unregistered?done=registered+shop*")
        await page.get_by_role("status").get_by_text("registered shop").wait_for()
        assert await page.locator("tr[data-config]").count() == 1
        await shoot(page, "unregistered-registered")
        assert await axe_violations(page) == []
        await page.get_by_role("link", name="Applications", exact=True).click()
        await page.locator('tr[data-app="shop"]').wait_for()
        assert problems == []
