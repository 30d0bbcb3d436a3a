"""Deployment leases: claim, renew, take-over after expiry, and the fencing token on appends."""

from __future__ import annotations

import asyncpg
import pytest

from services.executor.leases import LeaseLost, Leases
from shared.errors import ConcurrencyConflict
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import NewEvent
from shared.events.catalog import DeploymentCancelRequested, DeploymentCompleted


async def register(pool: asyncpg.Pool, *deployment_ids: str) -> None:
    async with pool.acquire() as conn:
        for deployment_id in deployment_ids:
            await Leases.register(conn, deployment_id, "app")


async def expire(pool: asyncpg.Pool, deployment_id: str) -> None:
    await pool.execute(
        "UPDATE executor_leases SET expires_at = clock_timestamp() - interval '1 second' "
        "WHERE deployment_id = $1",
        deployment_id,
    )


def cancel(deployment_id: str) -> list[NewEvent]:
    return new_events([DeploymentCancelRequested(deployment_id=deployment_id)])


async def test_a_deployment_is_claimed_by_one_replica_at_a_time(store: EventStore) -> None:
    """Two replicas claiming together split the runnable deployments; none is taken twice."""
    await register(store.pool, "d1", "d2", "d3")
    a, b = Leases(store, "a", ttl_s=30), Leases(store, "b", ttl_s=30)
    first = await a.claim(2)
    second = await b.claim(5)
    assert [x.deployment_id for x in first] == ["d1", "d2"]
    assert [x.deployment_id for x in second] == ["d3"]
    assert await a.claim(5, running=["d1", "d2"]) == []
    assert {lease.token for lease in first + second} == {1}


async def test_an_expired_lease_is_taken_over_with_a_new_token(store: EventStore) -> None:
    """After the holder's lease expires another replica takes it, with token + 1."""
    await register(store.pool, "d1")
    a, b = Leases(store, "a", ttl_s=30), Leases(store, "b", ttl_s=30)
    [old] = await a.claim(1)
    assert await b.claim(1) == []
    await expire(store.pool, "d1")
    [new] = await b.claim(1)
    assert (new.holder, new.token) == ("b", old.token + 1)
    assert not await a.renew(old)
    assert await b.renew(new)


async def test_a_stale_holder_cannot_append(store: EventStore) -> None:
    """The fencing token: once taken over, the old holder's append is refused and writes nothing."""
    await register(store.pool, "d1")
    await store.append("deployment-d1", cancel("d1"), expected_version=NO_STREAM)
    a, b = Leases(store, "a", ttl_s=30), Leases(store, "b", ttl_s=30)
    [old] = await a.claim(1)
    await expire(store.pool, "d1")
    with pytest.raises(LeaseLost):  # expired, even before anyone took it
        await a.append_fenced(old, "deployment-d1", cancel("d1"), expected_version=0)
    [new] = await b.claim(1)
    with pytest.raises(LeaseLost):
        await a.append_fenced(old, "deployment-d1", cancel("d1"), expected_version=0)
    assert await store.stream_version("deployment-d1") == 0
    await b.append_fenced(new, "deployment-d1", cancel("d1"), expected_version=0)
    with pytest.raises(ConcurrencyConflict):  # the holder's folded version is stale
        await b.append_fenced(new, "deployment-d1", cancel("d1"), expected_version=0)


async def test_completion_closes_the_lease_and_release_frees_it(store: EventStore) -> None:
    """DeploymentCompleted closes the lease in its append; a released lease is claimable at once."""
    await register(store.pool, "d1", "d2")
    a, b = Leases(store, "a", ttl_s=30), Leases(store, "b", ttl_s=30)
    one, two = await a.claim(2)
    done = new_events(
        [
            DeploymentCompleted(
                deployment_id="d1",
                application_id="app",
                status=vocabulary.DeploymentStatus("SUCCESS"),
            )
        ]
    )
    await a.append_fenced(one, "deployment-d1", done, expected_version=NO_STREAM)
    assert await a.open_count() == 1
    assert not await a.renew(one)
    await a.release(two)
    assert [x.deployment_id for x in await b.claim(5)] == ["d2"]
