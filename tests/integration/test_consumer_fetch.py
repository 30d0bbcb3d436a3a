"""The consumer's pull (`shared.consumer.fetching.fetch`) against a real nats-server: what
nats-py's `fetch` returns, without a task per message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Generator
from time import monotonic
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js import api as js_api

from shared.consumer.fetching import fetch

STREAM = "FETCHTEST"


@pytest.fixture
async def pull(nc: NatsClient, test_id: str) -> AsyncIterator[JetStreamContext.PullSubscription]:
    """A pull subscription of a durable on a stream of this test's own."""
    js = nc.jetstream()
    stream = f"{STREAM}_{test_id}".upper()
    await js.add_stream(name=stream, subjects=[f"{test_id}.>"])
    await js.add_consumer(
        stream, js_api.ConsumerConfig(durable_name="d", ack_policy=js_api.AckPolicy.EXPLICIT)
    )
    subscription = await js.pull_subscribe_bind(durable="d", stream=stream)
    try:
        yield subscription
    finally:
        await subscription.unsubscribe()
        await js.delete_stream(stream)


async def publish(nc: NatsClient, test_id: str, count: int) -> list[bytes]:
    """`count` messages stored in the stream, each payload its number."""
    js = nc.jetstream()
    payloads = [str(n).encode() for n in range(count)]
    for payload in payloads:
        await js.publish(f"{test_id}.x", payload)
    return payloads


async def test_it_takes_what_the_server_has_up_to_the_batch_in_order(
    nc: NatsClient, test_id: str, pull: JetStreamContext.PullSubscription
) -> None:
    payloads = await publish(nc, test_id, 30)
    first = await fetch(pull, 20, within_s=5)
    rest = await fetch(pull, 20, within_s=5)
    assert [m.data for m in first] == payloads[:20]
    assert [m.data for m in rest] == payloads[20:]
    for message in first + rest:
        await message.ack()


async def test_a_caught_up_fetch_returns_the_next_message_when_it_comes(
    nc: NatsClient, test_id: str, pull: JetStreamContext.PullSubscription
) -> None:
    """Not when the batch is full or the time is up: a consumer's latency."""

    async def later() -> None:
        await asyncio.sleep(0.3)  # the message comes while the fetch waits
        await publish(nc, test_id, 1)

    publishing = asyncio.create_task(later())
    started = monotonic()
    messages = await fetch(pull, 64, within_s=10)
    await publishing
    assert [m.data for m in messages] == [b"0"]
    assert monotonic() - started < 5
    await messages[0].ack()


async def test_nothing_within_the_time_is_a_timeout(
    pull: JetStreamContext.PullSubscription,
) -> None:
    started = monotonic()
    with pytest.raises(NatsTimeoutError):
        await fetch(pull, 64, within_s=0.5)
    assert 0.4 < monotonic() - started < 3


async def test_messages_already_received_cost_no_task_each(
    nc: NatsClient, test_id: str, pull: JetStreamContext.PullSubscription
) -> None:
    """nats-py's fetch makes two tasks per message (next_msg, wait_for): 0.1 ms of CPU each."""
    await publish(nc, test_id, 50)
    loop = asyncio.get_running_loop()
    created: list[str] = []
    default = loop.get_task_factory()

    def counting(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        created.append(getattr(coro, "__qualname__", "?"))
        if default is not None:
            return default(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    try:
        messages = await fetch(pull, 64, within_s=5)
    finally:
        loop.set_task_factory(default)
    assert len(messages) == 50
    assert len(created) <= 2, created
    for message in messages:
        await message.ack()


class _WithoutInternals:
    """A real pull subscription seen through a nats-py whose private attributes moved:
    only the public `fetch` is there."""

    def __init__(self, subscription: JetStreamContext.PullSubscription) -> None:
        self.fetch = subscription.fetch


async def test_a_nats_py_without_the_internals_gets_the_library_s_fetch(
    nc: NatsClient, test_id: str, pull: JetStreamContext.PullSubscription
) -> None:
    payloads = await publish(nc, test_id, 3)
    shim: Any = _WithoutInternals(pull)
    got = await fetch(shim, 10, within_s=5)
    assert [m.data for m in got] == payloads
    for message in got:
        await message.ack()
