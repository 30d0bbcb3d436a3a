"""The planner's deferred writes: what the handlers of one consumer transaction decide is
written together, by its last handler.

A handler collects its appends and queue-row moves in `Writes` while it decides;
`DeferredWrites.write` writes them at once, or — in a transaction of several events —
keeps them until the transaction's last handler, which writes them all: the appends in
one statement (`EventStore.append_together`, all or none, else each alone as `execute`
does), then the queue rows in one (service.py's docstring: Transactions, Batches).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from services.planner import queue as queues
from services.planner.decider import PLANNING, PlannerDecision, RowState, row_state
from shared.consumer.handling import events_in_transaction
from shared.deployments import Deployment
from shared.errors import Rejected
from shared.eventlog import EventStore, deterministic_event_id
from shared.eventlog.execute import Folded, execute
from shared.events.base import Event, Metadata, NewEvent, RecordedEvent
from shared.events.streams import deployment_stream


@dataclass
class Writes:
    """What one handler will write, collected while deciding and flushed at the end — with
    the other handlers' of its transaction (`DeferredWrites.write`)."""

    decisions: list[tuple[Metadata, str, PlannerDecision]] = field(default_factory=list)
    """(envelope, what, event) for each deployment stream: recorded by `PLANNING`. The
    envelope is made when deciding, so it carries the span that decided (`plan deployment`)."""
    observed: list[Event] = field(default_factory=list)
    """Events of others that move the queue (a completion): the cache follows them too."""
    planning_since: list[str] = field(default_factory=list)
    running: list[tuple[str, str, str]] = field(default_factory=list)
    known: dict[str, Folded[Deployment | None]] = field(default_factory=dict)
    """Deployment streams as this handler already holds them whole (the trigger in hand, a
    stream it read): their appends decide on these without reading them again (`execute`'s
    `known`; the append's expected version checks it)."""


class DeferredWrites:
    """Writes what handlers decided: at once, or with the rest of their transaction's."""

    def __init__(
        self, *, store: EventStore, clock: Callable[[], datetime], consumer_name: str
    ) -> None:
        self.store = store
        self.clock = clock
        # The planner's consumer name: its decisions' event ids derive from it.
        self._consumer_name = consumer_name
        # What the handlers of a transaction of several events decided, by connection,
        # written together by its last handler (`write`).
        self._pending: dict[int, list[Writes]] = {}

    def forget(self, conn: asyncpg.Connection) -> None:
        """Drop what an earlier transaction on `conn` kept: it was rolled back, if any."""
        self._pending.pop(id(conn), None)

    async def write(self, conn: asyncpg.Connection, writes: Writes) -> None:
        """Write `writes` now, or — in a consumer's transaction of several events — keep them
        for its last event's handler, which writes the transaction's together (`Planner.handle`)."""
        if len(events_in_transaction()) > 1:
            self._pending.setdefault(id(conn), []).append(writes)
        else:
            await self.flush(conn, [writes])

    async def flush_pending(self, conn: asyncpg.Connection) -> None:
        """Write what the transaction on `conn` has kept so far."""
        await self.flush(conn, self._pending.pop(id(conn), []))

    async def flush(self, conn: asyncpg.Connection, handlers: Sequence[Writes]) -> None:
        """Write what `handlers` (in their order) decided: the appends in one statement when
        each can be decided on a stream already known (else one by one, reading the
        streams as `execute` does), then the queue rows they move in one statement."""
        decisions = [decision for writes in handlers for decision in writes.decisions]
        known = {stream: state for writes in handlers for stream, state in writes.known.items()}
        if decisions and not await self._append_together(conn, decisions, known):
            for metadata, what, decision in decisions:
                stream = deployment_stream(decision.deployment_id)
                done = await execute(
                    self.store,
                    stream,
                    PLANNING,
                    decision,
                    metadata,
                    event_ids=_always(self._decision_id(what, decision)),
                    known=known.pop(stream, None),
                    conn=conn,
                    # In the consumer's transaction: a conflict fails it, and it is redelivered.
                    max_attempts=1,
                )
                known[stream] = done.after
        # The queue's cache follows the events (`row_state`), after the appends, in the
        # order they were decided: each handler's observed events, then its decisions.
        moves: dict[str, RowState] = {}
        for writes in handlers:
            for event in (*writes.observed, *(decision for _, _, decision in writes.decisions)):
                if (moved := row_state(event)) is not None:
                    moves.pop(moved[0], None)
                    moves[moved[0]] = moved[1]
        await queues.set_states(conn, moves)
        for writes in handlers:
            for deployment_id in writes.planning_since:
                await queues.set_planning_since(conn, deployment_id, self.clock())
            for app_id, commit, deployment_id in writes.running:
                await queues.set_running(conn, app_id, commit, deployment_id)

    async def _append_together(
        self,
        conn: asyncpg.Connection,
        decisions: Sequence[tuple[Metadata, str, PlannerDecision]],
        known: dict[str, Folded[Deployment | None]],
    ) -> bool:
        """The decisions' appends in one statement (`EventStore.append_together`), each
        decided by `PLANNING` on its stream as known; False, having written nothing, when
        one's stream is not known, `PLANNING` would not append it as known, or the append
        finds a stream moved past what was known: the caller then appends each alone."""
        appends: list[tuple[str, list[NewEvent], int]] = []
        afters: list[tuple[str, Deployment | None, tuple[Event, ...]]] = []
        for metadata, what, decision in decisions:
            stream = deployment_stream(decision.deployment_id)
            before = known.get(stream)
            if before is None:
                return False
            try:
                events = tuple(PLANNING.decide(before.state, decision))
            except Rejected:
                return False
            if not events:
                return False
            event_id = self._decision_id(what, decision)
            new = [NewEvent(event=e, event_id=event_id, metadata=metadata) for e in events]
            appends.append((stream, new, before.version))
            afters.append((stream, before.state, events))
        results = await self.store.append_together(appends, conn=conn)
        if results is None:
            return False
        for (stream, state, events), result in zip(afters, results, strict=True):
            for event in events:
                state = PLANNING.evolve(state, event)
            known[stream] = Folded(state, result.stream_versions[-1], result.global_positions[-1])
        return True

    def _decision_id(self, what: str, decision: PlannerDecision) -> uuid.UUID:
        """Derived from what it answers, so a plan appended twice is stored once."""
        return deterministic_event_id(self._consumer_name, what, decision.deployment_id)


def last_in_transaction(event: RecordedEvent) -> bool:
    """Whether `event` is the last the consumer's transaction handles (True outside one).
    The consumer runs the handler once per event id, at its first delivery in the batch."""
    ids = list(dict.fromkeys(e.event_id for e in events_in_transaction()))
    return not ids or ids[-1] == event.event_id


def _always(event_id: uuid.UUID) -> Callable[[int, Event], uuid.UUID]:
    """`execute`'s `event_ids` for a decision of one event with a derived id."""
    return lambda _index, _event: event_id
