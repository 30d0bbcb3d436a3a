"""Group commit: writes that arrive while one is in flight go together in the next one.

A durable commit costs a WAL flush and a few round trips whatever it holds, so
eight writers committing one event each pay eight times what one commit of
eight events costs. `GroupCommit` coalesces without adding a wait: a write
that finds nothing in flight goes at once, as a group of one (its latency is
that of a plain write); writes that arrive while one is in flight queue, and
as soon as it ends they go together as one group. When a group of several
ends, the next one waits one turn of the event loop, so that its callers,
who come back together, go together again rather than one alone ahead of the
rest. A heavy item (the store's: an append of a batch of events) needs no
company to pay for its commit: it goes at once, alone, beside the groups.

What it keeps, for the event store (shared/eventlog/store.py):
- per-key order: a group holds at most one write per key (stream), and a key
  being written is not written again until that write ends, so two writes to
  one stream commit in the order they arrived;
- each write its own outcome: the group writer returns one outcome per item,
  and `ALONE` for an item it could not settle in the group (a conflict, a lock
  it would have to wait for): that item is then written alone, outside the
  in-flight slot, as if it had never been grouped, while the next group goes
  on without it. A write that waits on a lock (another transaction's
  uncommitted append to its stream) thus never holds up the other writes of
  the process, even when that transaction waits on one of them.

A caller cancelled while it waits in the queue is dropped before its write is
sent; once sent, the write may or may not commit (as for any write in flight).
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Alone(enum.Enum):
    """The type of `ALONE` (an enum, so that type checkers can tell it from a result)."""

    ALONE = "alone"


ALONE = Alone.ALONE
"""A group writer's outcome for an item that must be written on its own."""

Outcome: TypeAlias = "R | BaseException | Alone"


@dataclass(frozen=True)
class Limits:
    """How much one group may hold; an item over the limits still goes, in a group of one."""

    items: int = 256
    weight: int = 4 * 1024 * 1024  # bytes, for the event store
    in_flight: int = 1
    """Direct writes and groups in flight at once; what arrives when all are taken queues."""


@dataclass
class _Pending(Generic[T, R]):
    key: str
    item: T
    weight: int
    future: asyncio.Future[R]


class GroupCommit(Generic[T, R]):
    """Runs `write_group([item])` at once when a slot is free, and `write_group(items)` for
    what queued while none was; `write_alone(item)`, outside the slots, for what it could not
    settle.

    `write_group` returns one outcome per item, in order: a result, an exception
    for that item's caller, or `ALONE`. An exception it raises fails the whole group.
    """

    def __init__(
        self,
        write_alone: Callable[[T], Awaitable[R]],
        write_group: Callable[[Sequence[T]], Awaitable[Sequence[Outcome[R]]]],
        *,
        limits: Limits | None = None,
    ) -> None:
        self._write_alone = write_alone
        self._write_group = write_group
        self._limits = limits or Limits()
        self._queue: deque[_Pending[T, R]] = deque()
        self._writing: Counter[str] = Counter()  # keys with a write in flight
        self._in_flight = 0  # direct writes and groups (not the fallbacks written alone)
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.groups = 0
        """Groups written (of two items or more): a figure for benchmarks and tests."""
        self.largest_group = 0
        """The most items one group held (the catch-up after a stall): a benchmark figure."""
        self.heavy_alone = 0
        """Heavy items written alone at once, beside the groups: a figure for benchmarks."""

    async def submit(self, key: str, item: T, weight: int = 1, *, heavy: bool = False) -> R:
        """Write `item` (to `key`): now if a slot is free, else in the next group.

        A `heavy` item (a batch) pays for a commit by itself: it goes at once, written alone
        beside the groups (outside the slots), unless an earlier write to its key is in
        flight or queued — then it follows that write, as any other item does."""
        if heavy and self._key_is_free(key):
            # Its own commit costs it little, and waiting for a slot would hold it (and the
            # groups behind it) up: a writer of batches would otherwise run in turns with
            # the others, never beside them.
            self._writing[key] += 1
            self.heavy_alone += 1
            try:
                return await self._write_alone(item)
            finally:
                self._done_writing(key)
                self._wake()
        if self._can_go_now(key):
            self._in_flight += 1
            self._writing[key] += 1
            self.largest_group = self.largest_group or 1
            try:
                try:
                    [outcome] = await self._write_group([item])
                finally:
                    self._in_flight -= 1
                    self._wake()
                if isinstance(outcome, Alone):
                    # Out of the slot: whatever it waits for no longer holds up the others.
                    return await self._write_alone(item)
            finally:
                self._done_writing(key)
                self._wake()
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(key, item, weight, future))
        self._wake()
        return await future

    def _key_is_free(self, key: str) -> bool:
        """No write to `key` in flight or queued: a write to it now keeps its order."""
        return not self._writing[key] and all(pending.key != key for pending in self._queue)

    def _can_go_now(self, key: str) -> bool:
        # A dispatcher about to run counts as busy: writers woken by the group that just
        # ended must queue for the next group, not race it with writes of their own.
        return (
            self._in_flight < self._limits.in_flight
            and self._dispatcher is None
            and not self._queue
            and not self._writing[key]
        )

    def _wake(self, *, gather: bool = False) -> None:
        """Start the dispatcher if something is queued (or, with `gather`, may queue within a
        loop turn) and a slot is free."""
        if (
            self._dispatcher is None
            and (self._queue or gather)
            and self._in_flight < self._limits.in_flight
        ):
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    def _done_writing(self, key: str) -> None:
        self._writing[key] -= 1
        if not self._writing[key]:
            del self._writing[key]

    async def _dispatch(self) -> None:
        try:
            # One turn of the loop first: writers whose previous write just ended
            # queue their next one now and ride in this group, not the one after.
            await asyncio.sleep(0)
            while self._in_flight < self._limits.in_flight and (group := self._take()):
                self._in_flight += 1
                for pending in group:
                    self._writing[pending.key] += 1
                self._spawn(self._write(group))
        except asyncio.CancelledError:
            # The loop is shutting down: nobody will write what is still queued.
            for pending in self._queue:
                pending.future.cancel()
            self._queue.clear()
            raise
        finally:
            self._dispatcher = None

    def _take(self) -> list[_Pending[T, R]]:
        """The next group: queued items in order, one per key not being written, within limits."""
        group: list[_Pending[T, R]] = []
        keys: set[str] = set()
        weight = 0
        left: deque[_Pending[T, R]] = deque()
        for pending in self._queue:
            if pending.future.done():
                continue  # its caller was cancelled while it waited
            fits = len(group) < self._limits.items and (
                not group or weight + pending.weight <= self._limits.weight
            )
            if fits and pending.key not in keys and not self._writing[pending.key]:
                group.append(pending)
                keys.add(pending.key)
                weight += pending.weight
            else:
                left.append(pending)
        self._queue = left
        return group

    async def _write(self, group: list[_Pending[T, R]]) -> None:
        """Write a group taken by `_dispatch` (which counted it in flight) and settle it."""
        try:
            self.groups += len(group) > 1
            self.largest_group = max(self.largest_group, len(group))
            outcomes: Sequence[Outcome[R]] = await self._write_group([p.item for p in group])
        except Exception as exc:  # noqa: BLE001 - each caller of the group raises it
            outcomes = [exc] * len(group)
        except BaseException as exc:
            for pending in group:
                _resolve(pending.future, exc)
            raise
        finally:
            for pending in group:
                self._done_writing(pending.key)
            self._in_flight -= 1
        for pending, outcome in zip(group, outcomes, strict=True):
            if outcome is ALONE:
                self._writing[pending.key] += 1  # now, so that no group takes the key meanwhile
                self._spawn(self._alone(pending))
            else:
                _resolve(pending.future, outcome)
        # The callers of a group come back together (a closed loop of writers, a service's
        # handlers): the next group waits one loop turn for them, else the first one back
        # would find the slot free and go alone, and the others queue behind it (measured:
        # groups alternated 1 and 8 with 8 writers, at half the rate). After a write of one,
        # nothing waits: a lone writer's latency is that of a plain write.
        self._wake(gather=len(group) > 1)

    def _spawn(self, write: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(write)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _alone(self, pending: _Pending[T, R]) -> None:
        try:
            _resolve(pending.future, await _settled(self._write_alone(pending.item)))
        except BaseException as exc:
            _resolve(pending.future, exc)
            raise
        finally:
            self._done_writing(pending.key)
            self._wake()


async def _settled(write: Awaitable[R]) -> R | Exception:
    try:
        return await write
    except Exception as exc:  # noqa: BLE001 - the caller raises it
        return exc


def _resolve(future: asyncio.Future[R], outcome: object) -> None:
    if future.done():
        return
    if isinstance(outcome, asyncio.CancelledError):
        future.cancel()
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)  # type: ignore[arg-type]
