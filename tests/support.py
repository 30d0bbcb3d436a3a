"""What tests of every kind share: running components for a block, and waiting on a condition."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar, overload

T = TypeVar("T")

Component = Callable[[asyncio.Event], Coroutine[Any, Any, object]]
"""A relay's, consumer's, watcher's… `run(stop)`: works until `stop` is set, then returns."""


@contextlib.asynccontextmanager
async def running(*components: Component, stop_within_s: float = 15.0) -> AsyncIterator[None]:
    """Run `components` until the block ends, then stop them and wait (failing on a hang)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(component(stop)) for component in components]
    try:
        yield
    finally:
        stop.set()
        async with asyncio.timeout(stop_within_s):
            await asyncio.gather(*tasks)


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
    """Check `condition` until it gives a true value, and return that value.

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
        await asyncio.sleep(0.02)
