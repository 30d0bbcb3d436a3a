"""One pull of a batch from a JetStream pull consumer, without a task per message.

It asks the server for up to `batch` messages as nats-py's `fetch` does (one
request, `no_wait` with `expires`: the server sends what it has, or the first
message to come, then ends the request with a status), and returns what
came. nats-py's own `fetch` waits for every message of the answer with
`next_msg`, which creates two tasks, a timer and a random id per message:
about 0.1 ms of this process's CPU per message here (`benchmarks/eventlog.py`'s
e2e section), most of a consumer's cost on a busy machine. Here the messages
already received are taken from the subscription's queue as they are, and
only a wait for more costs a task.

It reads nats-py's pull subscription and its queue from their private
attributes (`_sub`, `_nms`, `_deliver`, `_pending_queue`, `_pending_size`);
`tests/integration/test_consumer_fetch.py` holds it to the library's `fetch`, and a
nats-py without them gets the library's `fetch` (with a warning) rather than a crash.
"""

from __future__ import annotations

import asyncio
import json
from time import monotonic
from typing import Final

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError

from shared.logs import get_logger

__all__ = ["fetch"]

log = get_logger(__name__)

_ENDS_REQUEST = frozenset(
    {js_api.StatusCode.NO_MESSAGES, js_api.StatusCode.REQUEST_TIMEOUT, js_api.StatusCode.CONFLICT}
)
"""Statuses with which the server ends a pull request (nothing more will come for it)."""


async def fetch(
    subscription: JetStreamContext.PullSubscription, batch: int, within_s: float
) -> list[Msg]:
    """Up to `batch` messages: those the server has now, or the first within `within_s`.

    Raises nats' `TimeoutError` when none came, `APIError` for a status that is
    not a pull's end (as nats-py's `fetch`).
    """
    if batch < 1 or within_s <= 0:
        raise ValueError("a fetch takes at least one message and a positive timeout")
    if not _has_internals(subscription):
        # A nats-py whose insides moved: the library's own pull, slower but the same answers.
        return await subscription.fetch(batch, timeout=within_s)
    queue: asyncio.Queue[Msg] = subscription._sub._pending_queue
    deadline = monotonic() + within_s
    # Messages of an earlier request that came after it gave up are this fetch's first.
    messages: list[Msg] = []
    while len(messages) < batch and not queue.empty():
        message = _take(subscription, queue.get_nowait())
        if _status(message) is None:  # a status here ended an earlier request
            messages.append(message)
    if len(messages) == batch:
        return messages
    # Without `expires` the server answers at once; with it, it waits for the first message.
    await _request(subscription, batch - len(messages), None if messages else deadline)
    while len(messages) < batch:
        came = await _next(subscription, queue, deadline)
        if came is None:  # out of time
            break
        status = _status(came)
        if status is None:
            messages.append(came)
        elif status in _ENDS_REQUEST:
            if messages or monotonic() >= deadline:
                break
            # Nothing came for that request (another one's answer, or a request that
            # ended early): wait for the first message with what is left of the time.
            await _request(subscription, batch, deadline)
        elif status != js_api.StatusCode.CONTROL_MESSAGE:  # a heartbeat: nothing to do
            raise APIError.from_msg(came)
    if not messages:
        raise NatsTimeoutError
    return messages


_INTERNALS: Final = ("_pending_queue", "_pending_size")
_warned = False  # the missing internals are logged once per process


def _has_internals(subscription: JetStreamContext.PullSubscription) -> bool:
    """Whether this nats-py has the private attributes read here (else, said once)."""
    sub = getattr(subscription, "_sub", None)
    found = all(hasattr(subscription, name) for name in ("_nc", "_nms", "_deliver")) and all(
        hasattr(sub, name) for name in _INTERNALS
    )
    global _warned
    if not found and not _warned:
        _warned = True
        log.warning("nats_pull_internals_missing", fallback="nats-py fetch")
    return found


async def _request(
    subscription: JetStreamContext.PullSubscription, batch: int, deadline: float | None
) -> None:
    """Ask for `batch` messages; with a deadline, the server waits for the first until then."""
    request: dict[str, int | bool] = {"batch": batch, "no_wait": True}
    if deadline is not None:
        # As nats-py: a little under the time left, so the server ends it before we give up.
        request["expires"] = max(int((deadline - monotonic()) * 1e9) - 100_000, 1_000_000)
    await subscription._nc.publish(
        subscription._nms, json.dumps(request).encode(), subscription._deliver
    )


async def _next(
    subscription: JetStreamContext.PullSubscription, queue: asyncio.Queue[Msg], deadline: float
) -> Msg | None:
    """The next message of the subscription's queue: at once if there is one, else the first
    to come before `deadline` (None if none does)."""
    if queue.empty():
        left = deadline - monotonic()
        if left <= 0:
            return None
        try:
            async with asyncio.timeout(left):
                return _take(subscription, await queue.get())
        except TimeoutError:
            return None
    return _take(subscription, queue.get_nowait())


def _take(subscription: JetStreamContext.PullSubscription, message: Msg) -> Msg:
    """Account for a message taken off the queue, as the subscription's own reads do."""
    subscription._sub._pending_size -= len(message.data)
    subscription._sub._pending_queue.task_done()
    return message


def _status(message: Msg) -> str | None:
    """The status header of a server's status message; None for a stream message."""
    return message.headers.get(js_api.Header.STATUS) if message.headers else None
