"""`python -m services.relay`: wiring only — settings, connections, run until SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal

import nats

from shared.messaging import ensure_event_stream
from shared.relay import Relay
from shared.subjects import Subjects


async def main() -> None:
    database_url = os.environ["SLIPWAY_DATABASE_URL"]
    schema = os.environ.get("SLIPWAY_DATABASE_SCHEMA", "slipway")
    subjects = Subjects(os.environ.get("SLIPWAY_SUBJECT_PREFIX", "slipway"))
    nc = await nats.connect(
        os.environ.get("SLIPWAY_NATS_URL", "nats://127.0.0.1:4222"), max_reconnect_attempts=-1
    )
    js = nc.jetstream()
    await ensure_event_stream(js, subjects)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Relay(database_url=database_url, schema=schema, js=js, subjects=subjects).run(stop)
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
