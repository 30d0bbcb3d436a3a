"""Helpers for tests of code built on Slipway, in the spirit of `structlog.testing`.

`wait_until` is how a test waits for something asynchronous to happen: it checks the
thing itself (a stored event, a process's state, an HTTP answer) until it holds, and
fails naming what never happened. A test never sleeps a guessed time instead.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

POLL_INTERVAL_S = 0.02
"""How often `wait_until` looks: short, since each look is cheap next to the waits it serves."""


# Two overloads, so that mypy infers `T` from an async condition too (from the union
# alone it infers `Never` for `Callable[[], Awaitable[bool]]`).
@overload
async def wait_until(
    condition: Callable[[], Awaitable[T]],
    within_s: float = ...,
    what: str | Callable[[], str] = ...,
) -> T: ...
@overload
async def wait_until(
    condition: Callable[[], T],
    within_s: float = ...,
    what: str | Callable[[], str] = ...,
) -> T: ...
async def wait_until(
    condition: Callable[[], T | Awaitable[T]],
    within_s: float = 15.0,
    what: str | Callable[[], str] = "condition",
) -> T:
    """Check `condition` (plain or async) until it gives a true value, and return that value.

    An AssertionError naming `what` after `within_s`; `what` may be a function,
    called then, to say how far it got.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"{said}: not reached within {within_s:g} s")
        await asyncio.sleep(POLL_INTERVAL_S)
