"""What tests of every kind share: the test's servers in one value (`Backends`), a control
config to write, running components for a block, and waiting on a condition."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

import yaml
from nats.aio.client import Client as NatsClient

from services.relay.relay import Relay
from shared.eventlog import EventStore
from shared.messaging import ensure_event_stream
from shared.subjects import Subjects

T = TypeVar("T")


@dataclass(frozen=True)
class Backends:
    """The real servers one test talks to, seen through its own schema and subjects
    (the `backends` fixture): what every harness and service process is built over."""

    app_database_url: str
    schema: str
    nats_url: str
    nc: NatsClient
    store: EventStore
    subjects: Subjects

    def relay(self) -> Relay:
        """An in-process relay publishing this test's events to its subjects."""
        return Relay(
            database_url=self.app_database_url,
            schema=self.schema,
            js=self.nc.jetstream(),
            subjects=self.subjects,
        )

    async def ensure_event_stream(self) -> None:
        await ensure_event_stream(self.nc.jetstream(), self.subjects)


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


def write_control_yaml(path: Path, **spec: Any) -> Path:
    """A control config (`slipway.yaml`) of project `test` with the other `spec` fields."""
    document = {
        "apiVersion": "slipway.dev/v1",
        "kind": "Slipway",
        "spec": {"project": "test", **spec},
    }
    path.write_text(yaml.safe_dump(document))
    return path


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
