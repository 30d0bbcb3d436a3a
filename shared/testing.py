"""Helpers for tests of code built on Slipway, in the spirit of `structlog.testing`.

`wait_until` is how a test waits for something asynchronous to happen: it checks the
thing itself (a stored event, a process's state, an HTTP answer) until it holds, and
fails naming what never happened. A test never sleeps a guessed time instead.

`InMemoryStore` keeps streams in a dict and answers `read_stream`, `append`
and `stream_version` as `shared.eventlog.EventStore` does (the same checks,
conflicts and idempotent retries), so a decider's shell can be unit-tested
without PostgreSQL. `tests/integration/test_execute.py` runs one suite over
both stores, so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

from shared.errors import ConcurrencyConflict, IdempotencyViolation
from shared.eventlog.store import NO_STREAM
from shared.events.base import NewEvent, RecordedEvent
from shared.events.codec import tag_of
from shared.streams import check_stream_id

__all__ = ["InMemoryAppendResult", "InMemoryStore", "wait_until"]

T = TypeVar("T")


POLL_INTERVAL_S = 0.02
"""How often `wait_until` looks: short, since each look is cheap next to the waits it serves."""


# Two overloads, so that mypy infers `T` from an async condition too (from the union
# alone it infers `Never` for `Callable[[], Awaitable[bool]]`).
@overload
async def wait_until(
    condition: Callable[[], Awaitable[T | None]],
    within_s: float = ...,
    what: str | Callable[[], str] = ...,
) -> T: ...
@overload
async def wait_until(
    condition: Callable[[], T | None],
    within_s: float = ...,
    what: str | Callable[[], str] = ...,
) -> T: ...
async def wait_until(
    condition: Callable[[], T | Awaitable[T | None] | None],
    within_s: float = 15.0,
    what: str | Callable[[], str] = "condition",
) -> T:
    """Check `condition` (plain or async) until it gives a true value, and return that value.

    An AssertionError naming `what` after `within_s`; `what` may be a function,
    called then, to say how far it got.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"{said}: not reached within {within_s:g} s")
        await asyncio.sleep(POLL_INTERVAL_S)


@dataclass(frozen=True)
class InMemoryAppendResult:
    """Where an append landed, as `shared.eventlog.AppendResult`."""

    global_positions: tuple[int, ...]
    stream_versions: tuple[int, ...]


class InMemoryStore:
    """Streams in a dict, with the `EventStore`'s optimistic concurrency."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._by_id: dict[uuid.UUID, RecordedEvent] = {}
        self._clock = clock or (lambda: datetime(2026, 1, 1, tzinfo=UTC))
        self._position = 0

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 0,
        limit: int | None = None,
        conn: Any = None,  # noqa: ARG002 - EventStore's interface: callers pass conn=
    ) -> list[RecordedEvent]:
        """The stream's events from `from_version` on (as the PostgreSQL store reads them)."""
        events = [e for e in self._streams.get(stream_id, []) if e.stream_version >= from_version]
        return events if limit is None else events[:limit]

    async def stream_version(self, stream_id: str) -> int:
        """The stream's version (`NO_STREAM` when it has no event)."""
        stream = self._streams.get(stream_id)
        return stream[-1].stream_version if stream else NO_STREAM

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
        conn: Any = None,  # noqa: ARG002 - EventStore's interface: callers pass conn=
    ) -> InMemoryAppendResult:
        """Append with the PostgreSQL store's expected-version and idempotency rules."""
        check_stream_id(stream_id)
        if not events:
            raise ValueError("append needs at least one event")
        if expected_version is not None and expected_version < NO_STREAM:
            raise ValueError(f"expected_version must be ≥ {NO_STREAM} or ANY")
        stored = [self._by_id.get(e.event_id) for e in events]
        if any(s is not None for s in stored):
            return self._retried(stream_id, events, stored)
        actual = await self.stream_version(stream_id)
        if expected_version is not None and actual != expected_version:
            raise ConcurrencyConflict(stream_id, expected_version, actual)
        stream = self._streams.setdefault(stream_id, [])
        for new in events:
            self._position += 1
            recorded = RecordedEvent(
                global_position=self._position,
                tx_id=self._position,
                stream_id=stream_id,
                stream_version=len(stream),
                event_id=new.event_id,
                event_type=tag_of(type(new.event)),
                schema_version=1,
                event=new.event,
                metadata=new.metadata,
                recorded_at=self._clock(),
            )
            stream.append(recorded)
            self._by_id[new.event_id] = recorded
        added = stream[-len(events) :]
        return InMemoryAppendResult(
            tuple(e.global_position for e in added), tuple(e.stream_version for e in added)
        )

    def _retried(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        stored: Sequence[RecordedEvent | None],
    ) -> InMemoryAppendResult:
        """The original places of a retried append, or why it is not a retry."""
        for new, old in zip(events, stored, strict=True):
            if old is None:
                raise IdempotencyViolation(
                    f"append to {stream_id!r} mixes event ids already stored with new ones "
                    f"(event {new.event_id} is new): a retry must resend the same batch"
                )
            if old.stream_id != stream_id or old.event != new.event:
                raise IdempotencyViolation(
                    f"event id {new.event_id} is already stored as {old.event_type!r} in "
                    f"stream {old.stream_id!r} with a different payload; an event id "
                    "must never be reused for another event"
                )
        found = [s for s in stored if s is not None]
        return InMemoryAppendResult(
            tuple(e.global_position for e in found), tuple(e.stream_version for e in found)
        )
