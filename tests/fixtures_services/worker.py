"""A minimal service for the runtime tests: one unit of work per NATS request.

Each request carries an event id; the worker answers "started" at once, works
for `SLIPWAY_WORK_S` seconds, then records the id in `consumer_inbox`, so a
test can tell whether in-flight work finished before the process exited.

Run it as `python -m tests.fixtures_services.worker`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta

from shared.logs import bind, get_logger
from shared.runtime import Component, ServiceRuntime, run_service, unless_stopped
from shared.settings import ServiceSettings

NAME = "test-worker"

log = get_logger(__name__)


class WorkerSettings(ServiceSettings, frozen=True, kw_only=True):
    work_s: Annotated[float, Meta(ge=0)] = 1.0


async def setup(runtime: ServiceRuntime[WorkerSettings]) -> Sequence[Component]:
    # Subscribed before the service reports ready, so no request is missed.
    sub = await runtime.nc.subscribe(runtime.subjects.request("worker", "work"))

    async def worker(stop: asyncio.Event) -> None:
        while (msg := await unless_stopped(stop, sub.next_msg(timeout=None))) is not None:
            event_id = uuid.UUID(msg.data.decode())
            with bind(event_id=str(event_id)):
                log.info("work_started")
                await msg.respond(b"started")
                await asyncio.sleep(runtime.settings.work_s)  # stands in for real work
                await runtime.pool.execute(
                    "INSERT INTO consumer_inbox (consumer, event_id) VALUES ($1, $2)",
                    NAME,
                    event_id,
                )
                log.info("work_finished")
        await sub.unsubscribe()

    return [worker]


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, WorkerSettings, setup))
