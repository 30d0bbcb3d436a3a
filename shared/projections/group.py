"""Several projections kept live together: one read of the log and one transaction per batch.

A `ProjectionRunner` per projection reads every event once per projection and
spends a transaction of its own on each batch: peek, BEGIN, lock the state row,
read, apply, checkpoint, COMMIT. While events trickle in (a planner appending a
few at a time) most of a projector's CPU, and most of PostgreSQL's work for it,
is those round trips, four times over. `ProjectionGroup` does each step once for
all of them:

1. one read-only peek says which projections have committed events past their
   checkpoints (no lock, no transaction id: an idle group costs a query a poll);
2. one transaction locks the state rows of those no other transaction holds
   (`SKIP LOCKED`: a replay holding one projection's row for its rebuild, or a
   replica in the middle of a batch, is passed over, not waited for), reads
   the log once from the oldest of their checkpoints, applies to each
   projection the events past its own checkpoint, and writes every moved
   checkpoint in one statement.

A projection far behind the others (new, catching up from the start of a long log)
would make every window start at its checkpoint and leave the others with nothing:
the batch after one that did so leaves it out, so they take turns.

So each projection still applies each event exactly once, in the transaction
that moves its checkpoint past it (a crash rolls back every projection's part of
the batch together); replicas still take turns per projection, and a replay's
swap is still followed, since every batch re-reads each live generation.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.db import unavailable_on_disconnect
from shared.eventlog.position import LogPosition
from shared.eventlog.store import EventStore, position_of
from shared.events.base import RecordedEvent
from shared.projections.base import Projection
from shared.projections.runner import PENDING, ProjectionRunner, StepLoop
from shared.projections.state import lock_free_states, save_checkpoints

__all__ = ["ProjectionGroup"]


class ProjectionGroup(StepLoop):
    """Keeps several projections' live generations up to date, a batch for all at a time."""

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection],
        *,
        batch_size: int = 500,
        idle_sleep_s: float = 0.05,
        max_backoff_s: float = 5.0,
    ) -> None:
        # Each projection's own runner installs it (and rebuilds it for a new version).
        self.runners = {
            p.name: ProjectionRunner(store, p, batch_size=batch_size) for p in projections
        }
        if len(self.runners) != len(projections):
            raise ValueError("two projections of a group share a name")
        self.store = store
        self.batch_size = batch_size
        self.idle_sleep_s = idle_sleep_s
        self.max_backoff_s = max_backoff_s
        self.applied = dict.fromkeys(self.runners, 0)
        """Events each projection has applied and committed through this group."""
        self._installed = False
        self._lagging: set[str] = set()
        """Projections that the last batch read for while others, ahead of its window,
        got nothing: the next batch leaves them out, so that one projection catching up
        from far behind (new, with an empty table) does not hold the others still."""

    async def install(self) -> None:
        """Install every projection (or rebuild it, as `ProjectionRunner.install` does)."""
        for runner in self.runners.values():
            await runner.install()
        self._installed = True

    async def step(self) -> int:
        """Apply the next batch to every projection behind, in one transaction; the number
        of events applied (counting once per projection that applied it)."""
        if not self._installed:
            await self.install()
        names = list(self.runners)
        async with unavailable_on_disconnect("poll projections"):
            peeked = await self.store.pool.fetch(PENDING, names)
        current = {
            row["name"]
            for row in peeked
            if row["version"] == self.runners[row["name"]].projection.version
        }
        if outdated := [name for name in names if name not in current]:
            # Rebuilt by another version, or removed, since installed: install them again.
            for name in outdated:
                await self.runners[name].install()
            return 0
        due = [row["name"] for row in peeked if row["pending"]]
        if not due:
            return 0
        # Projections that a lagging one kept waiting in the last batch go first, alone.
        ahead = [name for name in due if name not in self._lagging]
        self._lagging = set()
        applied = await self._apply_next_batch(ahead or due)
        for name, count in applied.items():
            self.applied[name] += count
            self.runners[name].applied += count
        return sum(applied.values())

    async def _apply_next_batch(self, due: Sequence[str]) -> dict[str, int]:
        async with (
            unavailable_on_disconnect("apply projections"),
            self.store.pool.acquire() as conn,
            conn.transaction(),
        ):
            states = [
                state
                for state in await lock_free_states(conn, due)
                if state.version == self.runners[state.name].projection.version
            ]
            if not states:
                return {}
            start = min(state.checkpoint for state in states)
            events = await self.store.read_all(start, limit=self.batch_size, conn=conn)
            if not events:
                return {}
            end = position_of(events[-1])
            applied: dict[str, int] = {}
            checkpoints: dict[str, LogPosition] = {}
            for state in states:
                unseen = _after(events, state.checkpoint)
                if not unseen:
                    continue
                projection = self.runners[state.name].projection
                await projection.apply_batch(conn, unseen, state.physical_tables())
                applied[state.name] = len(unseen)
                checkpoints[state.name] = end
            if checkpoints:
                await save_checkpoints(conn, checkpoints)
        if len(checkpoints) < len(states):
            self._lagging = set(checkpoints)
        return applied

    def describe(self) -> str:
        """The projections' names."""
        return ",".join(self.runners)


def _after(events: Sequence[RecordedEvent], checkpoint: LogPosition) -> Sequence[RecordedEvent]:
    """The events past `checkpoint` (a suffix: `events` are in commit-safe order)."""
    for index, event in enumerate(events):
        if position_of(event) > checkpoint:
            return events[index:]
    return ()
