"""`replay`: rebuild a projection from position 0 into shadow tables, then swap them in.

1. Take the projection's replay lock (a session advisory lock: one rebuild of
   a projection at a time; it goes away with a crashed session).
2. Create the tables of generation N + 1 next to the live generation N, and
   fold the whole log into them, one short transaction per window of the log
   (read ahead on a second connection, and only the event types the
   projection folds; envelopes alone, without payload or metadata, for an
   `EnvelopeProjection`; nothing at all for a `DatabaseFold`, which PostgreSQL
   folds with one statement per window). Short, because a transaction that
   holds a transaction id holds back the snapshot horizon of every reader of
   the log — the relay and the live runners. The plain indexes are built once the tables are
   full (one transaction each: a table of every deployment indexes in well
   under a second), which costs a fraction of keeping them up on every update,
   and the tables are analyzed, so that readers' first queries after the swap
   are planned on their statistics, not on those of an empty table.
3. In one transaction: lock the projection's state row (waiting for the live
   runner's batch in flight, and keeping the next one out), fold what has
   committed since into the shadow tables, repoint the views, record
   generation N + 1 and its checkpoint, drop generation N. The shadow is then
   at least as far along as the live generation was, so readers switch from
   one complete read model to a newer one at commit, never to a partial or
   older one; the live runner carries on from the new checkpoint.

Caveat for readers: a REPEATABLE READ transaction whose snapshot predates the
swap but that first reads the view after it sees the new tables as of its old
snapshot (as after a TRUNCATE). Read-committed readers, and any transaction
that read the view before the swap (the swap waits for it), are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

import asyncpg
import msgspec
import structlog

from shared.db import CONNECTION_ERRORS, LONG_CALL_S, unavailable_on_disconnect
from shared.errors import ConfigError, Unavailable
from shared.eventlog.position import START, LogPosition
from shared.eventlog.store import EventStore, LogWindow, R, position_of
from shared.projections.base import DatabaseFold, Projection, check_projection, event_tags
from shared.projections.errors import ReplayInProgress
from shared.projections.feed import feed_of
from shared.projections.state import install, load_state, swap_generation
from shared.projections.tables import (
    create_generation,
    drop_generation,
    foreign_owner,
    point_views,
    quote,
)

log = structlog.get_logger("slipway.projections")

# Advisory locks are database-wide; the schema in the key keeps tests (one schema
# each) and side-by-side installations from excluding each other.
_REPLAY_KEY = "hashtextextended('slipway-replay:' || current_schema() || ':' || $1, 0)"
_TRY_LOCK = f"SELECT pg_try_advisory_lock({_REPLAY_KEY})"
_LOCK = f"SELECT pg_advisory_lock({_REPLAY_KEY})"
_UNLOCK = f"SELECT pg_advisory_unlock({_REPLAY_KEY})"


class ReplayResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a replay did: the generation it made live and how much it folded, how fast."""

    name: str
    generation: int
    events: int
    seconds: float
    checkpoint: LogPosition
    skipped: bool = False

    @property
    def events_per_second(self) -> float:
        """The replay's speed."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def replay(
    store: EventStore,
    projection: Projection,
    *,
    batch_size: int = 5000,
    wait: bool = False,
    only_if_outdated: bool = False,
    swap_lock_timeout_s: float = 10.0,
    swap_attempts: int = 5,
) -> ReplayResult:
    """Rebuild `projection` from position 0 and make the rebuilt generation live.

    Raises `ReplayInProgress` if another replay of it is running, unless
    `wait`. With `only_if_outdated`, does nothing when the live generation
    was built by this projection's version. The swap waits at most
    `swap_lock_timeout_s` for readers and the live runner, catching up
    again between `swap_attempts`.
    """
    check_projection(projection)
    if batch_size < 1:
        raise ValueError("batch_size must be ≥ 1")
    async with (
        unavailable_on_disconnect(f"replay {projection.name}"),
        store.pool.acquire() as conn,
    ):
        if wait:
            # Another replay may take longer than a statement is allowed: lift the
            # limits for this wait only (the session lock outlives the transaction).
            async with conn.transaction():
                await conn.execute("SELECT set_config('statement_timeout', '0', true)")
                await conn.execute(_LOCK, projection.name, timeout=LONG_CALL_S)
        elif not await conn.fetchval(_TRY_LOCK, projection.name):
            raise ReplayInProgress(f"projection {projection.name!r} is being rebuilt already")
        try:
            return await _rebuild(
                conn,
                store,
                projection,
                batch_size=batch_size,
                only_if_outdated=only_if_outdated,
                swap_lock_timeout_s=swap_lock_timeout_s,
                swap_attempts=swap_attempts,
            )
        finally:
            # The pool's reset would release it too; say so explicitly. A lost
            # session has released it already.
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.execute(_UNLOCK, projection.name)


async def _rebuild(
    conn: asyncpg.Connection,
    store: EventStore,
    projection: Projection,
    *,
    batch_size: int,
    only_if_outdated: bool,
    swap_lock_timeout_s: float,
    swap_attempts: int,
) -> ReplayResult:
    started = time.perf_counter()
    live = await install(conn, projection)
    if only_if_outdated and live.version == projection.version:
        return ReplayResult(
            name=projection.name,
            generation=live.generation,
            events=0,
            seconds=time.perf_counter() - started,
            checkpoint=live.checkpoint,
            skipped=True,
        )
    owner = await foreign_owner(conn, live.physical_tables().values())
    if owner is not None:
        raise ConfigError(
            f"projection {projection.name!r} belongs to role {owner!r}: replay it as that "
            "role (the projector's database URL), or the runners could not write to it"
        )
    target = live.generation + 1
    async with conn.transaction():
        shadow, indexes = await create_generation(conn, projection, target, defer_indexes=True)
    try:
        position, folded = await _fold(conn, store, projection, shadow, START, batch_size)
        for statement in [*indexes, *(f"ANALYZE {quote(t)}" for t in shadow.values())]:
            async with conn.transaction():
                # Indexing a big table may take longer than a statement is allowed.
                await conn.execute("SELECT set_config('statement_timeout', '0', true)")
                await conn.execute(statement, timeout=LONG_CALL_S)
        for attempt in range(1, swap_attempts + 1):
            try:
                async with conn.transaction():
                    await conn.execute(
                        "SELECT set_config('lock_timeout', $1, true)",
                        f"{int(swap_lock_timeout_s * 1000)}ms",
                    )
                    now = await load_state(conn, projection.name, for_update=True)
                    if now is None or now.generation != live.generation:
                        raise RuntimeError(
                            f"projection {projection.name!r} changed generation during its "
                            "replay although the replay lock was held"
                        )
                    caught_up, more = await _catch_up(conn, store, projection, shadow, position)
                    if caught_up < now.checkpoint:
                        raise RuntimeError(
                            f"replay of {projection.name!r} stopped at {caught_up} behind the "
                            f"live checkpoint {now.checkpoint}: refusing to swap"
                        )
                    await point_views(conn, drop=now.tables, create=shadow)
                    await swap_generation(conn, projection, target, caught_up)
                    await drop_generation(conn, now.tables, now.generation)
            except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as exc:
                if attempt == swap_attempts:
                    raise Unavailable(
                        f"replay of {projection.name!r}: could not swap generations in "
                        f"{swap_attempts} attempts ({exc}); readers or the runner hold locks"
                    ) from exc
                log.warning("projection_swap_retry", projection=projection.name, error=str(exc))
                position, more = await _fold(conn, store, projection, shadow, position, batch_size)
                folded += more
                continue
            position, folded = caught_up, folded + more
            break
    except BaseException:
        # Leave no half-built generation behind; if the session is gone, the next
        # replay drops it before building the same generation again.
        with contextlib.suppress(asyncpg.PostgresError, *CONNECTION_ERRORS):
            await drop_generation(conn, projection.tables, target)
        raise
    seconds = time.perf_counter() - started
    log.info(
        "projection_replayed",
        projection=projection.name,
        generation=target,
        events=folded,
        seconds=round(seconds, 3),
    )
    return ReplayResult(
        name=projection.name,
        generation=target,
        events=folded,
        seconds=seconds,
        checkpoint=position,
    )


async def _fold(
    conn: asyncpg.Connection,
    store: EventStore,
    projection: Projection,
    tables: dict[str, str],
    position: LogPosition,
    batch_size: int,
) -> tuple[LogPosition, int]:
    """Fold committed events after `position` into `tables`, one transaction per window
    of `batch_size` events of the log; (where it stopped, how many events it passed).

    Stops at the horizon as it was when the fold began: writers that outpace the
    fold must not keep it chasing them. The rest is left to the swap's catch-up,
    which holds the projection's lock. Only the projection's `event_types` are
    read; the position still moves over the events it ignores.
    """
    horizon = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())")
    if isinstance(projection, DatabaseFold):
        return await _fold_in_database(
            conn, store, projection, tables, position, horizon, batch_size
        )
    feed = feed_of(store, projection)
    buffer = projection.replay_buffer()
    apply = feed.apply if buffer is None else buffer.apply_batch
    read = functools.partial(
        feed.read_window,
        below_tx_id=horizon,
        limit=batch_size,
        event_types=event_tags(projection),
    )
    folded = 0
    async with contextlib.aclosing(_read_ahead(store, conn, read, position)) as windows:
        async for window in windows:
            if window.events:
                async with conn.transaction():
                    # The shadow tables are nobody's truth until the swap, which commits
                    # durably: a crash before it leaves a generation the next replay drops,
                    # so a batch need not wait for its WAL to reach the disk.
                    await conn.execute("SET LOCAL synchronous_commit = off")
                    await apply(conn, window.events, tables)
            position = window.end
            folded += window.scanned
    if buffer is not None:
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")  # as for each window
            await buffer.flush(conn, tables)
    return position, folded


async def _fold_in_database(
    conn: asyncpg.Connection,
    store: EventStore,
    projection: DatabaseFold,
    tables: dict[str, str],
    position: LogPosition,
    horizon: int,
    batch_size: int,
) -> tuple[LogPosition, int]:
    """`_fold` for a `DatabaseFold`: each window folded by one statement in PostgreSQL."""
    folded = 0
    while end := await store.window_end(position, below_tx_id=horizon, limit=batch_size, conn=conn):
        through, scanned = end
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")  # as in `_fold`
            await projection.fold_window(conn, tables, position, through)
        position = through
        folded += scanned
    return position, folded


async def _read_ahead(
    store: EventStore,
    conn: asyncpg.Connection,
    read: Callable[..., Awaitable[LogWindow[R] | None]],
    position: LogPosition,
) -> AsyncGenerator[LogWindow[R], None]:
    """The windows `read` gives from `position` on, each read while the caller folds the one
    before, on a second connection: the database reads and writes while Python decodes and
    folds. With a pool of one connection, each is read on `conn` when asked for."""
    if store.pool.get_max_size() < 2:
        while (window := await read(position, conn=conn)) is not None:
            yield window
            position = window.end
        return
    async with store.pool.acquire() as reader:
        pending = asyncio.ensure_future(read(position, conn=reader))
        try:
            while (window := await pending) is not None:
                pending = asyncio.ensure_future(read(window.end, conn=reader))
                yield window
        finally:
            if not pending.done():
                pending.cancel()
            # The connection goes back to the pool only once its query has ended.
            await asyncio.gather(pending, return_exceptions=True)


async def _catch_up(
    conn: asyncpg.Connection,
    store: EventStore,
    projection: Projection,
    tables: dict[str, str],
    position: LogPosition,
) -> tuple[LogPosition, int]:
    """Fold everything below the horizon into `tables`, inside the caller's transaction.

    The horizon is read once: writers keep committing while we hold the lock,
    and chasing them could go on for as long as they outpace us. What commits
    later is the live runner's to apply once the swap has moved its checkpoint.
    """
    horizon = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())")
    feed = feed_of(store, projection)
    folded = 0
    while events := await feed.read_all(position, conn=conn):
        below = [e for e in events if e.tx_id < horizon]
        if below:
            await feed.apply(conn, below, tables)
            position = position_of(below[-1])
            folded += len(below)
        if len(below) < len(events):
            break
    return position, folded
