"""The live projection runner: tail the log and apply each batch with its checkpoint.

Every batch is one transaction: lock the projection's state row, read the
committed events after its checkpoint (commit-safe order, below the snapshot
horizon — see shared/eventlog/store.py), apply them to the live generation's
tables, and write the new checkpoint. A crash or cancellation anywhere rolls
the whole batch back, so nothing is ever applied twice or skipped; replicas
of the runner take turns on the row lock and each continues from the other's
checkpoint. The live generation is re-read for every batch, so the runner
follows a replay's swap without noticing it. When there is nothing to do, a
poll is one read-only query that neither locks nor takes a transaction id.

`run` keeps going until stopped, backing off while the database is away;
`run_until_caught_up` is the burst mode: apply until nothing is left, return.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from shared.aio import sleep_or_stop
from shared.db import unavailable_on_disconnect
from shared.errors import Unavailable
from shared.eventlog.store import EventStore, position_of
from shared.projections.base import Projection, check_projection
from shared.projections.errors import ProjectionOutdated
from shared.projections.feed import feed_of
from shared.projections.replay import replay
from shared.projections.state import ProjectionState, install, load_state, save_checkpoint

log = structlog.get_logger("slipway.projections")

# Idle polls must not take the state row's lock: locking a row assigns a
# transaction id and writes WAL, on every poll, forever. This read-only peek
# (the horizon test of shared/eventlog/store.py) does neither. PostgreSQL does not
# turn a row comparison with the outer row's columns into an index bound: without
# `e.tx_id >= p.tx_id` every poll read the whole log (1 ms at 20,000 events, the
# projector's PostgreSQL time, growing with the log); with it, a few index pages.
PENDING = """
SELECT p.name, p.version, EXISTS (
  SELECT 1 FROM events e
  WHERE e.tx_id >= p.tx_id AND (e.tx_id, e.global_position) > (p.tx_id, p.position)
    AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
) AS pending
FROM projection_state p WHERE p.name = ANY($1::text[])
"""
"""Per projection named in `$1`: its version, and whether events past its checkpoint have
committed (one row per projection that has a state row; a `ProjectionGroup` asks for several)."""


class StepLoop:
    """`run` and `run_until_caught_up` around a `step` that applies one batch (a runner's,
    or a group's): the events it applied, 0 when there was nothing to do."""

    idle_sleep_s: float
    max_backoff_s: float

    async def step(self) -> int:
        """Apply the next batch; the events applied."""
        raise NotImplementedError

    def describe(self) -> str:
        """What the loop keeps up to date, for its log lines."""
        raise NotImplementedError

    async def run_until_caught_up(self) -> int:
        """Burst mode: apply batches until none is left below the horizon; the events applied."""
        total = 0
        while applied := await self.step():
            total += applied
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Apply batches as events commit, until `stop` is set; back off while unavailable."""
        await run_steps(
            self.step,
            stop,
            what=self.describe(),
            idle_sleep_s=self.idle_sleep_s,
            max_backoff_s=self.max_backoff_s,
        )


class ProjectionRunner(StepLoop):
    """Keeps one projection's live generation up to date with the log."""

    def __init__(
        self,
        store: EventStore,
        projection: Projection,
        *,
        batch_size: int = 500,
        idle_sleep_s: float = 0.05,
        max_backoff_s: float = 5.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be ≥ 1")
        self.store = store
        self.projection = check_projection(projection)
        self.batch_size = batch_size
        self.idle_sleep_s = idle_sleep_s
        self.max_backoff_s = max_backoff_s
        # Events this runner has applied and committed since it was created.
        self.applied = 0
        self._installed = False

    async def install(self) -> ProjectionState:
        """Create the projection on first use; rebuild it if the live tables are an older version.

        Raises `ProjectionOutdated` if they were built by a newer version than
        this code: an old replica must not write into a new table layout.
        """
        name = self.projection.name
        async with (
            unavailable_on_disconnect(f"install projection {name}"),
            self.store.pool.acquire() as conn,
        ):
            state = await install(conn, self.projection)
        if state.version > self.projection.version:
            raise ProjectionOutdated(
                f"projection {name!r} was built by version {state.version}, this build has "
                f"version {self.projection.version}: run a newer build, or `slipway replay` "
                "to rebuild it with this one"
            )
        if state.version < self.projection.version:
            log.info(
                "projection_rebuilding_for_new_version",
                projection=name,
                stored_version=state.version,
                version=self.projection.version,
            )
            # Other replicas of this build wait here for the first one's rebuild,
            # then find nothing left to do.
            await replay(self.store, self.projection, wait=True, only_if_outdated=True)
            async with (
                unavailable_on_disconnect(f"load projection {name}"),
                self.store.pool.acquire() as conn,
            ):
                state = await install(conn, self.projection)
        self._installed = True
        return state

    async def step(self) -> int:
        """Apply the next batch and its checkpoint in one transaction; the number of events."""
        if not self._installed:
            await self.install()
        applied = await self._apply_next_batch()
        if applied is None:
            # Rebuilt by another version, or removed, since we installed: check again.
            self._installed = False
            await self.install()
            applied = await self._apply_next_batch() or 0
        self.applied += applied
        return applied

    async def _apply_next_batch(self) -> int | None:
        """The events applied, or None if the live tables are not this version's."""
        name = self.projection.name
        async with unavailable_on_disconnect(f"poll projection {name}"):
            peek = await self.store.pool.fetchrow(PENDING, [name])
        if peek is None or peek["version"] != self.projection.version:
            return None
        if not peek["pending"]:
            return 0
        async with (
            unavailable_on_disconnect(f"apply projection {name}"),
            self.store.pool.acquire() as conn,
            conn.transaction(),
        ):
            try:
                state = await load_state(conn, name, for_update=True)
            except asyncpg.QueryCanceledError as exc:
                # A replay holds this row for its whole rebuild; a long one outlasts our
                # statement timeout. That is a wait, not a failure: back off and retry.
                raise Unavailable(f"projection {name} is locked (being rebuilt?): {exc}") from exc
            if state is None or state.version != self.projection.version:
                return None
            feed = feed_of(self.store, self.projection)
            events = await feed.read_all(state.checkpoint, limit=self.batch_size, conn=conn)
            if events:
                await feed.apply(conn, events, state.physical_tables())
                await save_checkpoint(conn, name, position_of(events[-1]))
        return len(events)

    def describe(self) -> str:
        """The projection's name."""
        return self.projection.name


async def run_steps(
    step: Callable[[], Awaitable[int]],
    stop: asyncio.Event,
    *,
    what: str,
    idle_sleep_s: float,
    max_backoff_s: float,
) -> None:
    """Call `step` (a runner's: the events it applied) until `stop` is set: again at once
    after a batch, after `idle_sleep_s` when there was none, backing off while unavailable."""
    failures = 0
    while not stop.is_set():
        try:
            applied = await step()
        except Unavailable as exc:
            _raise_if_cancelling(exc)
            failures += 1
            delay = min(0.1 * 2**failures, max_backoff_s)
            log.warning("projection_interrupted", projection=what, error=str(exc), retry_in_s=delay)
            await sleep_or_stop(stop, delay)
            continue
        except Exception as exc:
            _raise_if_cancelling(exc)
            raise
        failures = 0
        if not applied:
            await sleep_or_stop(stop, idle_sleep_s)


def _raise_if_cancelling(exc: Exception) -> None:
    # A cancellation that lands mid-transaction can surface as a failed ROLLBACK on
    # a connection the server has dropped; the task must still end as cancelled,
    # or a shutdown would be taken for a database error.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
