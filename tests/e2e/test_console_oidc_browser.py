"""A person signs in to the console through a real OIDC provider in headless Chromium.

The provider (`http://localhost:…`) is another site than the console (`127.0.0.1`), so
the browser applies SameSite rules as it would in production: the pending sign-in's cookie
must survive the provider's cross-site redirect back, and the session cookie (Strict) must
be sent once the callback's page moves on.
"""

from __future__ import annotations

import asyncpg

from services.api.console.oidc import OidcSettings
from shared.eventlog import EventStore
from tests.support.api import served_api
from tests.support.browser import axe_violations, chromium, shoot
from tests.support.oidc import PROVIDER_WARNINGS, local_provider

pytestmark = PROVIDER_WARNINGS


async def test_a_person_signs_in_with_the_providers_button(
    store: EventStore, api_pool: asyncpg.Pool
) -> None:
    with local_provider() as provider:
        await provider.set_user(
            "erin@example.com", {"email": "erin@example.com", "groups": ["devs"]}
        )
        oidc = OidcSettings(
            issuer=provider.issuer,
            client_id="slipway-console",
            client_secret="s3cret",
            scopes=("openid", "email"),
            groups_claim="groups",
            group_roles={"devs": "read-write"},
        )
        async with served_api(store, api_pool, oidc=oidc) as api, chromium() as browser:
            page = await browser.new_page()
            problems: list[str] = []
            page.on(
                "console",
                lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
            )
            page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
            await page.goto(f"{api}/console/events")  # a page that needs a session
            await page.wait_for_url("**/console/sign-in?next=*")
            await shoot(page, "00-sign-in-with-oidc")
            assert await axe_violations(page) == []
            await page.get_by_role("link", name="Sign in with single sign-on (OIDC)").click()
            await page.wait_for_url(f"{provider.issuer}/oauth2/authorize?*")
            await page.fill("input[name=sub]", "erin@example.com")
            await page.get_by_role("button", name="Authorize").click()
            await page.wait_for_url(f"{api}/console/events")  # where the person was going
            await page.get_by_text("erin@example.com (read-write)").wait_for()
            assert problems == []
