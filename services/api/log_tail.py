"""One reader of the log's tail per API process, shared by every follower of the event log.

`GET /events/stream` used to poll the events table every 50 ms for each open
stream: N subscribers (dashboards, console pages, CI jobs) cost N polls. Here
the first follower starts one reader at the head of the log and the last one
to leave stops it; the reader keeps the newest `keep` events in a window, in
commit-safe order, and a version that grows with every change. A follower at
or inside the window takes its events from there and waits on the version;
one behind it (a client resuming from yesterday, or from the beginning) reads
the table itself, in pages, until it reaches the window — so history costs
only the follower that asks for it, and the live tail costs one poll per
process whatever the number of followers.

Why the window is exact: the tail reads with `read_all`, which returns only
events below the snapshot horizon, in (tx_id, global_position) order. Every
event committed later sorts after what was read, so the window holds *every*
event between its floor and its last position, and a follower at position p
inside it gets exactly the events `read_all(p)` would give it, in the same
order. A follower ahead of the window (a position from another API instance)
reads the table until the window passes it.

The reader never waits for a follower: a slow one falls behind the window's
floor and reads the table alone, the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Final

from aiohttp import web

from shared.errors import Unavailable
from shared.eventlog.position import LogPosition
from shared.eventlog.store import position_of
from shared.events.base import RecordedEvent
from shared.logs import get_logger

__all__ = ["DEFAULT_KEEP", "LOG_TAIL", "LogReader", "LogTail"]

log = get_logger(__name__)

LogReader = Callable[[LogPosition, int], Awaitable[list[RecordedEvent]]]
"""(after, limit) → committed events after `after` in commit-safe order (`read_all`)."""
HeadReader = Callable[[], Awaitable[LogPosition]]
"""The position of the newest event below the snapshot horizon (where the tail starts)."""

DEFAULT_KEEP: Final = 5000
"""Events the window keeps; a follower further behind reads the table itself."""


class LogTail:
    """The shared tail: started by the first follower, stopped when the last one leaves."""

    def __init__(
        self,
        *,
        read: LogReader,
        head: HeadReader,
        poll_s: float = 0.05,
        idle_s: float = 1.0,
        keep: int = DEFAULT_KEEP,
        page: int = 500,
    ) -> None:
        """The reader polls every `poll_s` when quiet (at once while pages come full); an
        idle follower gets an empty batch every `idle_s`, to heartbeat and check its client."""
        if keep < 1 or page < 1:
            raise ValueError("keep and page must be ≥ 1")
        self.read = read
        self.head = head
        self.poll_s = poll_s
        self.idle_s = idle_s
        self.keep = keep
        self.page = page
        self.polls = 0
        """Reads of the tail (for tests and metrics): one per poll, whatever the followers."""
        self._window: deque[RecordedEvent] = deque(maxlen=keep)
        self._floor: LogPosition | None = None  # None: the reader has not read the head yet
        self._last = LogPosition()
        self._changed = asyncio.Event()
        self._followers = 0
        self._reader: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the shared reader runs (somebody follows)."""
        return self._reader is not None

    async def follow(self, after: LogPosition) -> AsyncGenerator[list[RecordedEvent], None]:
        """Batches of committed events after `after`, in commit-safe order, for ever; an empty
        batch every `idle_s` while nothing comes. `aclose()` it when done (it leaves the tail)."""
        self._join()
        try:
            position = after
            while True:
                changed = self._changed
                batch = self._since(position)
                if batch is None:
                    # Behind the window (or ahead of it): the table, alone.
                    batch = await self.read(position, self.page)
                    if not batch and self._floor is not None and position < self._floor:
                        # Nothing between us and the window: it starts at our position.
                        position = self._floor
                        continue
                if batch:
                    position = position_of(batch[-1])
                    yield batch
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.idle_s):
                        await changed.wait()
                        continue
                yield []
        finally:
            self._leave()

    def _since(self, position: LogPosition) -> list[RecordedEvent] | None:
        """The window's events after `position`; None when the window does not cover it."""
        if self._floor is None or position < self._floor or position > self._last:
            return None
        newer: list[RecordedEvent] = []
        # From the newest back: a follower at the head costs only what is new to it.
        for event in reversed(self._window):
            if position_of(event) <= position:
                break
            newer.append(event)
        newer.reverse()
        return newer

    def _join(self) -> None:
        self._followers += 1
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._run(), name="log tail")

    def _leave(self) -> None:
        self._followers -= 1
        if self._followers == 0 and self._reader is not None:
            self._reader.cancel()
            self._reader = None
            # The next reader starts at the head again: nothing stale stays in between.
            self._window.clear()
            self._floor = None

    async def _run(self) -> None:
        while True:
            try:
                if self._floor is None:
                    self._last = self._floor = await self.head()
                    self._bump()
                self.polls += 1
                batch = await self.read(self._last, self.page)
            except Unavailable as exc:
                log.warning("log_tail_unavailable", error=str(exc), retry_in_s=self.poll_s)
                batch = []
            except Exception:  # the top of the reader: its followers wait on it, so it goes on
                log.exception("log_tail_failed", retry_in_s=self.poll_s)
                batch = []
            if batch:
                self._add(batch)
                self._bump()
            if len(batch) < self.page:
                await asyncio.sleep(self.poll_s)

    def _add(self, batch: list[RecordedEvent]) -> None:
        for event in batch:
            if len(self._window) == self.keep:
                self._floor = position_of(self._window[0])
            self._window.append(event)
        self._last = position_of(batch[-1])

    def _bump(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


LOG_TAIL = web.AppKey("log_tail", LogTail)
