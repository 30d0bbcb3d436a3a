"""`slipway replay`: rebuild projections from position 0 and swap them in, and the snapshots
of long streams (`shared/snapshots.py`), dropped and written again from the log."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence

import asyncpg

from shared.db import create_pool
from shared.errors import ConfigError
from shared.eventlog import EventStore
from shared.events.catalog import default_registry
from shared.logs import configure_logging
from shared.projections import Projection, ReplayResult, default_projections, replay
from shared.snapshots import rebuild
from shared.stream_folds import BY_CATEGORY


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway replay` (rebuild projections from the log) to the parser."""
    parser = subparsers.add_parser(
        "replay",
        help="rebuild projections from the whole log and swap them in atomically",
        description="Rebuild every projection (or the named ones) from position 0 into "
        "new tables, then swap them in atomically; live runners carry on from there. "
        "Without --projection, the snapshots of long streams are dropped and rebuilt too.",
    )
    parser.add_argument(
        "--projection",
        action="append",
        dest="projections",
        metavar="NAME",
        help="a projection to rebuild (repeat for several; default: all)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SLIPWAY_PROJECTOR_DATABASE_URL")
        or os.environ.get("SLIPWAY_DATABASE_URL"),
        help="the projector's URL: only its role may build projections, and they belong to it "
        "(default: $SLIPWAY_PROJECTOR_DATABASE_URL, then $SLIPWAY_DATABASE_URL)",
    )
    parser.add_argument("--schema", default=os.environ.get("SLIPWAY_DATABASE_SCHEMA", "slipway"))
    parser.add_argument(
        "--batch-size",
        type=int,
        default=5000,
        help="events of the log per window read (and per transaction, of those it folds)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="wait for a replay already running instead of failing",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Rebuild the chosen projections from position 0 and swap them in."""
    if not args.database_url:
        raise ConfigError("replay needs --database-url or SLIPWAY_PROJECTOR_DATABASE_URL")
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    chosen = choose(default_projections(), args.projections)
    snapshots = not args.projections
    # Log lines go to stderr, so stdout carries only the per-projection summary.
    configure_logging("slipway-replay")
    try:
        asyncio.run(
            _replay(args.database_url, args.schema, chosen, args.batch_size, args.wait, snapshots)
        )
    except asyncpg.PostgresError as exc:
        # A lost connection is already `Unavailable`; this is the database refusing
        # (schema not migrated, missing grants, a projection's SQL failing).
        print(f"slipway: replay in schema {args.schema} failed: {exc}", file=sys.stderr)
        if isinstance(exc, asyncpg.InsufficientPrivilegeError):
            print("slipway: replay as the projector's role (its database URL)", file=sys.stderr)
        return 1
    return 0


def choose(projections: Sequence[Projection], names: Sequence[str] | None) -> list[Projection]:
    """The projections named (all when `names` is empty), in catalog order."""
    if not names:
        return list(projections)
    known = {p.name for p in projections}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ConfigError(
            f"unknown projection(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return [p for p in projections if p.name in names]


async def _replay(
    url: str,
    schema: str,
    projections: Sequence[Projection],
    batch_size: int,
    wait: bool,
    snapshots: bool,
) -> None:
    pool = await create_pool(url, schema=schema, min_size=1, max_size=2)
    try:
        store = EventStore(pool, default_registry())
        for projection in projections:
            result = await replay(store, projection, batch_size=batch_size, wait=wait)
            print(_summary(result), flush=True)
        if snapshots:
            started = time.perf_counter()
            written = await rebuild(store, BY_CATEGORY.values())
            seconds = time.perf_counter() - started
            print(f"snapshots: {written} long streams in {seconds:.2f} s", flush=True)
    finally:
        await pool.close()


def _summary(result: ReplayResult) -> str:
    return (
        f"{result.name}: generation {result.generation}, {result.events} events in "
        f"{result.seconds:.2f} s ({result.events_per_second:,.0f} events/s)"
    )
