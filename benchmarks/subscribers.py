"""The subscribers benchmark: events/s to an SSE client and to the NATS kit, beside the relay.

`python -m benchmarks.subscribers --json` starts one nats-server and one durable
PostgreSQL (fsync on) and runs, in this process, the relay (into the default
subject layout, whose `subscriber` identity the kit logs in as) and the API.
Sections:

1. `relay`: `EVENTS` events appended (100 per transaction) with the relay
   stopped, then the relay started: published events/s over that backlog —
   the rate nothing downstream of NATS can beat;
2. `backlog`: the same events read from the start by the kit over NATS
   (`NatsSource`, native format, checkpoint in memory) and by the kit over
   SSE (`SseSource`, `GET /api/v1/events/stream`): events/s each;
3. `live`: both following while `LIVE` more events are appended, 10 per
   transaction, as fast as one writer commits: for each event the time from
   its append's commit to its arrival at each subscriber (p50/p99, ms).

Progress goes to stderr; stdout has the report only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from time import perf_counter
from typing import Any, Final

from benchmarks._report import percentile, print_report, progress, quiet_logging
from benchmarks._servers import Servers, running_servers
from services.api.app import ApiServer, create_app
from services.relay.relay import Relay
from shared.apikeys import create_api_key
from shared.db import create_pool
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events.catalog import DeploymentTriggered, default_registry
from shared.events.vocabulary import Trigger
from shared.messaging import ensure_event_stream
from shared.natsauth import SUBSCRIBER_DURABLES
from shared.subjects import Subjects
from slipway_subscriber import MemoryCheckpoint, NatsSource, SseSource, subscribe
from slipway_subscriber.subscribe import Source

EVENTS: Final = 5000
LIVE: Final = 1000
TIMEOUT_S: Final = 300.0


def _triggered() -> DeploymentTriggered:
    deployment = uuid.uuid4().hex[:12]
    return DeploymentTriggered(
        deployment_id=deployment,
        application_id="bench",
        trigger=Trigger.ON_COMMIT,
        commit_hash="c1",
    )


async def _append(store: EventStore, count: int, per_tx: int) -> dict[str, float]:
    """Append `count` events, `per_tx` a transaction; each event id → its commit time."""
    committed: dict[str, float] = {}
    for _ in range(0, count, per_tx):
        batch = new_events([_triggered() for _ in range(per_tx)])
        await store.append(f"bench-{uuid.uuid4().hex[:12]}", batch, expected_version=NO_STREAM)
        at = perf_counter()
        committed.update((str(e.event_id), at) for e in batch)
    return committed


async def _drain(source: Source, count: int, arrivals: dict[str, float] | None = None) -> float:
    """Seconds until `count` documents arrived from `source` (from the start)."""
    started = perf_counter()
    seen = 0
    async with asyncio.timeout(TIMEOUT_S):
        async for received in subscribe(source, MemoryCheckpoint()):
            if arrivals is not None:
                arrivals[received.id] = perf_counter()
            seen += 1
            if seen >= count:
                break
    return perf_counter() - started


async def wait_for_count(count: Callable[[], int], target: int) -> None:
    """Until `count()` reaches `target` (the relay counts what it published; it signals not)."""
    async with asyncio.timeout(TIMEOUT_S):
        while count() < target:  # noqa: ASYNC110 — a counter, not an event
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _task(coro: Any) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run(servers: Servers, events: int, live: int) -> dict[str, Any]:
    """Catch-up and live delivery to event-stream subscribers: rates and latency."""
    schema = await servers.migrated_schema("bench_subscribers")
    pool = await create_pool(servers.app_url, schema=schema, min_size=2, max_size=10)
    store = EventStore(pool, default_registry())
    layout = Subjects()
    report: dict[str, Any] = {"settings": {"events": events, "live": live}}
    async with servers.nats_client() as admin:
        js = admin.jetstream()
        await ensure_event_stream(js, layout)
        key = await create_api_key(store, "admin", "bench")
        api = ApiServer(create_app(store=store, pool=pool, read_wait_s=5.0), port=0, grace_s=1.0)
        await api.start()
        try:
            progress(f"appending {events} events with the relay stopped…")
            await _append(store, events, 100)
            total = await pool.fetchval("SELECT count(*) FROM events")  # and the key's own
            relay = Relay(database_url=servers.app_url, schema=schema, js=js, subjects=layout)
            stop = asyncio.Event()
            started = perf_counter()
            async with _task(relay.run(stop)):
                await wait_for_count(lambda: relay.published, total)
                relay_s = perf_counter() - started
                report["relay"] = {"events_per_s": round(total / relay_s)}
                progress("reading the backlog over NATS and SSE…")
                nats_url = servers.nats.url_for("subscriber")
                nats_s = await _drain(NatsSource(nats_url, durable=SUBSCRIBER_DURABLES[0]), total)
                sse_s = await _drain(SseSource(api.url, key), total)
                report["backlog"] = {
                    "nats_kit_events_per_s": round(total / nats_s),
                    "sse_events_per_s": round(total / sse_s),
                }
                progress(f"appending {live} events while both follow…")
                at_nats: dict[str, float] = {}
                at_sse: dict[str, float] = {}
                nats_live = NatsSource(nats_url, durable=SUBSCRIBER_DURABLES[1], start=total + 1)
                sse_live = SseSource(api.url, key, categories=["bench"], after="head")
                async with (
                    _task(_drain(nats_live, live, at_nats)) as nats_done,
                    _task(_drain(sse_live, live, at_sse)) as sse_done,
                ):
                    await asyncio.sleep(1.0)  # both connected and idle
                    committed = await _append(store, live, 10)
                    await asyncio.wait_for(asyncio.gather(nats_done, sse_done), TIMEOUT_S)
                report["live"] = {
                    name: {
                        "lag_ms_p50": round(1000 * percentile(lags, 50), 1),
                        "lag_ms_p99": round(1000 * percentile(lags, 99), 1),
                    }
                    for name, arrivals in (("nats_kit", at_nats), ("sse", at_sse))
                    for lags in [[arrivals[i] - committed[i] for i in committed if i in arrivals]]
                }
                stop.set()
        finally:
            await api.stop()
            await pool.close()
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: run and print the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.subscribers", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--events", type=int, default=EVENTS, help=f"backlog (default {EVENTS})")
    parser.add_argument("--live", type=int, default=LIVE, help=f"followed live (default {LIVE})")
    args = parser.parse_args(argv)
    quiet_logging()
    started = perf_counter()
    with running_servers() as servers, tempfile.TemporaryDirectory(prefix="slipway-bench-"):
        result = asyncio.run(run(servers, args.events, args.live))
    result["duration_s"] = round(perf_counter() - started, 2)
    result["cpu_count"] = os.cpu_count()
    print_report(result, as_json=args.json)


if __name__ == "__main__":
    main()
