"""Consumer runtime under faults: outages waited out, slow handlers, settle errors, pruning."""

from __future__ import annotations

import asyncio

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NatsClient

from services.relay.relay import Relay
from shared.consumer import EventConsumer
from shared.errors import Unavailable
from shared.eventlog import ANY, EventStore, new_events
from shared.events import RecordedEvent
from shared.events.catalog import ApplicationDisabled
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support import running
from tests.support.relay import consumer_of, counting_consumer, counting_handler
from tests.support.tcp_proxy import PostgresCutProxy


async def _append_one(store: EventStore, app: str = "x") -> None:
    await store.append(
        f"application-{app}",
        new_events([ApplicationDisabled(application_id=app)]),
        expected_version=ANY,
    )


@pytest.mark.usefixtures("counts_table")
async def test_an_outage_longer_than_max_deliver_is_waited_out_and_handled_once(
    nc: NatsClient, store: EventStore, subjects: Subjects, relay: Relay
) -> None:
    """Unavailable for 3× max_deliver deliveries: no dead letter, handled once when it is back."""
    outage_left = 9

    async def handler(event: RecordedEvent, conn: asyncpg.Connection) -> None:
        nonlocal outage_left
        if outage_left:
            outage_left -= 1
            raise Unavailable("cannot connect to PostgreSQL: connection refused")
        await counting_handler(event, conn)

    consumer = consumer_of(
        nc.jetstream(),
        store,
        subjects,
        handler,
        name="waits",
        max_deliver=3,
        backoff_s=(0.05,),
    )
    await _append_one(store)
    async with running(relay.run, consumer.run):
        await wait_until(lambda: consumer.stats.handled == 1, what="the event handled")
    assert outage_left == 0
    assert consumer.stats.waited_out == 9
    assert consumer.stats.dead_lettered == 0
    assert await store.pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    assert await store.pool.fetchval("SELECT sum(n) FROM handled_counts") == 1


@pytest.mark.usefixtures("counts_table")
async def test_a_database_refusing_connections_longer_than_max_deliver_is_waited_out(
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    relay: Relay,
    app_database_url: str,
) -> None:
    """A handler's database behind a proxy that refuses: 5 deliveries, no dead letter, then once."""
    host, port = app_database_url.rsplit("@", 1)[1].split("/")[0].rsplit(":", 1)
    async with PostgresCutProxy(host, int(port)) as proxy:
        proxy.refusing = True
        refused = 0

        async def handler(event: RecordedEvent, conn: asyncpg.Connection) -> None:
            nonlocal refused
            try:
                downstream = await asyncpg.connect(proxy.url(app_database_url))
            except Exception:
                refused += 1
                raise
            try:
                await downstream.fetchval("SELECT 1")
            finally:
                await downstream.close()
            await counting_handler(event, conn)

        consumer = consumer_of(
            nc.jetstream(),
            store,
            subjects,
            handler,
            name="downstream",
            max_deliver=3,
            backoff_s=(0.05,),
        )
        await _append_one(store)
        async with running(relay.run, consumer.run):
            await wait_until(lambda: refused >= 5, what="five deliveries refused")
            proxy.refusing = False
            await wait_until(lambda: consumer.stats.handled == 1, what="the event handled")
    assert consumer.stats.dead_lettered == 0
    assert await store.pool.fetchval("SELECT sum(n) FROM handled_counts") == 1


async def test_real_failures_after_an_outage_are_counted_from_the_first_real_one(
    nc: NatsClient, store: EventStore, subjects: Subjects, relay: Relay
) -> None:
    """Outage deliveries do not count: a real bug is dead-lettered after max_deliver of its own."""
    outage_left = 5
    real_failures = 0

    async def handler(_event: RecordedEvent, _conn: asyncpg.Connection) -> None:
        nonlocal outage_left, real_failures
        if outage_left:
            outage_left -= 1
            raise ConnectionRefusedError("database down")
        real_failures += 1
        raise RuntimeError("a bug")

    consumer = consumer_of(
        nc.jetstream(),
        store,
        subjects,
        handler,
        name="buggy",
        max_deliver=3,
        backoff_s=(0.05,),
    )
    await _append_one(store)
    async with running(relay.run, consumer.run):
        await wait_until(lambda: consumer.stats.dead_lettered == 1, what="the event dead-lettered")
    assert real_failures == 3
    row = await store.pool.fetchrow("SELECT deliveries, error FROM dead_letters")
    assert row["error"] == "RuntimeError: a bug"
    assert row["deliveries"] == 8


async def test_a_handler_slower_than_the_ack_wait_is_not_redelivered(
    nc: NatsClient, store: EventStore, subjects: Subjects, relay: Relay
) -> None:
    """Two replicas, ack wait 1 s, a 2.5 s handler: it runs once (in_progress heartbeats)."""
    calls = 0

    async def slow(_event: RecordedEvent, _conn: asyncpg.Connection) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(2.5)  # the handler's own work, longer than the ack wait

    def replica() -> EventConsumer:
        return consumer_of(
            nc.jetstream(),
            store,
            subjects,
            slow,
            name="slow",
            ack_wait_s=1.0,
        )

    first, second = replica(), replica()
    await _append_one(store)
    async with running(relay.run, first.run, second.run):
        await wait_until(
            lambda: first.stats.handled + second.stats.handled == 1, what="the event handled"
        )
    assert calls == 1
    assert first.stats.skipped_duplicates + second.stats.skipped_duplicates == 0


@pytest.mark.usefixtures("counts_table")
async def test_a_failing_ack_is_logged_not_raised(
    nats_url: str,
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    relay: Relay,
) -> None:
    """The connection a message came on is gone before its ack: handled, committed, no crash."""
    consumer = counting_consumer(nc.jetstream(), store, subjects, name="lost-ack")
    await consumer.ensure()
    await _append_one(store)
    async with running(relay.run):
        fetcher = await nats.connect(nats_url)
        subscription = await fetcher.jetstream().pull_subscribe_bind(
            durable="lost-ack", stream=subjects.events_stream
        )
        messages = await subscription.fetch(1, timeout=10)
        await fetcher.close()
    await consumer.handle_batch(messages)
    assert consumer.stats.handled == 1
    assert consumer.stats.settle_errors == 1
    assert await store.pool.fetchval("SELECT sum(n) FROM handled_counts") == 1


async def test_inbox_pruning_deletes_only_this_consumers_old_rows(
    nc: NatsClient, store: EventStore, subjects: Subjects
) -> None:
    """Rows older than the retention go, in batches; recent rows and other consumers' stay."""
    await store.pool.execute(
        "INSERT INTO consumer_inbox (consumer, event_id, handled_at) "
        "SELECT c, gen_random_uuid(), clock_timestamp() - make_interval(days => d) "
        "FROM (VALUES ('counter', 8), ('counter', 8), ('counter', 30), ('counter', 1), "
        "('counter', 0), ('other', 30)) AS v(c, d)"
    )
    consumer = counting_consumer(
        nc.jetstream(), store, subjects, inbox_retention_s=7 * 24 * 3600.0, inbox_prune_batch=2
    )
    assert await consumer.prune_inbox() == 3
    left = await store.pool.fetch(
        "SELECT consumer, extract(day FROM clock_timestamp() - handled_at)::int AS age "
        "FROM consumer_inbox ORDER BY consumer, age"
    )
    assert [(r["consumer"], r["age"]) for r in left] == [
        ("counter", 0),
        ("counter", 1),
        ("other", 30),
    ]
