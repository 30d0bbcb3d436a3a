"""An OIDC session's role follows the provider's groups (`console/oidc_sessions.py`).

Against the real local provider (`oidc-provider-mock`, which issues refresh tokens and
answers userinfo with the person's current claims): the role holds for the role-check
interval, then the refresh token is traded and the groups read again — a person moved to
another group gets that group's role, one removed from every mapped group (or whose
tokens the provider revoked) loses the session. A provider that issues no refresh token
leaves nothing to check with: the session ends at its first check. Signing out ends the
session's row, so the cookie is worthless on every replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import asyncpg
import pytest

from services.api.console.oidc import OidcLogin, OidcSettings
from services.api.console.oidc_sessions import OidcSessions
from shared.eventlog import EventStore
from tests.support.api import served_api
from tests.support.console import ConsoleClient, csrf_of
from tests.support.oidc import (
    PROVIDER_WARNINGS,
    Provider,
    console_settings,
    later,
    local_provider,
    signed_in_session,
)

pytestmark = PROVIDER_WARNINGS

PAGE = "/console/events"  # any page: the header names the person and their role


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with local_provider() as running:
        yield running


def settings(provider: Provider, role_check_s: float) -> OidcSettings:
    return console_settings(provider.issuer, role_check_s=role_check_s)


@pytest.fixture
async def checking_always(
    store: EventStore, api_pool: asyncpg.Pool, provider: Provider
) -> AsyncIterator[str]:
    """The API with a role check on every request (the interval's end, reached at once)."""
    async with served_api(store, api_pool, oidc=settings(provider, 0.0)) as url:
        yield url


async def test_a_person_moved_or_removed_from_a_group_gets_the_new_role_at_the_next_check(
    checking_always: str, provider: Provider, api_pool: asyncpg.Pool
) -> None:
    await provider.set_user("alice", {"groups": ["devs"]})
    async with ConsoleClient(checking_always) as browser:
        session_id = await signed_in_session(browser, provider, "alice")
        status, html = await browser.page(PAGE)
        assert status == 200 and "alice (read-write)" in html, html
        await provider.set_user("alice", {"groups": ["viewers"]})  # demoted at the provider
        status, html = await browser.page(PAGE)
        assert status == 200 and "alice (read-only)" in html, html
        await provider.set_user("alice", {"groups": ["sre", "viewers"]})
        status, html = await browser.page(PAGE)
        assert status == 200 and "alice (admin)" in html, html
        await provider.set_user("alice", {"groups": ["contractors"]})  # in no mapped group
        status, _ = await browser.page(PAGE)
        assert status == 303  # back to the sign-in page
    rows = await api_pool.fetch(
        "SELECT * FROM api_console_oidc_sessions WHERE session_id = $1", session_id
    )
    assert rows == []  # ended for good: a group given back later needs a new sign-in


async def test_a_revoked_grant_ends_the_session(checking_always: str, provider: Provider) -> None:
    await provider.set_user("bob", {"groups": ["devs"]})
    async with ConsoleClient(checking_always) as browser:
        await signed_in_session(browser, provider, "bob")
        status, html = await browser.page(PAGE)
        assert status == 200 and "bob (read-write)" in html, html
        await provider.revoke_tokens("bob")
        status, _ = await browser.page(PAGE)
        assert status == 303


async def test_the_role_holds_for_the_interval_then_is_checked(
    store: EventStore, api_pool: asyncpg.Pool, provider: Provider
) -> None:
    oidc = settings(provider, 900.0)
    await provider.set_user("carol", {"groups": ["sre"]})
    async with served_api(store, api_pool, oidc=oidc) as url, ConsoleClient(url) as browser:
        session_id = await signed_in_session(browser, provider, "carol")
        await provider.set_user("carol", {"groups": ["viewers"]})
        status, html = await browser.page(PAGE)
        assert status == 200 and "carol (admin)" in html, html  # not checked yet
    sessions = OidcSessions(api_pool, OidcLogin(oidc))
    await later(api_pool, session_id, 890)  # signed in (and checked) under 10 s ago
    within = await sessions.current(session_id)
    assert within is not None and within.role == "admin"
    await later(api_pool, session_id, 11)
    after = await sessions.current(session_id)
    assert after is not None and after.role == "read-only"
    # The provider down when the next check is due: refused (fail closed), the session kept.
    await later(api_pool, session_id, 901)
    down = OidcSessions(api_pool, OidcLogin(replace(oidc, issuer="http://127.0.0.1:1")))
    assert await down.current(session_id) is None
    assert await sessions.current(session_id) is not None  # back up: checked
    # Checked just now: the role holds until the next interval ends.
    await provider.set_user("carol", {"groups": []})
    await later(api_pool, session_id, 198)
    again = await sessions.current(session_id)
    assert again is not None and again.role == "read-only"
    await later(api_pool, session_id, 703)
    assert await sessions.current(session_id) is None


async def test_without_a_refresh_token_the_session_ends_at_its_first_check(
    store: EventStore, api_pool: asyncpg.Pool
) -> None:
    with local_provider(refresh_tokens=False) as plain:
        oidc = settings(plain, 900.0)
        await plain.set_user("dave", {"groups": ["devs"]})
        async with served_api(store, api_pool, oidc=oidc) as url, ConsoleClient(url) as browser:
            session_id = await signed_in_session(browser, plain, "dave")
            status, html = await browser.page(PAGE)
            assert status == 200 and "dave (read-write)" in html, html
        sessions = OidcSessions(api_pool, OidcLogin(oidc))
        await later(api_pool, session_id, 800)
        assert await sessions.current(session_id) is not None
        await later(api_pool, session_id, 101)
        assert await sessions.current(session_id) is None


async def test_signing_out_ends_the_session_everywhere(
    checking_always: str, provider: Provider, store: EventStore, api_pool: asyncpg.Pool
) -> None:
    await provider.set_user("erin", {"groups": ["devs"]})
    async with ConsoleClient(checking_always) as browser:
        await signed_in_session(browser, provider, "erin")
        cookie = browser.session_cookie()
        status, html = await browser.page(PAGE)
        assert status == 200, html
        status, _ = await browser.post("/console/sign-out", {"csrf": csrf_of(html)})
        assert status == 303
    # The same cookie, kept by someone, on another replica: the row is gone.
    async with (
        served_api(store, api_pool, oidc=settings(provider, 900.0), admin_name="admin-2") as other,
        ConsoleClient(other, headers={"Cookie": f"slipway_session={cookie}"}) as replay,
    ):
        status, _ = await replay.page(PAGE)
        assert status == 303
