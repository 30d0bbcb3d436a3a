"""Subscribing over NATS: the read-only subscriber identity, the kit's NATS source (from the
start, a sequence or a time; filtered; resumed from its checkpoint; too far behind).

A nats-server of each test's own, with the sandbox's users (the default subject layout,
which their permissions are written for), and the real relay publishing the test's log.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import api as js_api

from services.relay.relay import Relay
from shared.apikeys import create_key, secret_sha256
from shared.eventlog import EventStore
from shared.events.catalog import ApiKeyCreated
from shared.events.feed import Feed, selection_of
from shared.messaging import ensure_event_stream
from shared.natsauth import SUBSCRIBER_DURABLES, inbox_prefix
from shared.subjects import Subjects
from shared.testing import wait_until
from slipway_sandbox import NatsServer
from slipway_subscriber import (
    FellBehind,
    MemoryCheckpoint,
    NatsSource,
    NotPermitted,
    Received,
    subscribe,
)
from slipway_subscriber.checkpoint import LAST_PART
from tests.support import running
from tests.support.subscriber import all_events, append_story

LAYOUT = Subjects()
DURABLE = SUBSCRIBER_DURABLES[0]


@pytest.fixture
def server() -> Iterator[NatsServer]:
    with NatsServer() as running_server:
        yield running_server


@pytest.fixture
async def admin(server: NatsServer) -> AsyncIterator[NatsClient]:
    client = await nats.connect(server.url)
    await ensure_event_stream(client.jetstream(), LAYOUT)
    yield client
    await client.close()


@pytest.fixture
async def relayed(admin: NatsClient, app_database_url: str, schema: str) -> AsyncIterator[Relay]:
    relay = Relay(
        database_url=app_database_url, schema=schema, js=admin.jetstream(), subjects=LAYOUT
    )
    async with running(relay.run):
        yield relay


async def take(source: Any, checkpoint: Any, count: int) -> list[Received]:
    out: list[Received] = []
    async with asyncio.timeout(20):
        async for received in subscribe(source, checkpoint):
            out.append(received)
            if len(out) == count:
                return out
    return out


@pytest.mark.usefixtures("relayed")
async def test_the_kit_reads_the_whole_log_in_order_and_resumes_from_its_checkpoint(
    server: NatsServer, store: EventStore
) -> None:
    """As the subscriber user: every event once, in commit order, decoded; a restart (a new
    source, the same checkpoint) goes on after the last one handled."""
    await append_story(store)
    await append_story(store)
    expected = [str(e.event_id) for e in await all_events(store)]
    checkpoint = MemoryCheckpoint()
    url = server.url_for("subscriber")
    first = await take(NatsSource(url, durable=DURABLE), checkpoint, 10)
    rest = await take(NatsSource(url, durable=DURABLE), checkpoint, len(expected) - 9)
    # The 10th was handed out but the loop never asked for the 11th: not known to be
    # handled, so it comes again (at least once); the 9 before it do not.
    assert rest[0].id == first[-1].id
    assert [r.id for r in first + rest[1:]] == expected
    assert all(r.event is not None and r.type == r.event.__struct_config__.tag for r in rest)
    assert checkpoint.state.stream_sequence == len(expected) - 1


async def test_filters_and_start_positions(
    server: NatsServer, store: EventStore, relayed: Relay
) -> None:
    """By category and type (subjects); from a stream sequence; from a time."""
    await append_story(store)
    events = await all_events(store)
    url = server.url_for("subscriber")
    await wait_until_relayed(relayed, len(events))
    completed = [str(e.event_id) for e in events if e.event_type == "deployment_completed"]
    got = await take(
        NatsSource(url, durable=DURABLE, categories=["deployment"], types=["deployment_completed"]),
        MemoryCheckpoint(),
        len(completed),
    )
    assert [r.id for r in got] == completed
    from_five = await take(NatsSource(url, durable=DURABLE, start=5), MemoryCheckpoint(), 3)
    assert [r.id for r in from_five] == [str(e.event_id) for e in events[4:7]]
    later = datetime.now(UTC)
    await append_story(store)
    newer = (await all_events(store))[len(events) :]
    by_time = await take(NatsSource(url, durable=DURABLE, start=later), MemoryCheckpoint(), 2)
    assert [r.id for r in by_time] == [str(e.event_id) for e in newer[:2]]


async def wait_until_relayed(relay: Relay, count: int) -> None:
    await wait_until(lambda: relay.published >= count, what=f"{count} events relayed")


async def test_a_checkpoint_behind_the_replay_window_says_how_to_catch_up(
    server: NatsServer, admin: NatsClient, store: EventStore, relayed: Relay
) -> None:
    await append_story(store)
    events = await all_events(store)
    await wait_until_relayed(relayed, len(events))
    checkpoint = MemoryCheckpoint()
    url = server.url_for("subscriber")
    await take(NatsSource(url, durable=DURABLE), checkpoint, 3)
    # The stream's limits dropped what the subscriber had not read yet.
    await admin.jetstream().purge_stream(LAYOUT.events_stream, keep=2)
    with pytest.raises(FellBehind, match="read over HTTP") as caught:
        await take(NatsSource(url, durable=DURABLE), checkpoint, 1)
    # The last one handled: the third was handed out, never confirmed.
    assert caught.value.cursor == f"{events[1].tx_id}:{events[1].global_position}"


class Recorder:
    """A connection that keeps the asynchronous errors (permission violations) it is sent."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(str(exc).lower())

    def refused(self, subject: str) -> bool:
        return any("permissions violation" in e and subject.lower() in e for e in self.errors)


async def test_the_subscriber_identity_only_reads_through_its_own_durables(
    server: NatsServer, admin: NatsClient
) -> None:
    """It may not publish an event, create or change the stream, nor create, read or delete a
    service's consumer; it may create and delete its own."""
    js_admin = admin.jetstream()
    await js_admin.add_consumer(
        LAYOUT.events_stream, js_api.ConsumerConfig(durable_name="notifier")
    )
    recorder = Recorder()
    client = await nats.connect(
        server.url_for("subscriber"),
        inbox_prefix=inbox_prefix("subscriber"),
        error_cb=recorder.on_error,
        allow_reconnect=False,
    )
    try:
        js = client.jetstream(timeout=1.0)
        subject = LAYOUT.event("deployment-evil", "deployment_planned")
        await client.publish(subject, b"{}", headers={"Nats-Msg-Id": str(uuid.uuid4())})
        await client.flush()
        await wait_until(lambda: recorder.refused(subject), what="the publish refused")
        assert (await js_admin.stream_info(LAYOUT.events_stream)).state.messages == 0

        stream = LAYOUT.events_stream
        for attempt, denied in (
            (js.add_consumer(stream, js_api.ConsumerConfig(durable_name="notifier")), "notifier"),
            (js.consumer_info(stream, "notifier"), "notifier"),
            (js.delete_consumer(stream, "notifier"), "notifier"),
            (js.add_stream(name="SLIPWAY_EVENTS", subjects=[LAYOUT.all_events]), "stream.create"),
            (js.purge_stream(stream), "stream.purge"),
        ):
            with pytest.raises((TimeoutError, nats.errors.Error)):
                await attempt
            await wait_until(partial(recorder.refused, denied), what=f"{denied} refused")
        assert (await js_admin.consumer_info(stream, "notifier")).name == "notifier"

        # Its own durable: created, read and deleted.
        own = js_api.ConsumerConfig(durable_name=DURABLE, ack_policy=js_api.AckPolicy.NONE)
        await js.add_consumer(stream, own)
        assert (await js.consumer_info(stream, DURABLE)).name == DURABLE
        assert await js.delete_consumer(stream, DURABLE)
    finally:
        await client.close()


@pytest.mark.usefixtures("admin")
async def test_the_kit_names_a_durable_its_user_may_not_own_instead_of_retrying(
    server: NatsServer,
) -> None:
    """A newcomer's `--durable mine`: NATS refuses the subscriber user, and the kit says so
    (naming the durable and the ones it owns) rather than retrying for ever."""
    source = NatsSource(server.url_for("subscriber"), durable="mine")
    with pytest.raises(NotPermitted, match=r"'mine' is not one this NATS user may own"):
        await take(source, MemoryCheckpoint(), 1)


async def test_the_kit_renders_cdevents_from_nats_as_the_server_does(
    server: NatsServer, store: EventStore, relayed: Relay
) -> None:
    """`format="cdevents"` over NATS: the same documents, in the same order, as the server
    sends over SSE and webhooks; joined part-way it reads the stream's earlier events."""
    await append_story(store)
    events = await all_events(store)
    await wait_until_relayed(relayed, len(events))

    async def read_stream(stream_id: str, count: int) -> list[Any]:
        return await store.read_stream(stream_id, limit=count)

    expected = await expected_cdevents(store, events[10:])
    source = NatsSource(
        server.url_for("subscriber"),
        durable=DURABLE,
        start=11,
        format="cdevents",
        read_stream=read_stream,
    )
    got = await take(source, MemoryCheckpoint(), len(expected))
    assert [json.dumps(r.document, sort_keys=True) for r in got] == expected
    assert all(r.type.startswith("dev.cdevents.") and r.event is None for r in got)

    # Stopped inside an event that maps to several CDEvents, and restarted from the
    # checkpoint: the event's other parts still come, none twice.
    split = next(i for i, r in enumerate(got) if r.position.part != LAST_PART)
    checkpoint = MemoryCheckpoint()
    head = await take(source, checkpoint, split + 2)  # the last one handed out, not handled
    rest = await take(source, checkpoint, len(expected) - split - 1)
    assert [r.id for r in head[:-1] + rest] == [r.id for r in got]


async def expected_cdevents(store: EventStore, events: list[Any]) -> list[str]:
    async def read_stream(stream_id: str, count: int) -> list[Any]:
        return await store.read_stream(stream_id, limit=count)

    feed = Feed(selection_of(fmt="cdevents"), read_stream)
    return [
        json.dumps(json.loads(d.body), sort_keys=True)
        for e in events
        for d in await feed.documents(e)
    ]


async def test_a_key_hash_never_reaches_a_nats_reader(
    server: NatsServer, store: EventStore, relayed: Relay
) -> None:
    """`ApiKeyCreated` as the subscriber identity reads it: without `secret_sha256`; the kit
    still decodes it (the hash as "")."""
    key, secret = await create_key(store, role="read-only", name="dashboard")
    await wait_until_relayed(relayed, 1)
    client = await nats.connect(
        server.url_for("subscriber"), inbox_prefix=inbox_prefix("subscriber")
    )
    try:
        js = client.jetstream(timeout=5.0)
        subscription = await js.pull_subscribe(
            LAYOUT.all_events, durable=DURABLE, stream=LAYOUT.events_stream
        )
        (message,) = await subscription.fetch(1, timeout=5.0)
    finally:
        await client.close()
    assert message.headers is not None and message.headers["Nats-Msg-Id"]
    data = json.loads(message.data)
    assert data["key_id"] == key.key_id and "secret_sha256" not in data
    assert secret_sha256(secret).encode() not in message.data
    (got,) = await take(
        NatsSource(server.url_for("subscriber"), durable=SUBSCRIBER_DURABLES[1]),
        MemoryCheckpoint(),
        1,
    )
    assert isinstance(got.event, ApiKeyCreated)
    assert got.event.key_id == key.key_id and got.event.secret_sha256 == ""
