"""Fault test: `kill -9` relay processes at random moments while events are appended."""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import ApplicationDisabled
from shared.messaging import MSG_ID, ensure_event_stream
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support import Backends
from tests.support.processes import service_env, service_processes
from tests.support.relay import counting_consumer, create_counts_table

pytestmark = pytest.mark.slow


async def test_relay_killed_at_random_loses_nothing(
    backends: Backends,
    database_url: str,
    schema: str,
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
    tmp_path: Path,
) -> None:
    """After repeated kill -9 of two relay replicas, every event reached JetStream; a raw
    subscriber saw each at least once and the inbox-guarded projection exactly once."""
    rng = random.Random(20261128)
    js = nc.jetstream()
    await ensure_event_stream(js, subjects)
    await create_counts_table(database_url, schema)

    seen_raw: list[str] = []

    async def record(msg: Msg) -> None:
        seen_raw.append(msg.headers[MSG_ID] if msg.headers else "")

    raw = await js.subscribe(subjects.all_events, ordered_consumer=True, cb=record)

    consumer = counting_consumer(js, store, subjects, name="projection", ack_wait_s=2)
    stop = asyncio.Event()
    consumer_task = asyncio.create_task(consumer.run(stop))

    appended: list[uuid.UUID] = []

    async def writer() -> None:
        for i in range(150):
            batch = new_events([ApplicationDisabled(application_id=f"a{i}")] * rng.randint(1, 8))
            await store.append(f"application-w{i % 7}", batch, expected_version=ANY)
            appended.extend(e.event_id for e in batch)
            await asyncio.sleep(rng.uniform(0, 0.02))  # pacing: appends spread over the kills

    try:
        async with service_processes(service_env(backends), tmp_path) as services:
            relays = [services.start("relay") for _ in range(2)]
            writing = asyncio.create_task(writer())
            kills = 0
            while not writing.done():
                await asyncio.sleep(rng.uniform(0.05, 0.4))  # the fault: a kill at a random moment
                victim = rng.randrange(len(relays))
                await relays[victim].kill_9()
                kills += 1
                relays[victim] = services.start("relay")
            await writing

            # Every logged event: the writer's, and each relay process's ServiceStarted
            # (shared/lifecycle.py; a relay killed with -9 records no stop).
            expected = {str(e) for e in appended}

            async def all_arrived() -> bool:
                logged = await store.pool.fetch("SELECT event_id FROM events")
                expected.update(str(r["event_id"]) for r in logged)
                handled = await store.pool.fetchval("SELECT count(*) FROM handled_counts")
                return expected <= set(seen_raw) and handled == len(expected)

            await wait_until(
                all_arrived,
                within_s=30,
                what=lambda: (
                    f"missing after kills: {len(expected - set(seen_raw))} of {len(expected)}"
                ),
            )
            # Before the relays stop: each records its stop, which the last one never publishes.
            info = await js.stream_info(subjects.events_stream)
            seen = set(seen_raw)
    finally:
        stop.set()
        await consumer_task
        await raw.unsubscribe()

    assert kills >= 3
    assert info.state.messages == len(expected), "JetStream deduplicated republished events"
    assert {r["n"] for r in await store.pool.fetch("SELECT n FROM handled_counts")} == {1}
    assert seen == expected
