"""State reads of long streams: folding from the first event vs a snapshot and its tail.

`python -m benchmarks.state_reads --json` writes `benchmarks._history`'s long
streams (a deployment of 2,500 WAIT stages: 5,004 events; an application asked
to sync 5,000 times) into a durable PostgreSQL, then times, one read at a time,
what `GET /events/streams/{id}/state` does for each (read, fold, encode the
answer as JSON), now and as of the middle of the deployment:

- `from_zero`: the whole stream read and folded, the answer encoded through
  `msgspec.to_builtins` (what the route did before);
- `snapshot`: `shared.snapshots.read_state`, the newest snapshot at or before
  the point and the fewer than `SNAPSHOT_EVERY` events after it (the snapshot
  is written by the first, untimed, read), the answer encoded from the Struct
  (what the route does now). Both answers are checked to be the same bytes.

`state_read_p95_ms` is the worst p95 of the snapshot reads (target ≤ 20 ms),
beside the same figure from zero. Progress goes to stderr; stdout has the report.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any, Final

import msgspec

from benchmarks._history import write_history
from benchmarks._report import percentile, print_report, progress, quiet_logging
from benchmarks._servers import running_servers
from services.api import resources
from shared.applications import fold_recorded
from shared.db import connect, create_pool
from shared.deployments import fold_history
from shared.eventlog import EventStore, new_events
from shared.events.catalog import ApplicationRegistered, default_registry
from shared.snapshots import SNAPSHOT_EVERY, read_state
from shared.stream_folds import APPLICATION, DEPLOYMENT

SCHEMA: Final = "bench_state_reads"
READS: Final = 60
WARM_UP: Final = 3
TARGET_MS: Final = 20.0
APPLICATION_ID: Final = "benchapp"


def _answer(value: object) -> bytes:
    """The state as the route answers it now: JSON encoded from the Struct."""
    return msgspec.json.encode(value)


def _answer_before(value: object) -> bytes:
    """The state as the route answered it before: msgspec builtins, then JSON."""
    return msgspec.json.encode(msgspec.to_builtins(value))


async def _timed(
    read: Callable[[], Awaitable[object]], answer: Callable[[object], bytes], reads: int
) -> dict[str, float]:
    samples = []
    for i in range(WARM_UP + reads):
        started = perf_counter()
        answer(await read())
        if i >= WARM_UP:
            samples.append((perf_counter() - started) * 1000)
    return {
        "p50_ms": round(percentile(samples, 50), 2),
        "p95_ms": round(percentile(samples, 95), 2),
        "max_ms": round(max(samples), 2),
    }


async def measure(store: EventStore, reads: int) -> dict[str, Any]:
    """Time the long streams' state reads: folded from zero against read from snapshots."""
    deployment = "deployment-longpipeline"
    application = f"application-{APPLICATION_ID}"
    middle_row = await store.pool.fetchrow(
        "SELECT global_position, stream_version FROM events WHERE stream_id = $1 "
        "ORDER BY stream_version LIMIT 1 OFFSET "
        "(SELECT count(*) / 2 FROM events WHERE stream_id = $1)",
        deployment,
    )
    middle = middle_row["global_position"]

    async def deployment_from_zero(position: int | None = None) -> object:
        history = await store.read_stream(deployment, up_to_position=position)
        return fold_history("longpipeline", history)

    async def application_from_zero() -> object:
        return resources.from_record(fold_recorded(await store.read_stream(application)))

    async def deployment_snapshot(position: int | None = None) -> object:
        read = await read_state(store, deployment, DEPLOYMENT, up_to_position=position)
        return read.state

    async def application_snapshot() -> object:
        read = await read_state(store, application, APPLICATION)
        return resources.from_record(read.state)

    cases: dict[str, tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[object]]]] = {
        "deployment_long": (deployment_from_zero, deployment_snapshot),
        "deployment_long_as_of_middle": (
            lambda: deployment_from_zero(middle),
            lambda: deployment_snapshot(middle),
        ),
        "application_long": (application_from_zero, application_snapshot),
    }
    results: dict[str, Any] = {}
    for name, (from_zero, snapshot) in cases.items():
        # The answers agree, byte for byte; the first snapshot read writes the snapshot.
        assert _answer_before(await from_zero()) == _answer(await snapshot()), name
        results[name] = {
            "from_zero": await _timed(from_zero, _answer_before, reads),
            "snapshot": await _timed(snapshot, _answer, reads),
        }
        progress(
            f"  {name}: p95 {results[name]['from_zero']['p95_ms']} ms from zero, "
            f"{results[name]['snapshot']['p95_ms']} ms from a snapshot"
        )
    sizes = await store.pool.fetch(
        "SELECT stream_id, stream_version, length(state) AS bytes FROM stream_snapshots "
        "ORDER BY stream_id, stream_version"
    )
    events = {
        r["stream_id"]: r["n"]
        for r in await store.pool.fetch(
            "SELECT stream_id, count(*) AS n FROM events WHERE stream_id = ANY($1::text[]) "
            "GROUP BY stream_id",
            [deployment, application],
        )
    }
    return {
        "reads": results,
        "events": events,
        "middle_version": middle_row["stream_version"],
        "snapshots": [
            {"stream_id": r["stream_id"], "version": r["stream_version"], "bytes": r["bytes"]}
            for r in sizes
        ],
    }


async def run(reads: int) -> dict[str, Any]:
    """Write the long streams on fresh servers, then measure."""
    with running_servers() as servers:
        await servers.migrated_schema(SCHEMA)
        pool = await create_pool(servers.app_url, schema=SCHEMA, min_size=1, max_size=2)
        registry = default_registry()
        store = EventStore(pool, registry)
        try:
            await store.append(
                f"application-{APPLICATION_ID}",
                new_events(
                    [
                        ApplicationRegistered(
                            application_id=APPLICATION_ID,
                            name="bench",
                            repository_id="bench",
                            path="apps/bench",
                        )
                    ]
                ),
                expected_version=-1,
            )
            conn = await connect(servers.admin_url, schema=SCHEMA)
            try:
                # No events beyond the long streams: `_history` writes those first.
                await write_history(conn, registry, [APPLICATION_ID, APPLICATION_ID], 1)
            finally:
                await conn.close()
            measured = await measure(store, reads)
        finally:
            await pool.close()
    worst = {
        side: max(case[side]["p95_ms"] for case in measured["reads"].values())
        for side in ("from_zero", "snapshot")
    }
    return {
        "state_read_p95_ms": worst["snapshot"],
        "state_read_from_zero_p95_ms": worst["from_zero"],
        "target": {
            "goal": f"<= {TARGET_MS:g}",
            "value": worst["snapshot"],
            "met": worst["snapshot"] <= TARGET_MS,
        },
        "snapshot_every": SNAPSHOT_EVERY,
        **measured,
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
    }


def _cpus() -> int:
    return os.cpu_count() or 0


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: run and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--reads", type=int, default=READS, help="timed reads per case")
    args = parser.parse_args(argv)
    quiet_logging()
    report = asyncio.run(run(args.reads))
    print_report(report, as_json=args.json)


if __name__ == "__main__":
    main()
