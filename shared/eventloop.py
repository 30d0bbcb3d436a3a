"""The event loop a Slipway process runs on: uvloop by default, asyncio's own on request.

Every service is an asyncio program whose hot paths are small socket reads and writes
(asyncpg's protocol, nats-py's, aiohttp's), so the loop's own overhead — the selector,
the transports, the scheduling of callbacks — is a fixed share of each event's cost.
uvloop (libuv, in C) does that work in a fraction of the Python loop's time; the same
code runs on both (nothing here depends on a loop's private API), so the choice is a
setting (`SLIPWAY_EVENT_LOOP`), and `asyncio` is the way back should a library ever
misbehave on uvloop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["EventLoopKind", "loop_factory", "run"]

T = TypeVar("T")

EventLoopKind = Literal["uvloop", "asyncio"]


def loop_factory(kind: EventLoopKind) -> Callable[[], asyncio.AbstractEventLoop]:
    """What creates a loop of `kind`."""
    if kind == "uvloop":
        import uvloop  # a dependency of the project; imported only where it is used

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], kind: EventLoopKind = "uvloop") -> T:
    """`asyncio.run(main)` on a loop of `kind`."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)
