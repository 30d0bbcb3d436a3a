"""Time travel: an aggregate's state as of a position or a moment, by folding its events.

Nothing is stored for this: the state at any point is the decider's `evolve`
folded over the stream's events up to that point (DESIGN §3).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

from shared.eventlog.position import LogPosition
from shared.eventlog.store import EventStore
from shared.events.base import Event

S = TypeVar("S")
E = TypeVar("E")


def fold(evolve: Callable[[S, E], S], initial: S, events: Iterable[E]) -> S:
    """`evolve` applied to `initial` and each event in turn: the state after `events`."""
    return functools.reduce(evolve, events, initial)


async def state_as_of(
    store: EventStore,
    stream_id: str,
    evolve: Callable[[S, Event], S],
    initial: S,
    *,
    position: int | LogPosition | None = None,
    at: datetime | None = None,
) -> S:
    """The state of `stream_id` after its events up to `position` and up to time `at`.

    `position` is a global position (events at or before it count) or a
    `LogPosition` such as a projection's checkpoint (events at or before it in
    commit order, so the state matches what that projection had seen). `at`
    compares with the time the log recorded each event (`recorded_at`,
    inclusive). With both, an event must satisfy both; with neither, this is
    the current state. A stream that did not exist yet yields `initial`.
    """
    if at is not None and at.tzinfo is None:
        raise ValueError("state_as_of: `at` must be timezone-aware")
    state = initial
    async for recorded in store.iter_stream(
        stream_id,
        up_to_position=position if isinstance(position, int) else None,
        up_to_time=at,
    ):
        # Per stream, commit order and version order agree (the store refuses an
        # append that would break that), so this keeps a prefix of the stream.
        if (
            isinstance(position, LogPosition)
            and LogPosition(recorded.tx_id, recorded.global_position) > position
        ):
            break
        state = evolve(state, recorded.event)
    return state
