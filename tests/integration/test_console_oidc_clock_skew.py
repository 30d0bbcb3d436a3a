"""Replicas whose clocks disagree share role checks fairly (`console/oidc_sessions.py`).

Two replicas' `OidcSessions` on one database, the real local provider behind the held
proxy (`tests/support/held_proxy.py`), one replica's clock 30 s off (its `DatabaseClock`'s). A
claim's lease and every "has it lapsed, is it due" are on the database's clock: a replica
running ahead does not take over another's live claim (which would send one refresh token
to the provider twice at once), and one running behind does not wait on a lapsed claim.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import structlog

from services.api.console.db_clock import DatabaseClock
from services.api.console.oidc import OidcLogin, OidcSettings
from services.api.console.oidc_sessions import OidcSessions
from shared.db import create_pool
from shared.eventlog import EventStore
from shared.testing import wait_until
from tests.support.held_proxy import HeldProxy
from tests.support.oidc import (
    PROVIDER_WARNINGS,
    Provider,
    console_settings,
    held_token_endpoint,
    later,
    local_provider,
    signed_in,
)

pytestmark = PROVIDER_WARNINGS

SKEW_S = 30.0


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with local_provider() as running:
        yield running


@pytest.fixture
async def proxy(provider: Provider) -> AsyncIterator[HeldProxy]:
    async with held_token_endpoint(provider) as running:
        yield running


def settings(proxy: HeldProxy) -> OidcSettings:
    return console_settings(proxy.url)


async def due_session(
    store: EventStore, api_pool: asyncpg.Pool, provider: Provider, oidc: OidcSettings, who: str
) -> str:
    """`who` signed in as an admin, then moved to the viewers, their role due for a check."""
    session_id = await signed_in(store, api_pool, provider, oidc, who, ["sre"])
    await provider.set_user(who, {"groups": ["viewers"]})
    await later(api_pool, session_id, 3600)  # due by any of the clocks here
    return session_id


async def test_a_replica_whose_clock_runs_ahead_does_not_take_over_a_live_claim(
    store: EventStore,
    api_pool: asyncpg.Pool,
    api_database_url: str,
    schema: str,
    provider: Provider,
    proxy: HeldProxy,
) -> None:
    oidc = settings(proxy)
    session_id = await due_session(store, api_pool, provider, oidc, "frank")
    looked = 0

    async def count(_: asyncpg.Connection) -> None:
        nonlocal looked
        looked += 1

    own_pool = await create_pool(api_database_url, schema=schema, max_size=2, setup=count)
    try:
        on_time = OidcSessions(api_pool, OidcLogin(oidc))
        ahead = OidcSessions(
            own_pool, OidcLogin(oidc), clock=DatabaseClock(lambda: time.time() + SKEW_S)
        )
        proxy.hold()
        asked = proxy.arrived
        first = asyncio.create_task(on_time.current(session_id))
        await wait_until(lambda: proxy.arrived == asked + 1, what="the first claim's check")
        second = asyncio.create_task(ahead.current(session_id))
        # Its read, its claim, then a read of the row while it waits (had it taken the
        # claim over, it would be at the provider instead).
        await wait_until(
            lambda: looked >= 3 or proxy.arrived > asked + 1,
            what="the replica ahead tried to claim the check",
        )
        assert proxy.arrived == asked + 1
        proxy.release()
        answers = await asyncio.wait_for(asyncio.gather(first, second), 10)
    finally:
        await own_pool.close()
    assert [a.role if a else None for a in answers] == ["read-only", "read-only"]
    assert proxy.arrived == asked + 1  # one check of the refresh token


async def test_a_replica_whose_clock_runs_behind_sees_a_lapsed_claim_as_lapsed(
    store: EventStore, api_pool: asyncpg.Pool, provider: Provider, proxy: HeldProxy
) -> None:
    oidc = settings(proxy)
    session_id = await due_session(store, api_pool, provider, oidc, "grace")
    # Another replica claimed the check and died; its claim lapsed a second ago.
    await api_pool.execute(
        "UPDATE api_console_oidc_sessions SET checking_by = 'died',"
        " checking_until = clock_timestamp() - interval '1 s' WHERE session_id = $1",
        session_id,
    )
    behind = OidcSessions(
        api_pool, OidcLogin(oidc), clock=DatabaseClock(lambda: time.time() - SKEW_S)
    )
    asked = proxy.arrived
    with structlog.testing.capture_logs() as logged:
        person = await asyncio.wait_for(behind.current(session_id), 5)  # not 29 s of waiting
        await asyncio.wait_for(behind.current(session_id), 5)
    assert person is not None and person.role == "read-only"
    assert proxy.arrived == asked + 1
    warned = [e for e in logged if e["event"] == "console_clock_off_from_the_database"]
    assert len(warned) == 1 and -SKEW_S - 2 < warned[0]["ahead_s"] < -SKEW_S + 2, logged
