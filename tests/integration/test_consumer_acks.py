"""A consumer's acks: sent after the inbox commit without waiting for the server's answers.

No confirmation is waited for (it would be a round trip in every batch's round, a reply
inbox and a timer per message), and none is needed: a lost ack is a redelivery that the
inbox recognises. The acks still settle the messages.
"""

from __future__ import annotations

import nats
import pytest
from nats.aio.client import Client as NatsClient

from services.relay.relay import Relay
from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import ApplicationDisabled
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support import running
from tests.support.relay import counting_consumer

EVENTS = 5


@pytest.mark.usefixtures("counts_table")
async def test_a_batchs_acks_settle_its_messages_without_answers_awaited(
    nats_url: str, nc: NatsClient, store: EventStore, subjects: Subjects, relay: Relay
) -> None:
    consumer = counting_consumer(nc.jetstream(), store, subjects, name="acks", ack_wait_s=30.0)
    await consumer.ensure()
    await store.append(
        "application-a",
        new_events([ApplicationDisabled(application_id="a") for _ in range(EVENTS)]),
        expected_version=ANY,
    )
    async with running(relay.run):
        await wait_until(lambda: relay.published == EVENTS, what="the events published")
    fetcher = await nats.connect(nats_url)
    try:
        subscription = await fetcher.jetstream().pull_subscribe_bind(
            durable="acks", stream=subjects.events_stream
        )
        messages = await subscription.fetch(EVENTS, timeout=10)
        assert len(messages) == EVENTS
        received = fetcher.stats["in_msgs"]
        await consumer.handle_batch(messages)
        await fetcher.flush()  # every ack is at the server; a PONG is not a message
        # ack_sync would have had one answer per message come back.
        assert fetcher.stats["in_msgs"] == received
    finally:
        await fetcher.close()
    assert consumer.stats.handled == EVENTS
    assert consumer.stats.settle_errors == 0

    async def settled() -> bool:
        info = await nc.jetstream().consumer_info(subjects.events_stream, "acks")
        return (info.num_ack_pending, info.num_pending) == (0, 0)

    await wait_until(settled, what="every message acked at the server")
    assert await store.pool.fetchval("SELECT sum(n) FROM handled_counts") == EVENTS
