"""The one shell around a decider: load → fold → decide → append at the version read.

    executed = await execute(store, stream, decider, command, envelope(...))

reads the stream, folds it with the decider's `evolve`, asks `decide` what to
record, and appends that with the version it read as the expected version.
When someone else appended meanwhile the append raises `ConcurrencyConflict`
and nothing is written; the whole round runs again on what they wrote, at
most `max_attempts` times, after which the last `ConcurrencyConflict` is
raised to the caller. A `Rejected` from `decide` is never retried.

`retry_on_conflict` is that retry alone, for shells whose round spans several
streams in one transaction (the API's registration: application, name and
config claim).

Any store with `read_stream` and `append` as `EventStore` has them will do:
the PostgreSQL store in production, `shared.testing.InMemoryStore` in unit
tests, and the same contract tests run over both.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from shared.decider import Decider
from shared.errors import ConcurrencyConflict, Rejected
from shared.eventlog.store import NO_STREAM
from shared.events.base import Event, Metadata, NewEvent, RecordedEvent
from shared.ids import new_event_id
from shared.logs import get_logger

__all__ = [
    "DEFAULT_ATTEMPTS",
    "NO_STREAM",
    "Executed",
    "Folded",
    "StreamStore",
    "execute",
    "load",
    "retry_on_conflict",
]

log = get_logger("slipway.execute")

S = TypeVar("S")
C = TypeVar("C")
T = TypeVar("T")

DEFAULT_ATTEMPTS: Final = 5
"""Rounds before a conflict reaches the caller: a stream written by a few writers at once
(replicas, the executor and a person's request) settles in one or two."""


class _Appended(Protocol):
    @property
    def global_positions(self) -> tuple[int, ...]: ...

    @property
    def stream_versions(self) -> tuple[int, ...]: ...


class StreamStore(Protocol):
    """What `execute` needs of an event store: read one stream, append to it."""

    async def read_stream(
        self, stream_id: str, *, from_version: int = 0, limit: int | None = None, conn: Any = None
    ) -> list[RecordedEvent]:
        """The stream's events from `from_version` on, oldest first."""

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
        conn: Any = None,
    ) -> _Appended:
        """Append if the stream is at `expected_version`; `ConcurrencyConflict` otherwise."""


@dataclass(frozen=True)
class Folded(Generic[S]):
    """A stream's state as folded, and where the fold ended (the next append expects it)."""

    state: S
    version: int = NO_STREAM
    """Stream version of the last event folded (`NO_STREAM`: none)."""
    position: int = 0
    """Log position of the last event folded (0: none)."""


@dataclass(frozen=True)
class Executed(Generic[S]):
    """What one `execute` did: the state it decided on, what it appended, the state after."""

    before: Folded[S]
    events: tuple[Event, ...]
    appended: tuple[NewEvent, ...]
    global_positions: tuple[int, ...]
    after: Folded[S]


LOAD_PAGE = 500
"""Events per read when `load` folds a stream."""

EventIds = Callable[[int, Event], uuid.UUID]
"""The id of the n-th decided event: fresh by default; derive it from the command to make
a redelivered command append once."""


def _fresh(_index: int, _event: Event) -> uuid.UUID:
    return new_event_id()


async def load(
    store: StreamStore,
    stream: str,
    decider: Decider[S, Any],
    *,
    start: Folded[S] | None = None,
    conn: Any = None,
) -> Folded[S]:
    """Fold `stream` (only what follows `start`, when given: a snapshot the caller kept),
    a page of `LOAD_PAGE` events at a time: a long stream (a repository's commits, an
    application's drift checks) is never held whole."""
    folded = start or Folded(decider.initial_state())
    while True:
        page = await store.read_stream(
            stream, from_version=folded.version + 1, limit=LOAD_PAGE, conn=conn
        )
        if not page:
            return folded
        state = folded.state
        for record in page:
            state = decider.evolve(state, record.event)
        folded = Folded(state, page[-1].stream_version, page[-1].global_position)
        if len(page) < LOAD_PAGE:
            return folded


async def execute(
    store: StreamStore,
    stream: str,
    decider: Decider[S, C],
    command: C,
    cause: Metadata,
    *,
    event_ids: EventIds = _fresh,
    max_attempts: int = DEFAULT_ATTEMPTS,
    start: Folded[S] | None = None,
    known: Folded[S] | None = None,
    conn: Any = None,
    on_conflict: Callable[[ConcurrencyConflict], None] | None = None,
) -> Executed[S]:
    """Decide `command` on `stream` as it stands and append the result, once it sticks.

    `cause` is the envelope of every appended event (`shared.eventlog.envelope`).
    Nothing is appended when `decide` returns no events. `start` skips
    re-reading what a kept snapshot already folded; after a conflict the
    stream is read again from there. With `conn` the round runs on the
    caller's connection (inside its transaction, if it opened one).

    `known` is the whole stream as the caller already holds it (a consumer handling the
    stream's only event): the first round decides on it without reading, and its append
    expects the stream at `known.version`; when the stream has moved past that, nothing is
    appended and the round runs again on the stream as read (not counted as an attempt:
    no read was wrong, only an assumption). A decision to append nothing, or a rejection,
    is made again on the stream as read too: no append's version check confirmed it.
    """
    assumed = known

    async def attempt() -> Executed[S]:
        nonlocal assumed
        if assumed is not None:
            before, assumed = assumed, None
            try:
                executed = await decided(before)
            except ConcurrencyConflict:
                log.info("known_state_stale", stream_id=stream, version=before.version)
            except Rejected:
                pass  # unchecked: no append tested the assumption; decided again as read
            else:
                if executed.appended:  # else, as a rejection, decided again as read
                    return executed
        return await decided(await load(store, stream, decider, start=start, conn=conn))

    async def decided(before: Folded[S]) -> Executed[S]:
        events = tuple(decider.decide(before.state, command))
        if not events:
            return Executed(before, (), (), (), before)
        new = tuple(
            NewEvent(event=event, event_id=event_ids(index, event), metadata=cause)
            for index, event in enumerate(events)
        )
        result = await store.append(stream, new, expected_version=before.version, conn=conn)
        state = before.state
        for event in events:
            state = decider.evolve(state, event)
        after = Folded(state, result.stream_versions[-1], result.global_positions[-1])
        return Executed(before, events, new, result.global_positions, after)

    return await retry_on_conflict(attempt, max_attempts=max_attempts, on_conflict=on_conflict)


async def retry_on_conflict(
    attempt: Callable[[], Awaitable[T]],
    *,
    max_attempts: int = DEFAULT_ATTEMPTS,
    on_conflict: Callable[[ConcurrencyConflict], None] | None = None,
) -> T:
    """`attempt()` again after each `ConcurrencyConflict`, at most `max_attempts` times in all;
    the last conflict is raised. Each attempt must read what it decides on afresh."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be ≥ 1, not {max_attempts}")
    for number in range(1, max_attempts + 1):
        try:
            return await attempt()
        except ConcurrencyConflict as exc:
            if on_conflict is not None:
                on_conflict(exc)
            if number >= max_attempts:
                raise
            log.info("conflict_retrying", stream_id=exc.stream_id, attempt=number)
    raise AssertionError("unreachable: the last attempt returns or raises")
