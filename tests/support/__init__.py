"""What tests of every kind share: the test's servers in one value (`Backends`), a control
config to write, and running components for a block. Waiting on a condition is
`shared.testing.wait_until`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from nats.aio.client import Client as NatsClient

from services.relay.relay import Relay
from shared.eventlog import EventStore
from shared.messaging import ensure_event_stream
from shared.subjects import Subjects


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
