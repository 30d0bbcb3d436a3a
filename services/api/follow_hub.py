"""One feed per followed deployment, shared by every follower of it in this API process.

A follow (`GET /deployments/{id}/logs?follow=true`) used to poll the database
twice a second and hold a NATS subscription of its own: N people watching one
deployment cost N of each. Here the first follower of a deployment starts its
feed — one NATS subscription (a hint that lines were written) and one poll of
the `stage_logs` table and of the deployment's completion — and the last one
to leave stops it. The feed keeps the last `keep` lines in order of their ids
and a version that grows with every change; followers wait for the version to
move and take the lines after the last one they sent.

The feed never waits for a follower: a slow one (a client that reads slowly)
just falls behind in the window, and once the lines it has not sent yet have
left it, `since` says so (None) and that follower reads them from the table
itself — it resyncs alone, the others go on.

The readers are given (the SQL and the fold belong to the routes): the hub is
only the sharing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from aiohttp import web

from services.api.schemas import LogLine
from shared.errors import Unavailable
from shared.logs import get_logger

__all__ = [
    "FOLLOW_HUB",
    "DeploymentFeed",
    "EndReader",
    "FollowHub",
    "LineReader",
    "Subscriber",
    "Unsubscribe",
]

log = get_logger(__name__)

LineReader = Callable[[str, int], Awaitable[list[LogLine]]]
"""(deployment id, after id) → the deployment's lines after that id, in id order (a page)."""
EndReader = Callable[[str], Awaitable[str | None]]
"""deployment id → its final status once it completed (or does not exist: ""), else None."""
Unsubscribe = Callable[[], Awaitable[None]]
Subscriber = Callable[[str, Callable[[], None]], Awaitable[Unsubscribe | None]]
"""(deployment id, poke) → subscribe to its live lines, calling `poke` for each; how to stop
(None: no live hints, the feed only polls)."""

DEFAULT_KEEP: Final = 1000
"""Lines a feed keeps for its followers; one further behind reads the table itself."""


class DeploymentFeed:
    """What the followers of one deployment share: recent lines, its end, a version."""

    def __init__(self, deployment_id: str, keep: int) -> None:
        self.deployment_id = deployment_id
        self.lines: deque[LogLine] = deque(maxlen=keep)
        self.floor = 0
        """Every line with an id ≤ floor has left the window (or was never in it)."""
        self.last = 0
        """The newest line id read."""
        self.end: str | None = None
        """The deployment's final status, once it completed (after its lines were read)."""
        self.version = 0
        self.polls = 0
        """Upstream reads made (for tests and metrics): one per poll, whatever the followers."""
        self._changed = asyncio.Event()
        self._started = False

    def since(self, after: int) -> list[LogLine] | None:
        """The lines after id `after`, in order; None when some of them left the window."""
        if after < self.floor:
            return None
        return [line for line in self.lines if line.id > after]

    def caught_up(self, after: int) -> bool:
        """Whether a follower that went through id `after` has every line read."""
        return after >= self.last

    async def changed(self, version: int, timeout_s: float) -> int:
        """Wait until the version moves past `version` (or `timeout_s`); the current one."""
        if self.version == version:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    while self.version == version:
                        await self._changed.wait()
        return self.version

    def _add(self, lines: list[LogLine]) -> None:
        for line in lines:
            if line.id <= self.last:
                continue  # the table is read by id: nothing older can come after
            if len(self.lines) == self.lines.maxlen:
                self.floor = self.lines[0].id
            self.lines.append(line)
            self.last = line.id

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()


class FollowHub:
    """The feeds of this API process, by deployment; started by the first follower."""

    def __init__(
        self,
        *,
        read_lines: LineReader,
        read_end: EndReader,
        subscribe: Subscriber | None = None,
        poll_s: float = 0.5,
        min_poll_s: float = 0.1,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        """Each feed reads every `poll_s`, and sooner on a NATS hint — but never twice within
        `min_poll_s`: a burst of lines costs a few reads, not one each."""
        if keep < 1:
            raise ValueError("keep must be ≥ 1")
        self.read_lines = read_lines
        self.read_end = read_end
        self.subscribe = subscribe
        self.poll_s = poll_s
        self.min_poll_s = min_poll_s
        self.keep = keep
        self._feeds: dict[str, tuple[DeploymentFeed, asyncio.Task[None], list[int]]] = {}

    @property
    def feeds(self) -> int:
        """Deployments followed right now (each with one upstream)."""
        return len(self._feeds)

    @contextlib.asynccontextmanager
    async def follow(self, deployment_id: str) -> AsyncIterator[DeploymentFeed]:
        """The deployment's feed for the block, started if nobody follows it yet."""
        entry = self._feeds.get(deployment_id)
        if entry is None:
            feed = DeploymentFeed(deployment_id, self.keep)
            task = asyncio.create_task(self._run(feed), name=f"follow {deployment_id}")
            entry = (feed, task, [0])
            self._feeds[deployment_id] = entry
        feed, task, followers = entry
        followers[0] += 1
        try:
            yield feed
        finally:
            followers[0] -= 1
            if not followers[0]:
                del self._feeds[deployment_id]
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self, feed: DeploymentFeed) -> None:
        poke = asyncio.Event()
        unsubscribe: Unsubscribe | None = None
        if self.subscribe is not None:
            unsubscribe = await self.subscribe(feed.deployment_id, poke.set)
        try:
            loop = asyncio.get_running_loop()
            while feed.end is None:
                polled = loop.time()
                poke.clear()
                await self._poll(feed)
                if feed.end is not None:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_s):
                        await poke.wait()
                # Hints coming faster than that are gathered into the next read.
                await asyncio.sleep(max(0.0, polled + self.min_poll_s - loop.time()))
        finally:
            if unsubscribe is not None:
                await unsubscribe()

    async def _poll(self, feed: DeploymentFeed) -> None:
        """Read what is new: the end first, then the lines (so those of a completed
        deployment are all read before its followers are told it ended)."""
        feed.polls += 1
        try:
            end = await self.read_end(feed.deployment_id)
            start = feed.last
            while page := await self.read_lines(feed.deployment_id, feed.last):
                feed._add(page)
        except Unavailable as exc:
            log.warning("follow_poll_unavailable", error=str(exc), retry_in_s=self.poll_s)
            return
        except Exception:  # the top of a feed: its followers wait on it, so it goes on
            log.exception("follow_poll_failed", retry_in_s=self.poll_s)
            return
        feed.end = end
        if feed.last != start or end is not None:
            feed._bump()


FOLLOW_HUB = web.AppKey("follow_hub", FollowHub)
