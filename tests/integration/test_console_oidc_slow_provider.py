"""A role check stuck at the provider holds no lock and no pooled connection, and asks once
(`console/oidc_sessions.py`).

The real local provider sits behind a real HTTP proxy (`tests/support/held_proxy.py`) that
holds its token endpoint until the test releases it: a provider taking its time. While
one request's role check waits there, the other requests of that session (on the same
replica and on another) wait for its answer without a connection, so an API whose pool
has two connections still serves everyone else; the provider is asked once, and everyone
gets the new role when it answers. A check that takes longer than its budget is refused
and the session kept; a claim left by a replica that died mid-check lapses with its lease;
signing out meanwhile waits for nothing, and the late answer does not revive the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from services.api.console.oidc import OidcLogin, OidcSettings
from services.api.console.oidc_sessions import OidcSessions
from shared.db import create_pool
from shared.eventlog import EventStore
from shared.testing import wait_until
from tests.support.api import served_api
from tests.support.console import ConsoleClient
from tests.support.held_proxy import HeldProxy
from tests.support.oidc import (
    PROVIDER_WARNINGS,
    Provider,
    console_settings,
    held_token_endpoint,
    later,
    local_provider,
    signed_in,
    signed_in_session,
)

pytestmark = PROVIDER_WARNINGS

PAGE = "/console/events"  # any page: the header names the person and their role


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with local_provider() as running:
        yield running


@pytest.fixture
async def proxy(provider: Provider) -> AsyncIterator[HeldProxy]:
    async with held_token_endpoint(provider) as running:
        yield running


def settings(proxy: HeldProxy) -> OidcSettings:
    """The console's provider is the proxy (it names itself the issuer)."""
    return console_settings(proxy.url)


async def test_a_check_stuck_at_the_provider_holds_no_connection_and_asks_once(
    store: EventStore,
    api_pool: asyncpg.Pool,
    api_database_url: str,
    schema: str,
    provider: Provider,
    proxy: HeldProxy,
) -> None:
    acquired = 0

    async def count(_: asyncpg.Connection) -> None:
        nonlocal acquired
        acquired += 1

    small = await create_pool(api_database_url, schema=schema, max_size=2, setup=count)
    await provider.set_user("alice", {"groups": ["devs"]})
    await provider.set_user("bob", {"groups": ["viewers"]})
    try:
        async with (
            served_api(store, small, oidc=settings(proxy)) as api,
            served_api(store, api_pool, oidc=settings(proxy), admin_name="admin-2") as other,
            ConsoleClient(api) as alice,
            ConsoleClient(api) as bob,
        ):
            session_id = await signed_in_session(alice, provider, "alice")
            await signed_in_session(bob, provider, "bob")
            cookie = alice.session_cookie()
            await provider.set_user("alice", {"groups": ["viewers"]})  # demoted
            await later(api_pool, session_id, 3600)  # the role is due for a check
            proxy.hold()
            asked = proxy.arrived
            first = asyncio.create_task(alice.page(PAGE))
            await wait_until(lambda: proxy.arrived == asked + 1, what="the check at the provider")
            before = acquired
            again = [asyncio.create_task(alice.page(PAGE)) for _ in range(4)]
            async with ConsoleClient(other, headers={"Cookie": f"slipway_session={cookie}"}) as x:
                elsewhere = asyncio.create_task(x.page(PAGE))
                # Each of the four has read its session; none may keep a connection while it
                # waits (a lock held across the provider's answer would keep both: the
                # check's own, and the next request's, waiting for that lock).
                await wait_until(
                    lambda: acquired >= before + 4,
                    within_s=5,
                    what="every request of the session got a connection for its read",
                )
                await wait_until(
                    lambda: small.get_size() == small.get_idle_size(),
                    within_s=5,
                    what="no connection held while the provider is asked",
                )
                for _ in range(3):  # another person's pages are served meanwhile
                    status, html = await asyncio.wait_for(bob.page(PAGE), 5)
                    assert status == 200 and "bob (read-only)" in html, html
                waiting = [first, *again, elsewhere]
                assert not any(task.done() for task in waiting)
                assert proxy.arrived == asked + 1
                proxy.release()
                answers = await asyncio.wait_for(asyncio.gather(*waiting), 10)
        for status, html in answers:
            assert status == 200 and "alice (read-only)" in html, html
        assert proxy.arrived == asked + 1  # asked once, for both replicas and six requests
    finally:
        await small.close()


async def test_a_check_over_its_budget_is_refused_and_the_session_kept(
    store: EventStore, api_pool: asyncpg.Pool, provider: Provider, proxy: HeldProxy
) -> None:
    oidc = settings(proxy)
    session_id = await signed_in(store, api_pool, provider, oidc, "carol", ["sre"])
    await provider.set_user("carol", {"groups": ["devs"]})
    sessions = OidcSessions(api_pool, OidcLogin(oidc), lease_s=0.4)
    proxy.hold()
    await later(api_pool, session_id, 901)
    assert await sessions.current(session_id) is None  # 0.3 s, then refused
    row = await api_pool.fetchrow(
        "SELECT role, checking_by FROM api_console_oidc_sessions WHERE session_id = $1",
        session_id,
    )
    assert row is not None and row["role"] == "admin" and row["checking_by"] is None
    proxy.release()  # the provider answers again: the next request checks
    person = await sessions.current(session_id)
    assert person is not None and person.role == "read-write"


async def test_a_claim_left_by_a_replica_that_died_lapses_with_its_lease(
    store: EventStore, api_pool: asyncpg.Pool, provider: Provider, proxy: HeldProxy
) -> None:
    oidc = settings(proxy)
    session_id = await signed_in(store, api_pool, provider, oidc, "dave", ["sre"])
    await provider.set_user("dave", {"groups": ["viewers"]})
    sessions = OidcSessions(api_pool, OidcLogin(oidc), lease_s=0.4)
    await api_pool.execute(
        "UPDATE api_console_oidc_sessions SET checked_at = clock_timestamp() - interval '1 hour',"
        " checking_by = 'died', checking_until = clock_timestamp() + interval '0.4 s'"
        " WHERE session_id = $1",
        session_id,
    )
    asked = proxy.arrived
    # While the dead replica's claim is live, a request waits for it, and is refused when
    # it lapses (fail closed: nobody answered).
    assert await sessions.current(session_id) is None
    assert proxy.arrived == asked
    # Once it has lapsed, the next request claims the check and asks.
    person = await sessions.current(session_id)
    assert person is not None and person.role == "read-only"
    assert proxy.arrived == asked + 1


async def test_signing_out_during_a_check_is_not_held_up_and_the_answer_is_not_written(
    store: EventStore, api_pool: asyncpg.Pool, provider: Provider, proxy: HeldProxy
) -> None:
    oidc = settings(proxy)
    session_id = await signed_in(store, api_pool, provider, oidc, "erin", ["devs"])
    sessions = OidcSessions(api_pool, OidcLogin(oidc))
    await later(api_pool, session_id, 901)
    proxy.hold()
    asked = proxy.arrived
    check = asyncio.create_task(sessions.current(session_id))
    await wait_until(lambda: proxy.arrived == asked + 1, what="the check at the provider")
    await asyncio.wait_for(sessions.close(session_id), 5)  # no lock to wait for
    proxy.release()
    assert await check is None
    rows = await api_pool.fetch(
        "SELECT * FROM api_console_oidc_sessions WHERE session_id = $1", session_id
    )
    assert rows == []  # the provider's answer did not bring the session back
